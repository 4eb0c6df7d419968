"""The guests' run-queue wait, from the kernel's own account (reads /proc; root to read
other users' processes).

A UML guest is host processes, and the host kernel counts, for every thread, the time
it spent runnable on a run queue before it got a CPU and how many times it got one
(`/proc/<pid>/task/<tid>/schedstat`: on-CPU ns, run-queue wait ns, timeslices;
CONFIG_SCHED_INFO).  KVM's steal time is this same figure handed to the guest.  A
guest-stamped input is stamped only when its guest runs, so the guest's wait per
wake-up is the kernel's account of why guest stamps are late.

`snapshot(pids)` reads every thread of the given processes; `window(a, b)` is what
happened between two snapshots: a thread present in both counts its difference, one
born in between (or a reused tid, whose counters went back) counts whole, one that
exited in between is lost and counted in `exited`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class RunQueueWait:
    """A guest's run-queue wait over a window: the threads' total wait, the number of
    times they got a CPU, the threads read and those that exited in between."""

    wait_s: float
    waits: int
    threads: int
    exited: int = 0

    @property
    def per_wake_us(self) -> float | None:
        """The mean wait before each time a thread got a CPU (µs)."""
        return 1e6 * self.wait_s / self.waits if self.waits else None


Snapshot = dict[int, tuple[int, int]]  # tid -> (run-queue wait ns, timeslices)


def snapshot(pids: list[int], proc: Path = PROC) -> Snapshot:
    """Every thread of `pids`: its cumulative run-queue wait and timeslices.  A process
    or thread gone while it is read is skipped."""
    out: Snapshot = {}
    for pid in pids:
        try:
            tids = [int(t.name) for t in (proc / str(pid) / "task").iterdir()]
        except (OSError, ValueError):
            continue
        for tid in tids:
            try:
                _, wait, slices = (proc / str(pid) / "task" / str(tid) / "schedstat"
                                   ).read_text().split()[:3]
            except (OSError, ValueError):
                continue
            out[tid] = (int(wait), int(slices))
    return out


def window(a: Snapshot, b: Snapshot) -> RunQueueWait:
    """What the threads waited between snapshots `a` and `b`."""
    wait = slices = 0
    for tid, (w, s) in b.items():
        w0, s0 = a.get(tid, (0, 0))
        if w < w0 or s < s0:  # the tid was reused by a thread born in the window
            w0 = s0 = 0
        wait, slices = wait + w - w0, slices + s - s0
    return RunQueueWait(round(wait / 1e9, 6), slices, len(b),
                        sum(1 for tid in a if tid not in b))


def available(proc: Path = PROC) -> bool:
    """Whether this kernel keeps per-thread schedstat (CONFIG_SCHED_INFO)."""
    return (proc / "self" / "schedstat").exists()
