"""The experiment spec: what to measure, frozen, apart from the testbed (no privileges).

A spec comes from flags or a TOML file (keys = field names) and is written into
every results directory, so a run can be repeated and a report explained.  It is
the single source of the allowed values and defaults: the CLI's choices and
defaults, the shim's and `launch`'s options all come from here.  The game a spec
names (a workload profile, or a mix of them) is gamebed/workload.py's.

One vocabulary for the timestamp mode: `host` (the server reads the host's
arrival stamp) or `guest` (its own kernel's).  `stamp_driver()` is the one place
that maps a mode to what each guest receive path does with it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fpsmodel.clientconfig import LOAD_DEFAULTS
from fpsmodel.server import DISPATCH_MODES
from fpsmodel.wire import GAME_PORT
from gamebed.fault import check_faults
from gamebed.wan import netem_args
from gamebed.workload import (
    PRESETS,
    SLA_STATS,
    WorkloadProfile,
    mix_counts,
    mix_sequence,
    parse_mix,
)

MODES = ("guest", "host")
PLACEMENTS = ("restricted", "dynamic")
STAMPERS = ("afpacket", "bpf")
BACKENDS = ("auto", "netns", "uml", "libvirt")
ACCELS = ("auto", "kvm", "tcg")
# how a UML guest's kernel catches its processes' syscalls; auto: seccomp where the kernel
# has it (>= 6.16), else ptrace
UML_MODES = ("auto", "seccomp", "ptrace")
# how --guest-cpus K holds the guests to K cores (gamebed/guestcpu.py): a competing
# process at a CFS weight, or a quota with a 1 ms period
GUEST_CPUS_BY = ("weight", "quota")
# players: the inputs' delay and loss and the ticks each player received (what players
# feel, analysis/ticks.py); paper: the inputs' delay and loss alone (Tsai 2009's terms)
SLA_TERMS = ("players", "paper")
CHOICES = {"modes": MODES, "placement": PLACEMENTS, "stamper": STAMPERS, "backend": BACKENDS,
           "accel": ACCELS, "uml_mode": UML_MODES, "dispatch": DISPATCH_MODES,
           "sla_stat": SLA_STATS, "guest_cpus_by": GUEST_CPUS_BY, "sla_terms": SLA_TERMS}
MAX_GUESTS = 250  # guest addresses: 198.18.1.1 .. (gamebed/topology.py)
# each backend's default sweep: where its capacity lies on this machine kind (README)
DEFAULT_COUNTS = {"netns": (1, 2, 4, 8, 16, 32), "uml": (1, 4, 8, 12, 16, 20, 24, 32, 48),
                  "libvirt": (1, 2, 4)}
SEARCH_REPEATS = 3  # --guests auto: points per count and mode, unless --repeat says
CAPPABLE = ("netns", "uml")  # backends whose guests run in cgroups of ours


@dataclass(frozen=True)
class StampDriver:
    """What a timestamp mode asks of the guest's receive path."""

    decoder: bool  # namespace guests: the tc BPF decoder on the guest's NIC
    virtio_net: str  # VM guests: "patched" (loaded with host_tstamp=1) or Debian's "stock"


_DRIVERS = {"host": StampDriver(decoder=True, virtio_net="patched"),
            "guest": StampDriver(decoder=False, virtio_net="stock")}


def stamp_driver(mode: str) -> StampDriver:
    """The one map from a timestamp mode to driver settings."""
    return _DRIVERS[mode]


@dataclass(frozen=True)
class ExperimentSpec:
    guest_counts: tuple[int, ...] | None = None  # None: the backend's DEFAULT_COUNTS
    search_max: int | None = None  # --guests auto: search the capacity up to this count
    repeats: int = 1  # points per (count, mode); repeat r plays seed + r in both modes
    modes: tuple[str, ...] = MODES
    # the load: the model game's own defaults (fpsmodel/client.py LOAD_DEFAULTS)
    # the game (docs/workloads.md): a profile names its load and SLA (with_profile sets
    # the fields below from it); the default, tsai2009, is the paper's game
    profile: str = "tsai2009"
    profiles: dict | None = None  # more profiles, {NAME: {field: value}} (a TOML spec's)
    # a mixed host: ("tsai2009:3", "tick128:1"): each count's guests in these shares, guest
    # i's game fixed by i (mix_sequence); `profile` is then the first one's
    mix: tuple[str, ...] = ()
    players: int = LOAD_DEFAULTS["players"]  # per guest
    duration: float = LOAD_DEFAULTS["duration"]  # seconds of play per point
    rate: float = LOAD_DEFAULTS["rate_hz"]  # inputs/s per player (Poisson mean, or periodic)
    tick_hz: float = 20.0  # the servers' state updates per second
    input_process: str = LOAD_DEFAULTS["input_process"]  # fpsmodel/timing.py
    input_jitter: float = LOAD_DEFAULTS["input_jitter"]
    input_bytes: int = LOAD_DEFAULTS["input_bytes"]  # UDP payload of an input
    placement: str = "restricted"  # host side (shim, client) on CPU 0, guests on the others
    # the load generator's punctuality (docs/workloads.md): it spins, not sleeps, the last
    # µs before each send, runs SCHED_FIFO at this priority (0: not) where it may, and
    # the host side's CPUs poll rather than halt when idle (restricted placement only)
    client_spin_us: float = 150.0
    client_spin_share: float = 0.1  # ...at most a tenth of the core at the offered rate
    client_priority: int = 10
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
    server_work_us: float = 0.0  # simulated game logic: CPU µs per player per tick
    stamper: str = "bpf"  # who appends trailers on the host (benchmarks/bench_paths.py)
    capture: bool = False  # every uplink frame with its stamp → capture.pcapng per point
    backend: str = "auto"  # uml where it runs, else netns (vm/__init__.py resolve_backend)
    libvirt_uri: str = "qemu:///system"
    accel: str = "auto"  # libvirt: kvm where a guest boots with it, else tcg (vm/accel.py)
    vm_memory_mib: int = 160
    # a count's guests are the last count's, grown (new ones boot beside them) or shrunk;
    # False: every count boots all its guests afresh (benchmarks/reuse_check.py compares)
    reuse_guests: bool = True
    # ...and once a kept testbed has grown, its guests play this long, unmeasured, before
    # the count's first point: new guests pay for their first load (vm/testbed.py)
    warm_up_s: float = 2.0
    # uml: ptrace (every guest syscall stops the guest process for its kernel) or seccomp
    # (a filter turns it into a signal handled in the process; trusted guests only, ours
    # are; kernels >= 6.16); auto: seccomp where the kernel has it, measured faster and
    # as stable (README); every point records the mode it ran
    uml_mode: str = "auto"
    uml_kernel: str | None = None  # another UML binary instead of gamebed's (vm/uml_kernel.py)
    dispatch: str = "epoll"
    game_port: int = GAME_PORT
    seed: int = LOAD_DEFAULTS["seed"]
    # the SLA the run is judged by (the search's, and the report's unless told otherwise)
    sla_stat: str = "mean"
    sla_delay_ms: float = 1.0
    sla_loss: float = 0.01
    sla_terms: str = "players"  # SLA_TERMS: the players' (ticks too) or the paper's
    # guest faults during every point's load, e.g. "server:0@4+2" (gamebed/fault.py)
    faults: tuple[str, ...] = ()
    # players on a WAN: netem arguments for the client's side, e.g. "delay 30ms 5ms"
    # (gamebed/wan.py); capacity then judges the host's share only
    wan: str | None = None

    def __post_init__(self) -> None:
        problems = []
        counts = self.guest_counts if self.guest_counts is not None else (1,)
        if not counts or any(not 1 <= g <= MAX_GUESTS for g in counts):
            problems.append(f"guest_counts must be counts between 1 and {MAX_GUESTS}")
        if len(set(counts)) != len(counts):
            problems.append("guest_counts must name each count once (a repeat would run the "
                            "same point twice)")
        if not self.modes or set(self.modes) - set(MODES):
            problems.append(f"modes must be among {MODES}")
        for name, allowed in CHOICES.items():
            if name != "modes" and getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}")
        if self.players < 1 or self.duration <= 0 or self.rate <= 0:
            problems.append("players, duration and rate must be positive")
        problems += self._profile_problems()
        if self.vm_memory_mib < 96:
            problems.append("vm_memory_mib below 96 does not boot reliably")
        if self.backend == "libvirt" and (self.cpu_cap, self.cpu_weight) != (None, None):
            problems.append(f"cpu_cap and cpu_weight apply to the {' and '.join(CAPPABLE)} "
                            "backends (libvirt VMs get 1 vCPU under libvirtd's cgroups)")
        if self.uml_kernel is not None and self.backend not in ("auto", "uml"):
            problems.append("uml_kernel is a UML guest kernel: it needs backend uml")
        problems += self._guest_cpus_problems()
        if self.cpu_cap is not None and not 0.01 <= self.cpu_cap <= 1.0:
            problems.append("cpu_cap is a share of one CPU between 0.01 and 1.0")
        if self.cpu_weight is not None and not 1 <= self.cpu_weight <= 65535:
            problems.append("cpu_weight is a relative weight between 1 and 65535 (256 = 1x)")
        if self.guest_slice_ms is not None and (self.backend == "libvirt"
                                                or not 0.1 <= self.guest_slice_ms <= 100):
            problems.append("guest_slice_ms is a slice of 0.1 to 100 ms (the kernel's range) "
                            f"for the {' and '.join(CAPPABLE)} backends' guest threads")
        if not 0 <= self.server_work_us <= 1e6:
            problems.append("server_work_us is CPU microseconds per player per tick, 0..1e6")
        if self.search_max is not None and (self.guest_counts is not None
                                            or not 1 <= self.search_max <= MAX_GUESTS):
            problems.append(f"search_max (--guests auto) is a count between 1 and "
                            f"{MAX_GUESTS}, and excludes guest_counts")
        if not 1 <= self.repeats <= 100:
            problems.append("repeats is a number of points per count and mode, 1..100")
        if self.sla_delay_ms <= 0 or not 0 <= self.sla_loss < 1:
            problems.append("sla_delay_ms must be positive and sla_loss a ratio in [0, 1)")
        if not 1 <= self.game_port <= 65535:
            problems.append("game_port must be a UDP port number")
        problems += self._fault_problems(counts)
        if self.wan is not None:
            try:
                netem_args(self.wan)
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise ValueError("bad experiment spec: " + "; ".join(problems))

    def _guest_cpus_problems(self) -> list[str]:
        if self.guest_cpus is None:
            return []
        if self.backend not in ("auto", *CAPPABLE):
            return [f"guest_cpus (--guest-cpus) holds the guests' cgroups to a budget: "
                    f"backend {' or '.join(CAPPABLE)}"]
        if self.placement != "restricted":
            return ["guest_cpus (--guest-cpus) budgets the guests' own CPUs: it needs "
                    "placement restricted (with dynamic the host side shares them)"]
        if not 0.05 <= self.guest_cpus <= 64:
            return ["guest_cpus is a number of cores, 0.05..64"]
        return []

    def _profile_problems(self) -> list[str]:
        try:
            self.workload()
            WorkloadProfile("spec", tick_hz=self.tick_hz, input_process=self.input_process,
                            input_jitter=self.input_jitter, input_bytes=self.input_bytes)
        except (ValueError, TypeError) as e:
            return [str(e)]
        if self.mix:
            try:
                names = [n for n, _ in parse_mix(self.mix)]
                known = self.known_profiles()
                unknown = [n for n in names if n not in known]
                if unknown:
                    return [f"mix: unknown profile(s) {unknown}: one of {sorted(known)}"]
                if self.profile != names[0]:
                    return [f"with a mix, profile is the mix's first ({names[0]})"]
                top = self.search_max or max(self.guest_counts or DEFAULT_COUNTS["uml"])
                mix_sequence([w for _, w in parse_mix(self.mix)], top)
                low = min(self.guest_counts or (len(names),))
                mix_counts([1.0] * len(names), low)
            except ValueError as e:
                return [str(e)]
        if self.backend == "libvirt" and (self.profile != "tsai2009" or self.mix):
            return ["libvirt's guests run the default game only (profile tsai2009); use "
                    "backend uml or netns for other profiles"]
        return []

    def known_profiles(self) -> dict[str, WorkloadProfile]:
        """The presets and this spec's own profiles, by name."""
        own = {n: WorkloadProfile(n, **fields) for n, fields in (self.profiles or {}).items()}
        return {**PRESETS, **own}

    def workload(self) -> WorkloadProfile:
        """The profile this spec names (its fields may override the profile's values)."""
        known = self.known_profiles()
        if self.profile not in known:
            raise ValueError(f"unknown profile {self.profile!r}: one of {sorted(known)}, or "
                             "define it in a TOML spec under [profiles.NAME]")
        return known[self.profile]

    def with_profile(self, name: str) -> ExperimentSpec:
        """This spec playing profile `name`: its load and SLA from the profile."""
        return dataclasses.replace(self, profile=name).workload_applied()

    def workload_applied(self) -> ExperimentSpec:
        return dataclasses.replace(self, **self.workload().spec_fields())

    def guest_spec(self, guest: int) -> ExperimentSpec:
        """The spec of guest `guest`'s game: this one, or in a mix its profile's."""
        if not self.mix:
            return self
        names = [n for n, _ in parse_mix(self.mix)]
        seq = mix_sequence([w for _, w in parse_mix(self.mix)], guest + 1)
        return dataclasses.replace(self, mix=()).with_profile(names[seq[guest]])

    def game_server_flags(self, guest: int | None = None) -> list:
        """What `fpsmodel server` needs beyond its defaults to serve this game (none for
        the default profile: its commands stay as they were); in a mix, guest's game."""
        if guest is not None and self.mix:
            return self.guest_spec(guest).game_server_flags()
        out: list = []
        if self.tick_hz != 20.0:
            out += ["--tick-hz", f"{self.tick_hz:g}"]
        if self.input_bytes != LOAD_DEFAULTS["input_bytes"]:
            out += ["--input-bytes", self.input_bytes]
        if self.players > 64:  # the server's default table holds 64 players
            out += ["--max-players", self.players]
        return out

    def game_client_flags(self) -> list:
        """What `fpsmodel client` needs beyond players, rate and seed to play this game."""
        out: list = []
        if self.input_process != LOAD_DEFAULTS["input_process"]:
            out += ["--input-process", self.input_process]
        if self.input_jitter != LOAD_DEFAULTS["input_jitter"]:
            out += ["--input-jitter", f"{self.input_jitter:g}"]
        if self.input_bytes != LOAD_DEFAULTS["input_bytes"]:
            out += ["--input-bytes", self.input_bytes]
        return out

    def _fault_problems(self, counts: tuple[int, ...]) -> list[str]:
        if not self.faults:
            return []
        # every backend's default counts and a search's growth begin at 1 guest
        backend = "" if self.backend == "auto" else self.backend  # checked once resolved
        try:
            check_faults(self.faults, backend, self.duration, min(counts))
        except ValueError as e:
            return [str(e)]
        return []

    @classmethod
    def from_toml(cls, path: Path, **overrides) -> ExperimentSpec:
        data = tomllib.loads(Path(path).read_text())
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown spec keys {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentSpec:
        """A spec from field values: its profile's load and SLA first (the default
        profile's are the defaults), then the values given."""
        data = dict(data)
        for key in ("guest_counts", "modes", "faults", "mix"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        base = cls(profiles=data.get("profiles"))
        if data.get("mix") and "profile" not in data:  # a mix's spec is its first profile's
            data["profile"] = parse_mix(data["mix"])[0][0]
        if data.get("profile", base.profile) != base.profile:
            base = base.with_profile(data["profile"])
        return dataclasses.replace(base, **data)

    def replace(self, **overrides) -> ExperimentSpec:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def searching(self) -> bool:
        """--guests auto: the counts are chosen as the run goes (analysis/capacity.py)."""
        return self.search_max is not None

    @property
    def counts(self) -> tuple[int, ...]:
        """The guest counts: the given ones, else the backend's default; for a search, the
        counts its growth phase would measure (the rest depends on the results)."""
        if self.guest_counts is not None:
            return self.guest_counts
        if self.search_max is not None:
            grow = [len(self.mix) or 1]  # a mix needs a guest per profile
            while grow[-1] < self.search_max:
                grow.append(min(2 * grow[-1], self.search_max))
            return tuple(grow)
        if self.backend == "auto":
            raise ValueError("the guest counts of backend 'auto' are known once it is "
                             "resolved (vm.resolve_backend)")
        return self.default_counts(self.backend)

    def default_counts(self, backend: str) -> tuple[int, ...]:
        """The backend's default counts that this spec can run: a mix needs a guest per
        profile, so its counts start there."""
        least = len(self.mix) or 1
        return tuple(n for n in DEFAULT_COUNTS[backend] if n >= least)

    def searching_up_to(self, maximum: int | None = None, repeats: int | None = None
                        ) -> ExperimentSpec:
        """This (resolved) spec as a capacity search (--guests auto): counts up to `maximum`
        (default: the backend's largest default count), `repeats` points per count and
        mode (default SEARCH_REPEATS: a search judges counts on their spread)."""
        top = maximum or max(DEFAULT_COUNTS[self.backend])
        return dataclasses.replace(self, guest_counts=None, search_max=top,
                                   repeats=repeats or SEARCH_REPEATS)


def default(name: str):
    """A field's default, for help texts and CLI defaults."""
    return next(f.default for f in dataclasses.fields(ExperimentSpec) if f.name == name)
