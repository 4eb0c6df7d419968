"""The game a guest plays (no privileges): a workload profile's load and its players'
SLA, the presets and the rule their SLAs follow (docs/workloads.md), and a mixed
host's shares, guest by guest.  The experiment spec (gamebed/spec.py) names a profile
or a mix; this module is the single home of a game's fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from fpsmodel.clientconfig import LOAD_DEFAULTS
from fpsmodel.timing import INPUT_PROCESSES
from fpsmodel.wire import INPUT_MAX_SIZE, INPUT_MIN_SIZE

SLA_STATS = ("mean", "p95", "p99")


@dataclass(frozen=True)
class WorkloadProfile:
    """A game's load and its players' SLA (docs/workloads.md): what a server of that game
    does and what its players tolerate.  The presets are PRESETS; a TOML spec may define
    more under [profiles.NAME] (keys = these fields, name aside)."""

    name: str
    players: int = LOAD_DEFAULTS["players"]  # per server (guest)
    tick_hz: float = 20.0  # state updates per second
    input_process: str = LOAD_DEFAULTS["input_process"]  # fpsmodel/timing.py INPUT_PROCESSES
    # inputs/s per player: Poisson mean or periodic rate; per_tick: the tick rate (forced)
    input_rate_hz: float = LOAD_DEFAULTS["rate_hz"]
    input_jitter: float = LOAD_DEFAULTS["input_jitter"]  # periodic: ± a fraction of a period
    input_bytes: int = LOAD_DEFAULTS["input_bytes"]  # UDP payload, 104..1456
    work_us: float = 0.0  # server CPU µs per player per tick (simulated game logic)
    sla_stat: str = "mean"
    sla_delay_ms: float = 1.0
    sla_loss: float = 0.01

    def __post_init__(self) -> None:
        problems = load_problems(vars(self))
        if problems:
            raise ValueError(f"bad workload profile {self.name!r}: " + "; ".join(problems))

    @property
    def rate_hz(self) -> float:
        """Inputs/s per player as the client sends them."""
        return self.tick_hz if self.input_process == "per_tick" else self.input_rate_hz

    def spec_fields(self) -> dict:
        """The spec's fields this profile sets (ExperimentSpec.with_profile)."""
        return {"profile": self.name, **{key: getattr(self, f) for f, key in SPEC_KEYS.items()},
                "rate": self.rate_hz}



def load_problems(v: dict, names: dict[str, str] | None = None) -> list[str]:
    """What is wrong with a game's fields `v` (by a profile's field names), each named
    as `names` maps them (a spec's keys: SPEC_KEYS); a profile's and a spec's checks."""
    def n(*fields: str) -> tuple[str, ...]:
        return tuple((names or {}).get(f, f) for f in fields)
    out = []
    if v["players"] < 1 or not 1 <= v["tick_hz"] <= 1000 or v["input_rate_hz"] <= 0:
        out.append("{}, {} (1..1000) and {} must be positive".format(
            *n("players", "tick_hz", "input_rate_hz")))
    if v["input_process"] not in INPUT_PROCESSES:
        out.append(f"{n('input_process')[0]} must be one of {INPUT_PROCESSES}")
    if not 0 <= v["input_jitter"] < 1:
        out.append(f"{n('input_jitter')[0]} is a fraction of a period in [0, 1)")
    if not INPUT_MIN_SIZE <= v["input_bytes"] <= INPUT_MAX_SIZE:
        out.append(f"{n('input_bytes')[0]} must be {INPUT_MIN_SIZE}..{INPUT_MAX_SIZE} (the "
                   "input's fixed part .. a 1500-byte MTU less the host's trailer)")
    if not 0 <= v["work_us"] <= 1e6:
        out.append(f"{n('work_us')[0]} is CPU microseconds per player per tick, 0..1e6")
    if v["sla_stat"] not in SLA_STATS or v["sla_delay_ms"] <= 0 \
            or not 0 <= v["sla_loss"] < 1:
        out.append(f"the SLA needs sla_stat in {SLA_STATS}, a positive "
                   "sla_delay_ms and sla_loss in [0, 1)")
    return out


# a profile's fields → the spec keys that play them (gamebed/specparts.py Game and
# SlaSpec, whose defaults are the default profile's): where a game field's two names meet
SPEC_KEYS = {"players": "players", "tick_hz": "tick_hz", "input_process": "input_process",
             "input_rate_hz": "rate", "input_jitter": "input_jitter",
             "input_bytes": "input_bytes", "work_us": "server_work_us",
             "sla_stat": "sla_stat", "sla_delay_ms": "sla_delay_ms", "sla_loss": "sla_loss"}


def sla_rule(tick_hz: float) -> float:
    """Every preset's delay limit (ms), by one rule fixed before any preset was measured
    (docs/workloads.md): 2% of the tick period, the share the paper's 1 ms SLA is of its
    20 Hz game's 50 ms tick.  Mean delay, loss ≤ 1%, for every preset alike."""
    return round(1000.0 / tick_hz * 0.02, 4)


# the presets: where each number comes from, and which are assumptions, is in
# docs/workloads.md (tsai2009 is the paper's game, the default, unchanged)
PRESETS = {p.name: p for p in (
    WorkloadProfile("tsai2009"),
    WorkloadProfile("tick64", players=10, tick_hz=64.0, input_process="per_tick",
                    sla_delay_ms=sla_rule(64.0)),
    WorkloadProfile("tick128", players=10, tick_hz=128.0, input_process="per_tick",
                    sla_delay_ms=sla_rule(128.0)),
    WorkloadProfile("br30", players=100, tick_hz=30.0, input_process="periodic",
                    input_rate_hz=30.0, input_jitter=0.2, sla_delay_ms=sla_rule(30.0)),
)}
assert PRESETS["tsai2009"].sla_delay_ms == sla_rule(20.0)  # the rule reproduces the paper's
DEFAULT_PROFILE = PRESETS["tsai2009"]  # the spec's game unless one is named


def parse_mix(entries: tuple[str, ...]) -> list[tuple[str, float]]:
    """("tsai2009:3", "tick128:1") → [("tsai2009", 3.0), ("tick128", 1.0)]."""
    out = []
    for e in entries:
        name, _, share = e.partition(":")
        try:
            value = float(share)
        except ValueError:
            raise ValueError(f"a mix entry is NAME:SHARE, not {e!r}") from None
        if not name or value <= 0:
            raise ValueError(f"a mix entry is NAME:SHARE with a positive share, not {e!r}")
        out.append((name, value))
    if len(out) < 2 or len({n for n, _ in out}) != len(out):
        raise ValueError("a mix names two or more different profiles")
    return out


def mix_counts(shares: list[float], n: int) -> list[int]:
    """Guests per profile at count n: the shares' quotas rounded by largest remainder
    (ties to the earlier profile), then at least one guest each (taken from the
    largest)."""
    if n < len(shares):
        raise ValueError(f"a mix of {len(shares)} profiles needs at least {len(shares)} "
                         f"guests, not {n}")
    quota = [n * w / sum(shares) for w in shares]
    counts = [int(q) for q in quota]
    by_rest = sorted(range(len(shares)), key=lambda k: (-(quota[k] - counts[k]), k))
    for k in by_rest[:n - sum(counts)]:
        counts[k] += 1
    for k in range(len(counts)):
        while counts[k] == 0:
            counts[max(range(len(counts)), key=lambda j: counts[j])] -= 1
            counts[k] += 1
    return counts


def mix_sequence(shares: list[float], n: int) -> list[int]:
    """Which profile each guest 0..n-1 plays, fixed by its index: guest i is the guest
    that count i+1 adds, so every count's guests are in the shares `mix_counts` gives.
    Refused where rounding would take a guest from a profile as the count grows (the
    Alabama paradox of largest remainder; impossible with two profiles)."""
    seq, last = [], [0] * len(shares)
    for m in range(len(shares), max(n, len(shares)) + 1):
        now = mix_counts(shares, m)
        if any(b < a for a, b in zip(last, now, strict=True)):
            raise ValueError(f"this mix's rounding takes a guest from a profile at {m} "
                             "guests (largest-remainder paradox): choose other shares")
        for k, (a, b) in enumerate(zip(last, now, strict=True)):
            seq += [k] * (b - a)
        last = now
    return seq[:n]
