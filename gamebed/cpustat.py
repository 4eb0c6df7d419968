"""CPU accounting of a measurement window (no privileges).

`core_times()` reads each core's cumulative times from /proc/stat; `window()`
turns two readings of cores and guests into what one point's load cost: per core
the seconds of user, system, softirq, irq, steal and idle time, per guest its CPU
seconds and throttled time (gamebed/cgroups/ Group.usage()) and its threads'
run-queue wait (gamebed/schedwait.py, `add_run_queue`).  Written as
cpu.json in each point directory (docs/records.md).  `Settle` waits, before a
load, until the guests' CPUs are back at their idle baseline (settle.json).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from gamebed import schedwait
from gamebed.cgroups import PerCpuSource, per_cpu_source
from gamebed.schedwait import Snapshot

FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def core_times(stat: Path = Path("/proc/stat")) -> dict[str, dict[str, float]]:
    """{"cpu0": {"user": s, ...}, ...}: cumulative seconds per core."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for line in stat.read_text().splitlines():
        name, *vals = line.split()
        if name.startswith("cpu") and name != "cpu":
            out[name] = {f: int(v) / hz for f, v in zip(FIELDS, vals, strict=False)}
    return out


def _delta(a: dict, b: dict) -> dict:
    return {k: round(b[k] - a[k], 4) for k in b if k in a and isinstance(b[k], int | float)}


def window(cores0: dict, cores1: dict, guests0: dict, guests1: dict, seconds: float) -> dict:
    """What happened between two readings: per core and per guest."""
    cores = {c: _delta(cores0[c], cores1[c]) for c in cores1 if c in cores0}
    for c in cores.values():
        # steal is time the CPU was not ours at all (the hypervisor's): not busy
        busy = sum(v for k, v in c.items() if k not in ("idle", "iowait", "steal"))
        c["busy_fraction"] = round(busy / seconds, 4) if seconds > 0 else None
    guests = {str(g): _delta(guests0.get(g, {}), u) for g, u in guests1.items()}
    return {"window_s": round(seconds, 3), "cores": cores, "guests": guests}


def add_run_queue(use: dict, rq0: dict[int, Snapshot], rq1: dict[int, Snapshot]) -> None:
    """Each guest's run-queue wait over the window (gamebed/schedwait.py) into its
    entry of `use["guests"]`: `rq_wait_s`, `rq_waits`, `rq_threads`, `rq_exited`."""
    for g, b in rq1.items():
        w = schedwait.window(rq0.get(g, {}), b)
        use["guests"].setdefault(str(g), {}).update(
            rq_wait_s=w.wait_s, rq_waits=w.waits, rq_threads=w.threads, rq_exited=w.exited)


def cpu_ns(source: PerCpuSource | None = None) -> list[int] | None:
    """CPU time every task used so far, per CPU (ns), or None where the source is not
    readable: v1's root cpuacct group (ns), else /proc/stat (gamebed/cgroups/)."""
    return (source or per_cpu_source()).read()


@dataclass
class Settle:
    """The settle criterion: a load starts once the guests' CPUs are back at their idle
    baseline.  A count's baseline is measured at its first point: the busy fraction of
    those CPUs, window after window, until `min_windows` windows in a row lie within
    `margin` of each other (steady: no boot or last point's work running down); the
    lowest of them is the baseline.  Each later point at the count starts at the first
    window within `margin` of it.

    Where per-CPU usage comes from /proc/stat (no v1 cpuacct: a cgroup-v2 host), a read
    is good to one 10-ms tick, so a window is lengthened until one tick is at most half
    the margin (0.67 s for 0.03): a window then tells busy from idle as finely as a
    0.1-s window of cpuacct's nanoseconds does, and settling takes longer, not less."""

    cpus: tuple[int, ...]
    window_s: float = 0.1
    margin: float = 0.03
    min_windows: int = 3
    timeout_s: float = 10.0
    baseline: float | None = None  # this count's, once measured
    source: PerCpuSource = field(default_factory=per_cpu_source)

    @property
    def window(self) -> float:
        """The window used: `window_s`, or longer where the source is coarse."""
        return max(self.window_s, round(self.source.resolution_s / (self.margin / 2), 2))

    def busy(self, clock=time.monotonic, sleep=time.sleep) -> float | None:
        """The busy fraction of `cpus` (0–1, their mean) over one window."""
        a, t0 = cpu_ns(self.source), clock()
        sleep(self.window)
        b, t1 = cpu_ns(self.source), clock()
        if a is None or b is None or t1 <= t0:
            return None
        used = sum(b[c] - a[c] for c in self.cpus if c < len(b))
        return used / 1e9 / (t1 - t0) / len(self.cpus)

    def _settled(self, windows: list[float]) -> bool:
        f = windows[-1]
        if self.baseline is not None:
            self.baseline = min(self.baseline, f)
            return f <= self.baseline + self.margin
        last = windows[-self.min_windows:]
        if len(last) == self.min_windows and max(last) - min(last) <= self.margin:
            self.baseline = min(last)
            return True
        return False

    def wait(self, clock=time.monotonic, sleep=time.sleep) -> dict:
        """Sample windows until settled (or `timeout_s`); what was seen (settle.json)."""
        windows, settled, deadline = [], False, clock() + self.timeout_s
        while not settled and clock() < deadline:
            f = self.busy(clock, sleep)
            if f is None:  # no per-CPU usage at all: nothing to wait for, and said so
                return {"cpus": list(self.cpus), "settled": None,
                        "reason": f"{self.source.path} is not readable"}
            windows.append(round(f, 4))
            settled = self._settled(windows)
        return {"cpus": list(self.cpus), "window_s": self.window, "margin": self.margin,
                "source": self.source.name, "resolution_s": self.source.resolution_s,
                "baseline_busy": None if self.baseline is None else round(self.baseline, 4),
                "windows": windows, "settled": settled}
