"""The guests' scheduler slice, `--guest-slice-ms` (root: it sets other processes'
scheduling attributes).

Since Linux 6.12 a SCHED_OTHER task may ask EEVDF for its own slice, 0.1 to 100 ms,
through `sched_setattr`'s `sched_attr.sched_runtime`, and `sched_getattr` reads it
back.  Xen's credit scheduler gave a vCPU 30 ms; this host's default slice is a few
ms or less.  `apply(pids, ms)` sets the slice on every thread of the given processes
(the guests' own: a UML guest's processes, whose forks inherit it) and reads each one
back; `check(ms)` tries it first on a thread of its own, so a kernel that ignores the
field (before 6.12 it accepts it and keeps nothing) is found before a run starts.  The
threads go with their guests, so nothing is left changed after a run.

The two syscalls sit behind `Syscalls`, the edge a test fakes.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

SLICE_MS = (0.1, 100.0)  # the kernel's clamp on a fair task's slice (kernel/sched/syscalls.c)
FAIR = (0, 3)  # SCHED_OTHER, SCHED_BATCH: the policies whose slice this is
_NR = {"x86_64": (314, 315), "aarch64": (274, 275)}  # sched_setattr, sched_getattr


class SliceUnsupported(RuntimeError):
    """This kernel does not keep a fair task's own slice."""


class _Attr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32),
                ("flags", ctypes.c_uint64), ("nice", ctypes.c_int32),
                ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64),
                ("util_min", ctypes.c_uint32), ("util_max", ctypes.c_uint32)]


@dataclass(frozen=True)
class SchedAttr:
    """The part of a thread's sched_attr this module reads and writes."""

    policy: int
    nice: int
    runtime_ns: int


class Syscalls:
    """sched_getattr and sched_setattr through libc's syscall(2)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.nr = _NR.get(os.uname().machine)

    def _call(self, nr: int, *args: object) -> None:
        if self.libc.syscall(nr, *args) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    def get(self, tid: int) -> SchedAttr:
        if self.nr is None:
            raise SliceUnsupported(f"sched_getattr's number on {os.uname().machine} is "
                                   "not known to gamebed")
        a = _Attr()
        self._call(self.nr[1], tid, ctypes.byref(a), ctypes.sizeof(a), 0)
        return SchedAttr(a.policy, a.nice, a.runtime)

    def set(self, tid: int, attr: SchedAttr) -> None:
        if self.nr is None:
            raise SliceUnsupported(f"sched_setattr's number on {os.uname().machine} is "
                                   "not known to gamebed")
        a = _Attr(size=ctypes.sizeof(_Attr), policy=attr.policy, nice=attr.nice,
                  runtime=attr.runtime_ns)
        self._call(self.nr[0], tid, ctypes.byref(a), 0)


@dataclass(frozen=True)
class SliceRecord:
    """What `apply` did: point.json's `guest_slice`."""

    asked_ms: float
    threads: int  # threads set and read back at the slice asked
    skipped: int  # threads of another policy (realtime, idle): left alone
    gone: int  # threads that exited while they were being set
    read_back_ms: tuple[float, float] | None  # the smallest and largest read back


def _tids(pid: int, proc: Path) -> list[int]:
    try:
        return [int(t.name) for t in (proc / str(pid) / "task").iterdir()]
    except (OSError, ValueError):
        return []


def set_slice(tid: int, ms: float, sys: Syscalls) -> float | None:
    """Set one fair thread's slice and read it back (ms); None where it is not a fair
    thread.  Its nice value is kept: sched_setattr writes the whole attribute."""
    a = sys.get(tid)
    if a.policy not in FAIR:
        return None
    sys.set(tid, SchedAttr(a.policy, a.nice, int(round(ms * 1e6))))
    return sys.get(tid).runtime_ns / 1e6


def apply(pids: list[int], ms: float, sys: Syscalls | None = None,
          proc: Path = Path("/proc")) -> SliceRecord:
    """Slice `ms` for every thread of `pids`, each read back; a thread whose read-back
    is not `ms` raises SliceUnsupported."""
    sys = sys or Syscalls()
    got, skipped, gone = [], 0, 0
    for pid in pids:
        for tid in _tids(pid, proc):
            try:
                back = set_slice(tid, ms, sys)
            except ProcessLookupError:
                gone += 1
                continue
            if back is None:
                skipped += 1
            elif abs(back - ms) > 1e-6:
                raise SliceUnsupported(unsupported(ms, back))
            else:
                got.append(back)
    return SliceRecord(ms, len(got), skipped, gone,
                       (min(got), max(got)) if got else None)


def unsupported(ms: float, back: float) -> str:
    return (f"--guest-slice-ms {ms:g}: this kernel ({os.uname().release}) kept a slice of "
            f"{back:g} ms, not {ms:g}: a fair task's own slice needs Linux 6.12 or later; "
            "run without --guest-slice-ms")


def check(ms: float, sys: Syscalls | None = None) -> None:
    """Try slice `ms` on a thread of this process's own (which then exits); raise
    SliceUnsupported, with what to do, where the kernel does not keep it."""
    if not SLICE_MS[0] <= ms <= SLICE_MS[1]:
        raise ValueError(f"--guest-slice-ms {ms:g}: the kernel takes a slice of "
                         f"{SLICE_MS[0]:g} to {SLICE_MS[1]:g} ms")
    sys = sys or Syscalls()
    out: list[BaseException | float | None] = []

    def probe() -> None:
        try:
            out.append(set_slice(threading.get_native_id(), ms, sys))
        except BaseException as e:  # handed to the caller's thread
            out.append(e)
    t = threading.Thread(target=probe, name="slice-probe")
    t.start()
    t.join()
    got = out[0]
    if isinstance(got, OSError):
        raise SliceUnsupported(f"--guest-slice-ms {ms:g}: sched_setattr failed ({got}); "
                               "run as root on Linux 6.12 or later, or without it")
    if isinstance(got, BaseException):
        raise got
    if got is None or abs(got - ms) > 1e-6:
        raise SliceUnsupported(unsupported(ms, got or 0.0))
