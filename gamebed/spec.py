"""The experiment spec: what to measure, frozen, apart from the testbed (no privileges).

A spec is made of parts (gamebed/specparts.py): the sweep's `design`, the `game`, the
`sla` and the host's `tuning`; then the backend it asks for, the guests' memory, and
each backend's own config (gamebed/backendconfig.py).  Every part checks
its own fields; this module checks what spans parts.

It comes from flags or a TOML file, whose keys are the parts' field names (flat, as
they always were: `players`, `sla_delay_ms`, `uml_mode`), and is written flat into
every results directory, so a run can be repeated and a report explained.  It is the
single source of the allowed values and defaults: the CLI's choices and defaults, the
shim's and `launch`'s options come from here.  The game a spec names (a workload
profile, or a mix of them) is gamebed/workload.py's.

One vocabulary for the timestamp mode: `host` (the server reads the host's arrival
stamp) or `guest` (its own kernel's).  `stamp_driver()` is the one place that maps a
mode to what each guest receive path does with it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from fpsmodel.server import DISPATCH_MODES
from gamebed.backendconfig import ACCELS, UML_MODES, LibvirtConfig, UmlConfig
from gamebed.fault import check_faults
from gamebed.specparts import (
    GUEST_CPUS_BY,
    MAX_GUESTS,
    MODES,
    PLACEMENTS,
    SLA_TERMS,
    STAMPERS,
    Design,
    Game,
    HostTuning,
    SlaSpec,
)
from gamebed.wan import netem_args
from gamebed.workload import SLA_STATS, mix_counts, mix_sequence, parse_mix

__all__ = ["MODES", "PLACEMENTS", "STAMPERS", "MAX_GUESTS", "UML_MODES", "ACCELS",
           "ExperimentSpec", "default", "stamp_driver"]

BACKENDS = ("auto", "netns", "uml", "libvirt")
CHOICES = {"modes": MODES, "placement": PLACEMENTS, "stamper": STAMPERS, "backend": BACKENDS,
           "accel": ACCELS, "uml_mode": UML_MODES, "dispatch": DISPATCH_MODES,
           "sla_stat": SLA_STATS, "guest_cpus_by": GUEST_CPUS_BY, "sla_terms": SLA_TERMS}
# each backend's default sweep: where its capacity lies on this machine kind (README)
DEFAULT_COUNTS = {"netns": (1, 2, 4, 8, 16, 32), "uml": (1, 4, 8, 12, 16, 20, 24, 32, 48),
                  "libvirt": (1, 2, 4)}
SEARCH_REPEATS = 3  # --guests auto: points per count and mode, unless --repeat says
CAPPABLE = ("netns", "uml")  # backends whose guests run in cgroups of ours
# the parts, by the spec's attribute: each TOML key is a field of exactly one of them
PARTS = {"design": Design, "game": Game, "sla": SlaSpec, "tuning": HostTuning,
         "uml": UmlConfig, "libvirt": LibvirtConfig}
OWN_KEYS = ("backend", "vm_memory_mib")  # the spec's own: which guests, how large
TUPLES = ("guest_counts", "modes", "faults", "mix")  # lists in TOML and JSON


def _owners() -> dict[str, str | None]:
    out: dict[str, str | None] = dict.fromkeys(OWN_KEYS)
    for part, cls in PARTS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in out, f"{f.name} has two owners"
            out[f.name] = part
    return out


KEYS = _owners()  # TOML key → the part that owns it (None: the spec itself)


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
    """A run's whole spec: its parts, the backend and the guests' memory.  Build one
    from flat keys with `ExperimentSpec.of(...)`, `from_dict` or `from_toml`."""

    design: Design = field(default_factory=Design)
    game: Game = field(default_factory=Game)
    sla: SlaSpec = field(default_factory=SlaSpec)
    tuning: HostTuning = field(default_factory=HostTuning)
    backend: str = "auto"  # uml where it runs, else netns (vm/__init__.py resolve_backend)
    vm_memory_mib: int = 160  # memory per guest VM (uml and libvirt)
    uml: UmlConfig = field(default_factory=UmlConfig)
    libvirt: LibvirtConfig = field(default_factory=LibvirtConfig)

    def __post_init__(self) -> None:
        problems = [*self.design.problems(), *self.game.problems(), *self.sla.problems(),
                    *self.tuning.problems(), *self.uml.problems(self.backend),
                    *self.libvirt.problems()]
        if self.backend not in BACKENDS:
            problems.append(f"backend must be one of {BACKENDS}")
        if self.vm_memory_mib < 96:
            problems.append("vm_memory_mib below 96 does not boot reliably")
        problems += self._across_parts()
        if problems:
            raise ValueError("bad experiment spec: " + "; ".join(problems))

    def __getattr__(self, name: str):
        # only reached for a missing attribute: a flat key asked of the whole spec
        part = KEYS.get(name)
        if part is not None:
            raise AttributeError(f"the spec's {name} is spec.{part}.{name} "
                                 "(gamebed/specparts.py)")
        raise AttributeError(name)

    def _across_parts(self) -> list[str]:
        t, d = self.tuning, self.design
        out = self._mix_problems() + self._guest_cpus_problems()
        if self.backend == "libvirt" and (t.cpu_cap, t.cpu_weight) != (None, None):
            out.append(f"cpu_cap and cpu_weight apply to the {' and '.join(CAPPABLE)} "
                       "backends (libvirt VMs get 1 vCPU under libvirtd's cgroups)")
        if t.guest_slice_ms is not None and self.backend == "libvirt":
            out.append(f"guest_slice_ms is for the {' and '.join(CAPPABLE)} backends' guest "
                       "threads")
        if self.backend == "libvirt" and (self.game.profile != "tsai2009" or self.game.mix):
            out.append("libvirt's guests run the default game only (profile tsai2009); use "
                       "backend uml or netns for other profiles")
        if d.faults:
            # every backend's default counts and a search's growth begin at 1 guest
            backend = "" if self.backend == "auto" else self.backend  # checked once resolved
            try:
                check_faults(d.faults, backend, d.duration, min(d.guest_counts or (1,)))
            except ValueError as e:
                out.append(str(e))
        if d.wan is not None:
            try:
                netem_args(d.wan)
            except ValueError as e:
                out.append(str(e))
        return out

    def _guest_cpus_problems(self) -> list[str]:
        if self.tuning.guest_cpus is None:
            return []
        if self.backend not in ("auto", *CAPPABLE):
            return [f"guest_cpus (--guest-cpus) holds the guests' cgroups to a budget: "
                    f"backend {' or '.join(CAPPABLE)}"]
        if self.tuning.placement != "restricted":
            return ["guest_cpus (--guest-cpus) budgets the guests' own CPUs: it needs "
                    "placement restricted (with dynamic the host side shares them)"]
        return []

    def _mix_problems(self) -> list[str]:
        g = self.game
        if not g.mix:
            return []
        try:
            names = g.mix_names()
            known = g.known_profiles()
            unknown = [n for n in names if n not in known]
            if unknown:
                return [f"mix: unknown profile(s) {unknown}: one of {sorted(known)}"]
            if g.profile != names[0]:
                return [f"with a mix, profile is the mix's first ({names[0]})"]
            d = self.design
            top = d.search_max or max(d.guest_counts or DEFAULT_COUNTS["uml"])
            mix_sequence([w for _, w in parse_mix(g.mix)], top)
            mix_counts([1.0] * len(names), min(d.guest_counts or (len(names),)))
        except ValueError as e:
            return [str(e)]
        return []

    # --- from and to flat keys (TOML, flags, spec.json) ---

    @classmethod
    def of(cls, **flat) -> ExperimentSpec:
        """A spec from flat keys over the defaults, e.g. `of(backend="netns",
        guest_counts=(1, 2))`; a game's fields are taken as given (`from_dict` plays its
        profile's first)."""
        return cls().with_values(**flat)

    def with_values(self, **flat) -> ExperimentSpec:
        """This spec with the flat keys given set, each in the part that owns it."""
        unknown = set(flat) - set(KEYS)
        if unknown:
            raise ValueError(f"unknown spec keys {sorted(unknown)}")
        by_part: dict[str, dict] = {}
        own = {}
        for key, value in flat.items():
            if key in TUPLES and value is not None:
                value = tuple(value)
            if KEYS[key] is None:
                own[key] = value
            else:
                by_part.setdefault(KEYS[key], {})[key] = value
        parts = {p: dataclasses.replace(getattr(self, p), **v) for p, v in by_part.items()}
        return dataclasses.replace(self, **parts, **own)

    def replace(self, **overrides) -> ExperimentSpec:
        """`with_values` for the keys not None (flags left unset change nothing)."""
        return self.with_values(**{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        """Flat keys, as a TOML spec writes them (spec.json)."""
        out = {k: getattr(self, k) for k in OWN_KEYS}
        for part in PARTS:
            out.update(dataclasses.asdict(getattr(self, part)))
        return out

    @classmethod
    def from_toml(cls, path: Path, **overrides) -> ExperimentSpec:
        data = tomllib.loads(Path(path).read_text())
        unknown = set(data) - set(KEYS)
        if unknown:
            raise ValueError(f"{path}: unknown spec keys {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentSpec:
        """A spec from flat keys: its profile's load and SLA first (the default
        profile's are the defaults), then the values given."""
        data = dict(data)
        base = cls.of(profiles=data.get("profiles"))
        if data.get("mix") and "profile" not in data:  # a mix's spec is its first profile's
            data["profile"] = parse_mix(tuple(data["mix"]))[0][0]
        if data.get("profile", base.game.profile) != base.game.profile:
            base = base.with_profile(data["profile"])
        return base.with_values(**data)

    # --- the game ---

    def with_profile(self, name: str) -> ExperimentSpec:
        """This spec playing profile `name`: its load and SLA from the profile."""
        game = dataclasses.replace(self.game, profile=name)
        return self.with_values(**game.workload().spec_fields())

    def guest_spec(self, guest: int) -> ExperimentSpec:
        """The spec of guest `guest`'s game: this one, or in a mix its profile's."""
        g = self.game
        if not g.mix:
            return self
        seq = mix_sequence([w for _, w in parse_mix(g.mix)], guest + 1)
        return self.with_values(mix=()).with_profile(g.mix_names()[seq[guest]])

    def server_args(self, guest: int | None = None) -> list:
        """Every `fpsmodel server` argument of the game (in a mix, guest's game): how it
        dispatches, its simulated work and the game's own flags.  The one encoding of
        the server's game: a namespace's command line and a UML agent's `run` request
        carry this list as it is, and `gamebed play` starts its server with it."""
        spec = self.guest_spec(guest) if guest is not None and self.game.mix else self
        g = spec.game
        return ["--dispatch", g.dispatch, "--work-us", g.server_work_us, *g.server_flags()]

    # --- the counts ---

    @property
    def searching(self) -> bool:
        """--guests auto: the counts are chosen as the run goes (analysis/capacity.py)."""
        return self.design.search_max is not None

    @property
    def counts(self) -> tuple[int, ...]:
        """The guest counts: the given ones, else the backend's default; for a search, the
        counts its growth phase would measure (the rest depends on the results)."""
        d = self.design
        if d.guest_counts is not None:
            return d.guest_counts
        if d.search_max is not None:
            grow = [len(self.game.mix) or 1]  # a mix needs a guest per profile
            while grow[-1] < d.search_max:
                grow.append(min(2 * grow[-1], d.search_max))
            return tuple(grow)
        if self.backend == "auto":
            raise ValueError("the guest counts of backend 'auto' are known once it is "
                             "resolved (vm.resolve_backend)")
        return self.default_counts(self.backend)

    def default_counts(self, backend: str) -> tuple[int, ...]:
        """The backend's default counts that this spec can run: a mix needs a guest per
        profile, so its counts start there."""
        least = len(self.game.mix) or 1
        return tuple(n for n in DEFAULT_COUNTS[backend] if n >= least)

    def searching_up_to(self, maximum: int | None = None, repeats: int | None = None
                        ) -> ExperimentSpec:
        """This (resolved) spec as a capacity search (--guests auto): counts up to `maximum`
        (default: the backend's largest default count), `repeats` points per count and
        mode (default SEARCH_REPEATS: a search judges counts on their spread)."""
        top = maximum or max(DEFAULT_COUNTS[self.backend])
        return self.with_values(guest_counts=None, search_max=top,
                                repeats=repeats or SEARCH_REPEATS)


def default(name: str):
    """A flat key's default, for help texts and CLI defaults."""
    return ExperimentSpec().to_dict()[name]
