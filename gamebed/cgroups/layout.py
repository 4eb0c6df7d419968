"""Where this host's cgroup controllers are (v1, v2 or hybrid), and what a weight or a
budget writes on each hierarchy (no privileges: reads /proc/self/mountinfo)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
V2_ENABLE = ("cpu", "cpuset", "memory")  # what gamebed's v2 groups need enabled above them
MOUNTINFO = Path("/proc/self/mountinfo")
SHARES_V1 = (2, 262144)  # cpu.shares' range; 1024 is a group's default
WEIGHT_V2 = (1, 10000)  # cpu.weight's range; 100 is a group's default
XEN_DEFAULT_WEIGHT = 256  # --cpu-weight is Xen's credit weight: its default maps to each
# hierarchy's own default (v1 shares 1024, v2 weight 100), so equal weights stay equal


class CgroupError(RuntimeError):
    """The kernel refused a cgroup write; the message says which and what to do."""


@dataclass(frozen=True)
class Layout:
    """Where each controller is: `v1` maps a controller to the mount of its v1
    hierarchy; `v2` is the cgroup2 mount and `v2_controllers` what its root offers."""

    v1: dict[str, Path] = field(default_factory=dict)
    v2: Path | None = None
    v2_controllers: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """legacy (v1 only), hybrid (v1 controllers and a v2 mount), unified (v2 only)."""
        if self.v1 and self.v2:
            return "hybrid"
        return "legacy" if self.v1 else ("unified" if self.v2 else "none")

    def where(self, controller: str) -> str | None:
        """'v1' or 'v2': the hierarchy that holds `controller` (None: neither).  CPU usage
        (`cpuacct`) comes from v2's cpu.stat, which every v2 group has."""
        if controller in self.v1:
            return "v1"
        if self.v2 and (controller in self.v2_controllers or controller == "cpuacct"):
            return "v2"
        return None

    def missing(self, controllers: tuple[str, ...]) -> list[str]:
        return [c for c in controllers if self.where(c) is None]


def parse_mountinfo(text: str, read_controllers=None) -> Layout:
    """The layout a /proc/self/mountinfo text describes.  `read_controllers(path)`
    returns a v2 mount's root controllers (the file `cgroup.controllers`)."""
    v1: dict[str, Path] = {}
    v2 = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        mount, fstype, opts = Path(fields[4]), rest[0], rest[2].split(",")
        if fstype == "cgroup2" and v2 is None:
            v2 = mount
        elif fstype == "cgroup":
            for c in CONTROLLERS:
                if c in opts:
                    v1.setdefault(c, mount)
    read = read_controllers or root_controllers
    return Layout(v1, v2, tuple(read(v2)) if v2 else ())


def root_controllers(mount: Path) -> list[str]:
    """What a v2 mount's root offers (its cgroup.controllers; none where unreadable)."""
    try:
        return (mount / "cgroup.controllers").read_text().split()
    except OSError:
        return []


_forced: list[Layout] = []


def detect() -> Layout:
    """This host's layout (a test may pin one with `pinned_layout`)."""
    if _forced:
        return _forced[-1]
    return parse_mountinfo(MOUNTINFO.read_text())


@contextmanager
def pinned_layout(layout: Layout) -> Iterator[Layout]:
    """`detect()` answers `layout` inside the block: dry runs recorded on one kind of
    host print the same commands on another."""
    _forced.append(layout)
    try:
        yield layout
    finally:
        _forced.pop()


def systemd_is_init() -> bool:
    """systemd runs this host (sd_booted's test, and PID 1 is it)."""
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return False
    return Path("/run/systemd/system").is_dir() and comm == "systemd"


# --- what the budget and the weights write, on each hierarchy --------------------------

def xen_weight(hier: str, weight: int) -> int:
    """--cpu-weight (Xen's credit weight) as v1 cpu.shares or v2 cpu.weight."""
    lo, hi = SHARES_V1 if hier == "v1" else WEIGHT_V2
    base = 1024 if hier == "v1" else 100
    return max(lo, min(hi, round(weight * base / XEN_DEFAULT_WEIGHT)))


def budget_weights(hier: str, per_cpu: float) -> tuple[int, int]:
    """(the guests' parent's weight, the hogs' weight) so that the guests get `per_cpu`
    of each CPU when both want it: w_g / (w_g + w_h) = per_cpu.  On v1 the hogs keep
    1024 shares, as gamebed always had, and the guests' parent follows; v2's narrower
    range (1..10000) gives the larger of the two its top, for the finest ratio."""
    if not 0 < per_cpu < 1:
        raise ValueError("a share of a CPU beside a hog is in (0, 1)")
    if hier == "v1":
        lo, hi = SHARES_V1
        return max(lo, min(hi, round(1024 * per_cpu / (1 - per_cpu)))), 1024
    lo, hi = WEIGHT_V2
    if per_cpu <= 0.5:
        return max(lo, round(hi * per_cpu / (1 - per_cpu))), hi
    return hi, max(lo, round(hi * (1 - per_cpu) / per_cpu))
