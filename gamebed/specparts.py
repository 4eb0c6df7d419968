"""The experiment spec's parts (no privileges): the design of the sweep, the game, the
SLA and the host's tuning, each a frozen record that checks its own fields.  The
backends' own settings are theirs (gamebed/backendconfig.py); the spec
that holds them all, and the checks across parts, is gamebed/spec.py.

A part's fields are named as their TOML keys, so one name finds a setting in a TOML
spec, on the command line (`--sla-delay-ms`), in spec.json and in the code
(`spec.sla.sla_delay_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpsmodel.clientconfig import LOAD_DEFAULTS
from fpsmodel.server import DISPATCH_MODES
from fpsmodel.wire import GAME_PORT
from gamebed.workload import (
    DEFAULT_PROFILE,
    PRESETS,
    SLA_STATS,
    SPEC_KEYS,
    WorkloadProfile,
    load_problems,
    parse_mix,
)

MODES = ("guest", "host")
PLACEMENTS = ("restricted", "dynamic")
STAMPERS = ("afpacket", "bpf")
# how --guest-cpus K holds the guests to K cores (gamebed/guestcpu.py): a competing
# process at a CFS weight, or a quota with a 1 ms period
GUEST_CPUS_BY = ("weight", "quota")
# players: the inputs' delay and loss and the ticks each player received (what players
# feel, analysis/ticks.py); paper: the inputs' delay and loss alone (Tsai 2009's terms)
SLA_TERMS = ("players", "paper")
MAX_GUESTS = 250  # guest addresses: 198.18.1.1 .. (gamebed/topology.py)


@dataclass(frozen=True)
class Design:
    """What is measured and in which order: the counts, modes, repeats, each point's
    length and seed, and the conditions every point plays under (faults, a WAN)."""

    guest_counts: tuple[int, ...] | None = None  # None: the backend's DEFAULT_COUNTS
    search_max: int | None = None  # --guests auto: search the capacity up to this count
    repeats: int = 1  # points per (count, mode); repeat r plays seed + r in both modes
    modes: tuple[str, ...] = MODES
    duration: float = LOAD_DEFAULTS["duration"]  # seconds of play per point
    seed: int = LOAD_DEFAULTS["seed"]
    # a count's guests are the last count's, grown (new ones boot beside them) or shrunk;
    # False: every count boots all its guests afresh (benchmarks/reuse_check.py compares)
    reuse_guests: bool = True
    # ...and once a kept testbed has grown, its guests play this long, unmeasured, before
    # the count's first point: new guests pay for their first load (vm/testbed.py)
    warm_up_s: float = 2.0
    capture: bool = False  # every uplink frame with its stamp → capture.pcapng per point
    # guest faults during every point's load, e.g. "server:0@4+2" (gamebed/fault.py)
    faults: tuple[str, ...] = ()
    # players on a WAN: netem arguments for the client's side, e.g. "delay 30ms 5ms"
    # (gamebed/wan.py); capacity then judges the host's share only
    wan: str | None = None
    # a point whose load the machine took away (a stall with no recorded cause, or more
    # stolen time than analysis/stalls.py's limit) is measured again, up to this often
    retries: int = 2
    # gamebed's own stalls of the whole testbed, e.g. "100ms/3s@24" (gamebed/machinewatch.py)
    stalls: str | None = None

    def problems(self) -> list[str]:
        out = []
        counts = self.guest_counts if self.guest_counts is not None else (1,)
        if not counts or any(not 1 <= g <= MAX_GUESTS for g in counts):
            out.append(f"guest_counts must be counts between 1 and {MAX_GUESTS}")
        if len(set(counts)) != len(counts):
            out.append("guest_counts must name each count once (a repeat would run the "
                       "same point twice)")
        if not self.modes or set(self.modes) - set(MODES):
            out.append(f"modes must be among {MODES}")
        if self.duration <= 0:
            out.append("duration must be positive")
        if self.search_max is not None and (self.guest_counts is not None
                                            or not 1 <= self.search_max <= MAX_GUESTS):
            out.append(f"search_max (--guests auto) is a count between 1 and "
                       f"{MAX_GUESTS}, and excludes guest_counts")
        if not 1 <= self.repeats <= 100:
            out.append("repeats is a number of points per count and mode, 1..100")
        if not 0 <= self.retries <= 10:
            out.append("retries is how often a stolen point is measured again, 0..10")
        if self.stalls is not None:
            from gamebed.machinewatch import StallPlan

            try:
                StallPlan.parse(self.stalls)
            except ValueError as e:
                out.append(str(e))
        return out


@dataclass(frozen=True)
class Game:
    """The game every guest plays: a workload profile (gamebed/workload.py) by name, its
    load as played (the profile's, or values given over it), and how the server runs.
    A mix names several profiles; guest i then plays `for_guest(i)`."""

    # the default is the paper's game (docs/workloads.md), and the load fields below
    # default to its values: a game's fields have one home, its profile (gamebed/workload.py)
    profile: str = DEFAULT_PROFILE.name
    profiles: dict | None = None  # more profiles, {NAME: {field: value}} (a TOML spec's)
    # a mixed host: ("tsai2009:3", "tick128:1"): each count's guests in these shares, guest
    # i's game fixed by i (gamebed/workload.py mix_sequence); `profile` is the first one
    mix: tuple[str, ...] = ()
    players: int = DEFAULT_PROFILE.players  # per guest
    rate: float = DEFAULT_PROFILE.rate_hz  # inputs/s per player (Poisson mean, or periodic)
    tick_hz: float = DEFAULT_PROFILE.tick_hz  # the servers' state updates per second
    input_process: str = DEFAULT_PROFILE.input_process  # fpsmodel/timing.py
    input_jitter: float = DEFAULT_PROFILE.input_jitter
    input_bytes: int = DEFAULT_PROFILE.input_bytes  # UDP payload of an input
    server_work_us: float = DEFAULT_PROFILE.work_us  # game logic: CPU µs per player per tick
    dispatch: str = "epoll"
    game_port: int = GAME_PORT

    def problems(self) -> list[str]:
        out = []
        if self.dispatch not in DISPATCH_MODES:
            out.append(f"dispatch must be one of {DISPATCH_MODES}")
        if not 1 <= self.game_port <= 65535:
            out.append("game_port must be a UDP port number")
        # the load's checks are a profile's (the game as played is one), named by the
        # spec's keys; the SLA is SlaSpec's to check
        played = {f: getattr(self, key, getattr(DEFAULT_PROFILE, f))
                  for f, key in SPEC_KEYS.items()}
        out += load_problems(played, SPEC_KEYS)
        try:
            self.workload()
        except (ValueError, TypeError) as e:
            out.append(str(e))
        return out

    def known_profiles(self) -> dict[str, WorkloadProfile]:
        """The presets and this spec's own profiles, by name."""
        own = {n: WorkloadProfile(n, **fields) for n, fields in (self.profiles or {}).items()}
        return {**PRESETS, **own}

    def workload(self) -> WorkloadProfile:
        """The profile this game names (its fields may play other values over it)."""
        known = self.known_profiles()
        if self.profile not in known:
            raise ValueError(f"unknown profile {self.profile!r}: one of {sorted(known)}, or "
                             "define it in a TOML spec under [profiles.NAME]")
        return known[self.profile]

    def mix_names(self) -> list[str]:
        return [n for n, _ in parse_mix(self.mix)]

    def server_flags(self) -> list:
        """What `fpsmodel server` needs beyond its defaults to serve this game (none for
        the default profile: its commands stay as they were)."""
        out: list = []
        if self.tick_hz != 20.0:
            out += ["--tick-hz", f"{self.tick_hz:g}"]
        if self.input_bytes != LOAD_DEFAULTS["input_bytes"]:
            out += ["--input-bytes", self.input_bytes]
        if self.players > 64:  # the server's default table holds 64 players
            out += ["--max-players", self.players]
        return out

    def client_flags(self) -> list:
        """What `fpsmodel client` needs beyond players, rate and seed to play this game."""
        out: list = []
        if self.input_process != LOAD_DEFAULTS["input_process"]:
            out += ["--input-process", self.input_process]
        if self.input_jitter != LOAD_DEFAULTS["input_jitter"]:
            out += ["--input-jitter", f"{self.input_jitter:g}"]
        if self.input_bytes != LOAD_DEFAULTS["input_bytes"]:
            out += ["--input-bytes", self.input_bytes]
        return out


@dataclass(frozen=True)
class SlaSpec:
    """The SLA the run is judged by: the search's, and the report's unless told
    otherwise (a profile sets it; values given win)."""

    sla_stat: str = DEFAULT_PROFILE.sla_stat  # the default profile's SLA
    sla_delay_ms: float = DEFAULT_PROFILE.sla_delay_ms
    sla_loss: float = DEFAULT_PROFILE.sla_loss
    sla_terms: str = "players"  # SLA_TERMS: the players' (ticks too) or the paper's

    def problems(self) -> list[str]:
        out = []
        if self.sla_stat not in SLA_STATS:
            out.append(f"sla_stat must be one of {SLA_STATS}")
        if self.sla_terms not in SLA_TERMS:
            out.append(f"sla_terms must be one of {SLA_TERMS}")
        if self.sla_delay_ms <= 0 or not 0 <= self.sla_loss < 1:
            out.append("sla_delay_ms must be positive and sla_loss a ratio in [0, 1)")
        return out


SSH_DESTINATION = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._-:[]")


@dataclass(frozen=True)
class HostTuning:
    """How the host runs the players' side and holds the guests: placement, the load
    generator's punctuality, who stamps, and the guests' CPU shares and slices."""

    placement: str = "restricted"  # host side (shim, client) on CPU 0, guests on the others
    stamper: str = "bpf"  # who appends trailers on the host (benchmarks/bench_paths.py)
    # the load generator's punctuality (docs/workloads.md): it spins, not sleeps, the last
    # µs before each send, runs SCHED_FIFO at this priority (0: not) where it may, and
    # the host side's CPUs poll rather than halt when idle (restricted placement only)
    client_spin_us: float = 150.0
    client_spin_share: float = 0.1  # ...at most a tenth of the core at the offered rate
    client_priority: int = 10
    # the players split over this many client processes, each owning a block of guests
    # (hostside/shards.py), shard i on the i-th of client_cpus (a CPU list "0,2"; None:
    # the host side's CPUs)
    client_shards: int = 1
    client_cpus: str | None = None
    # players on other machines (hostside/players.py): ssh destinations, comma-separated,
    # shard i on the i-th in turn; the ssh config file to use (None: the user's) and the
    # python there (it needs `cryptography`)
    players_on: str | None = None
    ssh_config: str | None = None
    players_python: str = "python3"
    host_idle_poll: bool = True
    cpu_cap: float | None = None  # per-guest CPU share (cgroup cpu quota), e.g. 0.25
    cpu_weight: int | None = None  # per-guest relative weight, Xen credit style (256 = 1x)
    # every guest thread's own EEVDF slice, ms (sched_attr.sched_runtime; Linux >= 6.12;
    # gamebed/guestslice.py); None: the kernel's default
    guest_slice_ms: float | None = None
    # all guests together get this many cores of their CPUs (gamebed/guestcpu.py): a
    # smaller host, emulated; None: their CPUs whole
    guest_cpus: float | None = None
    guest_cpus_by: str = "weight"

    def problems(self) -> list[str]:
        out = [f"{name} must be one of {allowed}" for name, allowed in
               (("placement", PLACEMENTS), ("stamper", STAMPERS),
                ("guest_cpus_by", GUEST_CPUS_BY)) if getattr(self, name) not in allowed]
        if self.cpu_cap is not None and not 0.01 <= self.cpu_cap <= 1.0:
            out.append("cpu_cap is a share of one CPU between 0.01 and 1.0")
        if self.cpu_weight is not None and not 1 <= self.cpu_weight <= 65535:
            out.append("cpu_weight is a relative weight between 1 and 65535 (256 = 1x)")
        if self.guest_slice_ms is not None and not 0.1 <= self.guest_slice_ms <= 100:
            out.append("guest_slice_ms is a slice of 0.1 to 100 ms (the kernel's range)")
        if self.guest_cpus is not None and not 0.05 <= self.guest_cpus <= 64:
            out.append("guest_cpus is a number of cores, 0.05..64")
        if not 1 <= self.client_shards <= 256:
            out.append("client_shards is a number of client processes, 1..256")
        if self.client_cpus is not None and not all(
                c.isdigit() for c in str(self.client_cpus).split(",")):
            out.append(f"client_cpus is a list of CPU numbers such as 0,2 (one per shard, "
                       f"in turn), not {self.client_cpus!r}")
        if self.players_on is not None and not all(
                h and set(h) <= SSH_DESTINATION for h in str(self.players_on).split(",")):
            out.append(f"players_on is a list of ssh destinations such as player1,"
                       f"root@10.0.0.2 (comma-separated), not {self.players_on!r}")
        return out
