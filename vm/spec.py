"""The experiment spec: what to measure, frozen, apart from the testbed (no privileges).

A spec comes from flags or a TOML file (keys = field names) and is written into
every results directory, so a run can be repeated and a report explained.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

MODES = ("guest", "host")
PLACEMENTS = ("restricted", "dynamic")
STAMPERS = ("afpacket", "bpf")
BACKENDS = ("netns", "libvirt")
ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class ExperimentSpec:
    guests: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    modes: tuple[str, ...] = MODES
    players: int = 4  # per guest
    duration: float = 10.0  # seconds of play per point
    rate: float = 20.0  # inputs/s per player (Poisson mean)
    placement: str = "restricted"  # shim on CPU 0, guests and client on the others
    cpu_cap: float | None = None  # per-guest CPU share (cgroup cpu quota), e.g. 0.25
    stamper: str = "bpf"  # who appends trailers on the host (benchmarks/bench_paths.py)
    backend: str = "netns"  # or "libvirt": real VMs (vm/vmpoint.py)
    libvirt_uri: str = "qemu:///system"
    accel: str = "auto"  # libvirt: kvm where a guest boots with it, else tcg
    vm_memory_mib: int = 160
    dispatch: str = "epoll"
    game_port: int = 27960
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if not self.guests or any(g < 1 or g > 250 for g in self.guests):
            problems.append("guests must be counts between 1 and 250")
        if not self.modes or set(self.modes) - set(MODES):
            problems.append(f"modes must be among {MODES}")
        for name, allowed in (("placement", PLACEMENTS), ("stamper", STAMPERS),
                              ("backend", BACKENDS), ("accel", ACCELS)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {allowed}")
        if self.players < 1 or self.duration <= 0 or self.rate <= 0:
            problems.append("players, duration and rate must be positive")
        if self.vm_memory_mib < 96:
            problems.append("vm_memory_mib below 96 does not boot reliably")
        if self.backend == "libvirt" and self.cpu_cap is not None:
            problems.append("cpu_cap applies to the netns backend (libvirt VMs get 1 vCPU)")
        if self.cpu_cap is not None and not 0.01 <= self.cpu_cap <= 1.0:
            problems.append("cpu_cap is a share of one CPU between 0.01 and 1.0")
        if problems:
            raise ValueError("bad experiment spec: " + "; ".join(problems))

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
        data = dict(data)
        for key in ("guests", "modes"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def replace(self, **overrides) -> ExperimentSpec:
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def points(self) -> list[tuple[int, str]]:
        """(guests, mode) in run order: modes interleaved per count, so drift hits both."""
        return [(g, m) for g in self.guests for m in self.modes]
