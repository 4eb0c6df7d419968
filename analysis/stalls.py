"""The client's stalls, what caused each, and the windows a point leaves out (no
privileges; reads only a point's files).

A *stall* is a run of inputs, in the order they were due, each sent more than the
judge's lateness limit late (analysis/load.py LATENESS_LIMIT_US).  It lasts from the
first of them falling due to the last one's send (the client had caught up).

Its cause, from the point's machine.csv (gamebed/machinewatch.py) over the stall's
span, first match wins:
- **injected**: gamebed's own `--stalls` froze the testbed then (stalls_injected.csv);
- **steal**: some CPU lost at least half the stall's length to the hypervisor;
- **throttled**: a cgroup around gamebed was throttled (its quota spent) for at least
  half the stall's length;
- **held**: the CPU probe on the client's CPU, a thread above the client's priority,
  was held for at least half the stall's length too (probe.csv): the CPU was held
  from every task of ours, by the
  hypervisor's preemptions too short for steal's 10-ms ticks or by the kernel's work;
- **host busy**: the host side's CPUs were more than HOST_BUSY_LIMIT busy: the load
  generator really could not keep up;
- **unknown**: none of these was recorded;
- **player machine**: a stall of the players on another machine (`--players-on`),
  where gamebed keeps no machine record: it is theirs, like a client late by itself.

The policy (docs/records.md, "stalls"): a stall the machine caused (injected, steal,
throttled, held) is left out of the point's statistics, from its start to a guard after
its end as long as the stall itself (at least GUARD_MIN_MS), so that the backlog it
left in the guests drains before inputs count again; the share of the load so left out
is `excluded_share`.  A point whose share exceeds EXCLUDED_LIMIT, or that is still late
(load-generator-bound) with a stall of unknown cause at least STALL_MIN_MS long (a
client stopped, say), is one the sweep measures again (`--retries`); a point late with
no stall the machine explains (host busy, or a client late by itself) is
load-generator-bound as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STALL_MIN_MS = 20.0  # an unexplained stall this long is measured again, not blamed
GUARD_MIN_MS = 1.0  # the least time left out after a stall's end
EXCLUDED_LIMIT = 0.2  # at most this share of a load may be left out
MACHINE_CAUSES = ("injected", "steal", "throttled", "held")  # left out of the statistics
REMOTE = "player machine"  # a stall on another machine's players: not ours to explain
HOST_BUSY_LIMIT = 0.9  # analysis/load.py's: the host side's CPUs this busy set the pace


@dataclass(frozen=True)
class Stall:
    """One stall of the client: when (ns, the host's clock), the inputs it held, and
    what the machine recorded over it."""

    start_ns: int
    end_ns: int
    inputs: int
    late_max_ms: float
    steal_ms: float  # the most any CPU lost to steal over the stall
    throttled_ms: float
    host_busy: float | None
    cause: str

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def left_out(self) -> bool:
        return self.cause in MACHINE_CAUSES

    def window(self) -> tuple[int, int]:
        """What the point leaves out for it: the stall and its guard."""
        guard = max(GUARD_MIN_MS * 1e6, self.end_ns - self.start_ns)
        return self.start_ns, int(self.end_ns + guard)


@dataclass(frozen=True)
class MachineRecord:
    """The point's machine.csv as arrays: sample times, and per CPU the cumulative busy
    and steal ns; the enclosing cgroups' cumulative throttled ns; the injected stalls."""

    t: np.ndarray
    busy: dict[int, np.ndarray]
    steal: dict[int, np.ndarray]
    throttled: np.ndarray
    injected: list[tuple[int, int]]
    held: dict[int, np.ndarray]  # per probed CPU: (start, end) of each span it was held

    @classmethod
    def read(cls, pdir: Path) -> MachineRecord | None:
        from gamebed.machinewatch import INJECTED, MACHINE, PROBE

        path = Path(pdir) / MACHINE
        if not path.exists():
            return None
        m = pd.read_csv(path, dtype="int64")
        first = m[m["cpu"] == m["cpu"].min()]
        cpus = sorted(m["cpu"].unique())
        inj = []
        if (Path(pdir) / INJECTED).exists():
            f = pd.read_csv(Path(pdir) / INJECTED, dtype="int64")
            inj = list(zip(f["start_ns"], f["end_ns"], strict=True))
        held = {}
        if (Path(pdir) / PROBE).exists():
            p = pd.read_csv(Path(pdir) / PROBE, dtype="int64")
            held = {int(c): np.column_stack([g["start_ns"], g["start_ns"] + g["late_ns"]])
                    for c, g in p.groupby("cpu")}
        by = {c: m[m["cpu"] == c] for c in cpus}
        return cls(first["t_ns"].to_numpy(), {c: by[c]["busy_ns"].to_numpy() for c in cpus},
                   {c: by[c]["steal_ns"].to_numpy() for c in cpus},
                   first["throttled_ns"].to_numpy(), inj, held)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The samples that bracket [start, end]: the last at or before start, the first
        at or after end (indices into t)."""
        i = max(0, int(np.searchsorted(self.t, start, side="right")) - 1)
        k = min(len(self.t) - 1, int(np.searchsorted(self.t, end, side="left")))
        return i, k

    def held_ns(self, cpus: list[int], start: int, end: int) -> int:
        """How long the probe on any of `cpus` (the most of them) was held in [start, end]."""
        return max((int(np.clip(np.minimum(h[:, 1], end) - np.maximum(h[:, 0], start), 0,
                                None).sum()) for c, h in self.held.items()
                    if c in cpus and len(h)), default=0)

    def steal_s(self, start: int, end: int) -> dict[int, float]:
        i, k = self.span(start, end)
        return {c: float(s[k] - s[i]) / 1e9 for c, s in self.steal.items()}

    def throttled_s(self, start: int, end: int) -> float:
        i, k = self.span(start, end)
        return float(self.throttled[k] - self.throttled[i]) / 1e9

    def busy_share(self, cpus: list[int], start: int, end: int) -> float | None:
        i, k = self.span(start, end)
        wall = (self.t[k] - self.t[i]) * len(cpus)
        have = [c for c in cpus if c in self.busy]
        if wall <= 0 or not have:
            return None
        return float(sum(self.busy[c][k] - self.busy[c][i] for c in have)) / wall


def episodes(sched: np.ndarray, send: np.ndarray, limit_us: float) -> list[tuple[int, int,
                                                                                  int, float]]:
    """The stalls among inputs (due and sent times, ns): (start, end, inputs, worst
    lateness ms) of each run of inputs, in due order, late beyond `limit_us`."""
    order = np.argsort(sched, kind="stable")
    d, s = sched[order], send[order]
    late = (s - d) > limit_us * 1e3
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], late.astype("int8"), [0]))))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        worst = float((s[a:b] - d[a:b]).max()) / 1e6
        out.append((int(d[a]), int(s[a:b].max()), b - a, worst))
    return out


def cause_of(m: MachineRecord | None, start: int, end: int, host_cpus: list[int]
             ) -> tuple[str, float, float, float | None]:
    """(cause, steal ms, throttled ms, host busy share) of a stall over [start, end]."""
    if m is None:
        return "unknown", float("nan"), float("nan"), None
    half = (end - start) / 2e6
    steal = max(m.steal_s(start, end).values(), default=0.0) * 1e3
    throttled = m.throttled_s(start, end) * 1e3
    busy = m.busy_share(host_cpus, start, end)
    if any(a < end and b > start for a, b in m.injected):
        cause = "injected"
    elif steal >= half:
        cause = "steal"
    elif throttled >= half:
        cause = "throttled"
    elif m.held_ns(host_cpus, start, end) >= half * 1e6:
        cause = "held"
    elif busy is not None and busy > HOST_BUSY_LIMIT:
        cause = "host busy"
    else:
        cause = "unknown"
    return cause, steal, throttled, busy


def merged(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(windows):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def inside(times: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    """Which of `times` (ns) fall in any of the (merged, sorted) windows."""
    if not windows:
        return np.zeros(len(times), bool)
    starts = np.array([a for a, _ in windows])
    ends = np.array([b for _, b in windows])
    k = np.searchsorted(starts, times, side="right") - 1
    ok = k >= 0
    out = np.zeros(len(times), bool)
    out[ok] = times[ok] <= ends[k[ok]]
    return out


def overlap_ns(windows: list[tuple[int, int]], span: tuple[int, int]) -> int:
    return int(sum(max(0, min(b, span[1]) - max(a, span[0])) for a, b in windows))


@dataclass(frozen=True)
class StallFigures:
    """A point's stalls and what the machine took over its load: each stall with its
    cause, the windows left out and their share of the load, every CPU's steal and the
    enclosing cgroups' throttled time over the load, and gamebed's own stalls."""

    stalls: tuple[Stall, ...]
    windows: tuple[tuple[int, int], ...]  # left out (merged): ns, the host's clock
    excluded_share: float
    steal_s_by_cpu: dict[int, float]
    throttled_s: float | None
    injected: int
    recorded: bool  # machine.csv was there (a point of an older run has none)

    def keep(self, times: np.ndarray) -> np.ndarray:
        """Which of these times (ns) the statistics keep."""
        return ~inside(np.asarray(times, dtype="int64"), list(self.windows))

    def causes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.stalls:
            out[s.cause] = out.get(s.cause, 0) + 1
        return out

    def text(self) -> str:
        """e.g. '3 stalls (steal 2, unknown 1; longest 101 ms), 6.1% left out'."""
        if not self.stalls:
            return "no stall"
        c = ", ".join(f"{k} {v}" for k, v in self.causes().items())
        return (f"{len(self.stalls)} stall(s) ({c}; longest "
                f"{max(s.ms for s in self.stalls):.1f} ms), "
                f"{100 * self.excluded_share:.1f}% of the load left out")

    def row(self) -> dict:
        steal = self.steal_s_by_cpu
        return {"stalls": len(self.stalls),
                "stall_ms_max": max((s.ms for s in self.stalls), default=0.0),
                "stall_causes": self.text(),
                "stalls_unknown": sum(s.cause == "unknown" and s.ms >= STALL_MIN_MS
                                      for s in self.stalls),
                "excluded_share": self.excluded_share,
                "steal_s": max(steal.values()) if steal else np.nan,
                "steal_s_by_cpu": [round(steal[c], 3) for c in sorted(steal)],
                "throttled_s": np.nan if self.throttled_s is None else self.throttled_s,
                "stalls_injected": self.injected}


def stall_figures(pdir: Path, env: dict, limit_us: float) -> StallFigures:
    """A point's stalls (client_inputs.csv) and their causes (machine.csv), over its load."""
    from analysis.records import read_csv
    from fpsmodel.records import CLIENT_INPUT_FIELDS, CLIENT_INPUTS

    c = read_csv(Path(pdir) / CLIENT_INPUTS, CLIENT_INPUT_FIELDS,
                 ("guest", "sched_ns", "send_ns")).dropna()
    m = MachineRecord.read(pdir)
    host = [int(x) for x in str(env.get("shim_cpus") or "").split(",") if x.strip().isdigit()]
    if not len(c):
        return StallFigures((), (), 0.0, {}, None, 0, m is not None)
    load = (int(c["sched_ns"].min()), int(c["send_ns"].max()))
    away = c["guest"].isin(remote_guests(pdir))  # their stalls are each group's own run
    stalls = []
    for part, remote in ((c[~away], False), (c[away], True)):
        sched, send = part["sched_ns"].to_numpy("int64"), part["send_ns"].to_numpy("int64")
        for a, b, n, w in episodes(sched, send, limit_us):
            why = (REMOTE, np.nan, np.nan, None) if remote else cause_of(m, a, b, host)
            stalls.append(Stall(a, b, n, w, *_fields(why)))
    stalls = tuple(sorted(stalls, key=lambda x: x.start_ns))
    windows = tuple(merged([s.window() for s in stalls if s.left_out]))
    share = overlap_ns(list(windows), load) / max(1, load[1] - load[0])
    steal = m.steal_s(*load) if m is not None else {}
    throttled = m.throttled_s(*load) if m is not None else None
    return StallFigures(stalls, windows, share, steal, throttled,
                        len(m.injected) if m is not None else 0, m is not None)


def remote_guests(pdir: Path) -> list[int]:
    """The guests whose players ran on another machine (client_summary.json's shards
    with a `machine`, hostside/players.py): no machine record covers their client."""
    from analysis.records import load_json

    shards = (load_json(Path(pdir) / "client_summary.json", {}) or {}).get("shards") or []
    return [g for sh in shards if sh.get("machine") for g in range(*sh["guests"])]


def _fields(c: tuple[str, float, float, float | None]) -> tuple:
    cause, steal, throttled, busy = c
    return steal, throttled, busy, cause
