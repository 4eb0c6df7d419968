"""What the host's cgroups show beside a run's own groups (no privileges: reads only):
per-CPU usage (the settle criterion's), what a run could leave behind, and a running
group's processes by name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gamebed.cgroups.layout import Layout, detect

# --- per-CPU usage: the settle criterion's ----------------------------------------------

BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # /proc/stat: user nice system irq softirq steal


@dataclass(frozen=True)
class PerCpuSource:
    """CPU time used so far on each CPU, in ns, from the finest source there is: v1's
    root cpuacct group (`cpuacct.usage_percpu`, ns) or, where no v1 cpuacct hierarchy is
    mounted (v2 has no per-CPU usage), /proc/stat's busy times (USER_HZ ticks: 10 ms)."""

    name: str
    path: Path
    resolution_s: float

    def read(self) -> list[int] | None:
        try:
            text = self.path.read_text()
        except OSError:
            return None
        if self.path.name.endswith("usage_percpu"):
            try:
                return [int(v) for v in text.split()]
            except ValueError:
                return None
        return _proc_stat_busy_ns(text)


def _proc_stat_busy_ns(text: str) -> list[int]:
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    out: dict[int, int] = {}
    for line in text.splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            out[int(name[3:])] = sum(int(vals[i]) for i in BUSY_FIELDS if i < len(vals))
    return [out.get(i, 0) * tick_ns for i in range(max(out) + 1)] if out else []


def per_cpu_source(layout: Layout | None = None) -> PerCpuSource:
    lay = layout or detect()
    if "cpuacct" in lay.v1:
        return PerCpuSource("cpuacct.usage_percpu", lay.v1["cpuacct"] / "cpuacct.usage_percpu",
                            1e-9)
    return PerCpuSource("/proc/stat", Path("/proc/stat"), 1 / os.sysconf("SC_CLK_TCK"))


# --- what a run could leave behind --------------------------------------------------------

def leftovers(prefix: str, layout: Layout | None = None) -> list[str]:
    """Every cgroup directory named with `prefix` (v1: at each hierarchy's top and one
    level down; v2: down to the depth a delegated scope puts them)."""
    lay, found = layout or detect(), set()
    for mount in set(lay.v1.values()):
        for d in _walk(mount, 2):
            if d.name.startswith(prefix):
                found.add(f"{mount.name}/{d.relative_to(mount)}")
    if lay.v2:
        for d in _walk(lay.v2, 4):
            if d.name.startswith(prefix):
                found.add(f"v2/{d.relative_to(lay.v2)}")
    return sorted(found)


def pids_of(name: str, layout: Layout | None = None) -> list[int]:
    """The processes in the group called `name` wherever the run put it (a running
    testbed's, found by name: `gamebed launch` leaves its guests running)."""
    lay = layout or detect()
    root = lay.v1.get("cpuacct") or lay.v2
    for d in _walk(root, 4) if root else ():
        if d.name == name:
            try:
                return [int(x) for x in (d / "cgroup.procs").read_text().split()]
            except OSError:
                return []
    return []


def _walk(root: Path, depth: int) -> Iterator[Path]:
    try:
        subdirs = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return
    for d in subdirs:
        yield d
        if depth > 1:
            yield from _walk(d, depth - 1)
