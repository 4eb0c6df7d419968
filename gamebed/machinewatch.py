"""What the machine took from a load (reads /proc and cgroupfs; the stall injector
needs root): the watch and gamebed's own stalls.

A cloud VM's hypervisor stops the whole VM now and then (the guest kernel counts that
time as steal on every CPU), and a CPU quota on a cgroup around the testbed stops its
tasks once the quota is spent (the cgroup's cpu.stat counts it as throttled time).
While either happens the client cannot send and the guests cannot run, and the point
measures the machine's absence rather than the host's load.

`MachineWatch` samples, every SAMPLE_S through a load, each CPU's busy and steal time
(/proc/stat) and the throttled time of every cgroup around gamebed's own process (v1's
cpu hierarchy and v2; what a container's or a systemd unit's quota charges), into the
point's machine.csv (docs/records.md).  analysis/stalls.py reads it to name the cause
of each of the client's stalls.

`StallInjector` (`--stalls MS/EVERY_S[@FROM]`) makes such stalls on demand: every
EVERY_S seconds of a load at FROM guests or more it freezes every process of the
testbed (gamebed's descendants and the guests' cgroups: client, shim, servers,
guest kernels) for MS milliseconds with the v1 freezer, as a hypervisor's stall
stops the whole VM, and writes when into stalls_injected.csv.
"""

from __future__ import annotations

import csv
import ctypes
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gamebed.manifest import Manifest

MACHINE = "machine.csv"
MACHINE_FIELDS = ("t_ns", "cpu", "busy_ns", "steal_ns", "throttled_ns")
INJECTED = "stalls_injected.csv"
INJECTED_FIELDS = ("start_ns", "end_ns", "processes")
SAMPLE_S = 0.01  # /proc/stat counts in 10-ms ticks: finer samples see nothing more
_IDLE = (3, 4)  # idle, iowait: /proc/stat's 4th and 5th columns
_STEAL = 7


def cores(text: str, tick_ns: int) -> list[tuple[int, int, int]]:
    """(cpu, busy ns, steal ns) of each CPU in a /proc/stat text: busy is every column
    but idle, iowait and steal (steal is time the CPU was not ours at all)."""
    out = []
    for line in text.splitlines():
        name, *vals = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        v = [int(x) for x in vals[:8]]
        steal = v[_STEAL] if len(v) > _STEAL else 0
        busy = sum(x for i, x in enumerate(v) if i not in _IDLE and i != _STEAL)
        out.append((int(name[3:]), busy * tick_ns, steal * tick_ns))
    return out


def enclosing_stats(cgroup_text: str, mountinfo_text: str) -> list[Path]:
    """The cpu.stat files of every cgroup around a process, from its /proc/PID/cgroup
    and the mount table: in v1's cpu hierarchy and in v2, the process's own group and
    each ancestor up to the root (a quota set on any of them throttles it)."""
    mounts: dict[str, Path] = {}
    for line in mountinfo_text.splitlines():
        left, _, right = line.partition(" - ")
        f, rest = left.split(), right.split()
        if len(f) < 5 or len(rest) < 3:
            continue
        if rest[0] == "cgroup2":
            mounts.setdefault("", Path(f[4]))
        elif rest[0] == "cgroup" and "cpu" in rest[2].split(","):
            mounts.setdefault("cpu", Path(f[4]))
    out = []
    for line in cgroup_text.splitlines():
        _, ctrls, path = line.split(":", 2)
        key = "" if ctrls == "" else ("cpu" if "cpu" in ctrls.split(",") else None)
        if key is None or key not in mounts:
            continue
        parts = [p for p in path.split("/") if p]
        for k in range(len(parts), -1, -1):
            stat = mounts[key].joinpath(*parts[:k]) / "cpu.stat"
            if stat not in out:
                out.append(stat)
    return out


def throttled_ns(stats: list[Path]) -> int:
    """The throttled time so far of these groups, summed (v1 `throttled_time` ns, v2
    `throttled_usec`); a group without bandwidth control counts 0."""
    total = 0
    for p in stats:
        try:
            text = p.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, val = line.partition(" ")
            if key == "throttled_time":
                total += int(val)
            elif key == "throttled_usec":
                total += int(val) * 1000
    return total


class MachineWatch:
    """Samples the CPUs' busy and steal time and the enclosing cgroups' throttled time
    through a load (a thread); on leaving, writes them to `path` (machine.csv)."""

    def __init__(self, path: Path, cpus: list[int] | None = None,
                 period_s: float = SAMPLE_S) -> None:
        self.path, self.period, self.cpus = Path(path), period_s, cpus
        self.tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        self.stats = enclosing_stats(Path("/proc/self/cgroup").read_text(),
                                     Path("/proc/self/mountinfo").read_text())
        self.rows: list[tuple[int, int, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="machine-watch", daemon=True)

    def sample(self) -> None:
        t = time.time_ns()
        thr = throttled_ns(self.stats)
        for cpu, busy, steal in cores(Path("/proc/stat").read_text(), self.tick_ns):
            self.rows.append((t, cpu, busy, steal, thr))

    def _run(self) -> None:
        if self.cpus:  # on the host side's CPUs, not the guests'
            os.sched_setaffinity(0, set(self.cpus))  # 0: this thread
        while not self._stop.wait(self.period):
            self.sample()

    def __enter__(self) -> MachineWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(MACHINE_FIELDS)
            w.writerows(self.rows)


PROBE = "probe.csv"
PROBE_FIELDS = ("cpu", "start_ns", "late_ns")
PROBE_PERIOD_NS = 150_000  # finer than a stall the client feels (200 µs) less the threshold
PROBE_THRESH_NS = 50_000  # beyond a timer wake-up's own latency here
PROBE_CAP = 200_000


class CpuProbe:
    """A thread per watched CPU, pinned there at SCHED_FIFO `priority` (above the
    client's), that wakes every PROBE_PERIOD_NS (gamebed/cpuprobe.c, called through
    ctypes, which lets go of the GIL) and records each wake-up later than
    PROBE_THRESH_NS: when the CPU was held from every task of ours.  On leaving, the
    spans go to probe.csv.  Where the probe cannot be built or run (no compiler, no
    SCHED_FIFO), or stops because its wake-ups cost more than 20% of the CPU (a host
    too slow for its period; about 8% on this machine kind), it says why (`why`, and
    probe.why beside probe.csv)."""

    def __init__(self, path: Path, cpus: list[int], priority: int) -> None:
        from fpsmodel.fastcore import compile_library

        self.path, self.cpus, self.priority = Path(path), cpus, priority
        self.lib, self.why = compile_library(Path(__file__).with_name("cpuprobe.c"))
        self.stop = ctypes.c_int32(0)
        self.found: dict[int, list[tuple[int, int]]] = {}
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True,
                                         name=f"cpu-probe-{c}") for c in cpus]

    def _run(self, cpu: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})  # 0: this thread
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
        except OSError as e:
            self.why = f"the probe could not run at SCHED_FIFO {self.priority} on CPU {cpu}: {e}"
            return
        out, gave_up = (ctypes.c_int64 * (2 * PROBE_CAP))(), ctypes.c_int32(0)
        n = self.lib.gb_probe(ctypes.c_int64(PROBE_PERIOD_NS), ctypes.c_int64(PROBE_THRESH_NS),
                              out, ctypes.c_int64(PROBE_CAP), ctypes.byref(self.stop),
                              ctypes.byref(gave_up))
        self.found[cpu] = [(out[2 * i], out[2 * i + 1]) for i in range(n)]
        if gave_up.value:  # this host is too slow for the probe's period: it stopped
            self.why = (f"the probe on CPU {cpu} stopped: its own wake-ups took more than "
                        "20% of the CPU (a host too slow for its period)")

    def __enter__(self) -> CpuProbe:
        if self.lib is not None:
            self.lib.gb_probe.restype = ctypes.c_int64
            for t in self.threads:
                t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.value = 1
        for t in self.threads:
            if t.is_alive() or t.ident is not None:
                t.join()
        if self.why:  # said beside its records: it did not watch (or not throughout)
            self.path.with_suffix(".why").write_text(self.why + "\n")
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(PROBE_FIELDS)
            for cpu in sorted(self.found):
                w.writerows((cpu, a, b) for a, b in self.found[cpu])


_STALLS = re.compile(r"^(?P<ms>\d+(\.\d+)?)ms/(?P<every>\d+(\.\d+)?)s(@(?P<from>\d+))?$")
STALLS_HELP = "MS ms every EVERY_S s, from FROM guests on: e.g. 100ms/3s@24"


@dataclass(frozen=True)
class StallPlan:
    """`--stalls`: freeze the whole testbed `ms` long every `every_s` seconds of a load,
    at counts of `from_guests` or more."""

    ms: float
    every_s: float
    from_guests: int = 1

    @classmethod
    def parse(cls, text: str) -> StallPlan:
        m = _STALLS.match(text.strip())
        if not m or float(m["ms"]) <= 0 or float(m["every"]) * 1000 <= float(m["ms"]):
            raise ValueError(f"--stalls {text!r}: expected {STALLS_HELP}, a stall shorter "
                             "than its period")
        return cls(float(m["ms"]), float(m["every"]), int(m["from"] or 1))

    def text(self) -> str:
        return f"{self.ms:g}ms/{self.every_s:g}s@{self.from_guests}"


def freezer_mount(mountinfo_text: str) -> Path | None:
    """The v1 freezer hierarchy's mount, or None."""
    for line in mountinfo_text.splitlines():
        left, _, right = line.partition(" - ")
        f, rest = left.split(), right.split()
        if len(f) >= 5 and len(rest) >= 3 and rest[0] == "cgroup" \
                and "freezer" in rest[2].split(","):
            return Path(f[4])
    return None


def descendants(root: int, proc: Path = Path("/proc")) -> list[int]:
    """Every live process descended from `root` (not `root` itself)."""
    children: dict[int, list[int]] = {}
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class StallInjector:
    """Freezes the testbed's processes `plan.ms` long every `plan.every_s` s (a thread),
    through a v1 freezer group the manifest lists before it is made; on leaving, thaws
    them, moves them back and removes the group, and writes stalls_injected.csv."""

    def __init__(self, plan: StallPlan, path: Path, manifest: Manifest,
                 pids: Callable[[], list[int]]) -> None:
        mount = freezer_mount(Path("/proc/self/mountinfo").read_text())
        if mount is None:
            raise ValueError("--stalls needs the v1 freezer hierarchy (mount -t cgroup -o "
                             "freezer none /sys/fs/cgroup/freezer); on a v2-only host make "
                             "the stalls with a CPU quota on a cgroup around gamebed")
        self.plan, self.path, self.manifest, self.pids = plan, Path(path), manifest, pids
        self.root, self.group = mount, mount / f"{manifest.prefix}-stalls"
        self.done: list[tuple[int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stalls", daemon=True)
        self._entry: dict | None = None

    def _freeze_once(self) -> None:
        pids = [p for p in self.pids() if p != os.getpid()]
        for p in pids:
            try:
                (self.group / "cgroup.procs").write_text(str(p))
            except OSError:
                pass  # gone meanwhile
        start = time.time_ns()
        (self.group / "freezer.state").write_text("FROZEN")
        time.sleep(self.plan.ms / 1000)
        (self.group / "freezer.state").write_text("THAWED")
        self.done.append((start, time.time_ns(), len(pids)))

    def _run(self) -> None:
        # the first stall half a period in, so that a short point has one
        wait = self.plan.every_s / 2
        while not self._stop.wait(wait):
            t = time.monotonic()
            self._freeze_once()
            wait = max(0.0, self.plan.every_s - (time.monotonic() - t))

    def __enter__(self) -> StallInjector:
        self._entry = self.manifest.add(kind="cgroup", path=str(self.group))
        self.group.mkdir(exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            (self.group / "freezer.state").write_text("THAWED")
            for p in (self.group / "cgroup.procs").read_text().split():
                try:
                    (self.root / "cgroup.procs").write_text(p)
                except OSError:
                    pass
        finally:
            from gamebed.resources import remove_cgroup

            if remove_cgroup(self.group) and self._entry is not None:
                self.manifest.remove(self._entry)
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(INJECTED_FIELDS)
            w.writerows(self.done)
