"""CPU accounting of a measurement window (no privileges).

`core_times()` reads each core's cumulative times from /proc/stat; `window()`
turns two readings of cores and guests into what one point's load cost: per core
the seconds of user, system, softirq, irq, steal and idle time, per guest its CPU
seconds and throttled time (gamebed/resources.py CpuCgroup.usage()).  Written as
cpu.json in each point directory (docs/records.md).
"""

from __future__ import annotations

import os
from pathlib import Path

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
        busy = sum(v for k, v in c.items() if k not in ("idle", "iowait"))
        c["busy_fraction"] = round(busy / seconds, 4) if seconds > 0 else None
    guests = {str(g): _delta(guests0.get(g, {}), u) for g, u in guests1.items()}
    return {"window_s": round(seconds, 3), "cores": cores, "guests": guests}
