"""--guest-slice-ms (gamebed/guestslice.py): the slice set on every fair thread and read
back, faked at the syscall's edge, a kernel that keeps nothing refused with what to do,
and the real syscalls on this kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gamebed import guestslice as G
from gamebed.spec import ExperimentSpec


class FakeKernel(G.Syscalls):
    """sched_{get,set}attr over a table of threads; `keeps` False: a kernel before 6.12
    (it accepts a fair task's runtime and keeps nothing)."""

    def __init__(self, threads: dict[int, G.SchedAttr], keeps: bool = True,
                 gone: tuple[int, ...] = ()) -> None:
        self.threads, self.keeps, self.gone, self.sets = dict(threads), keeps, gone, []

    def get(self, tid: int) -> G.SchedAttr:
        if tid in self.gone:
            raise ProcessLookupError(3, "No such process")
        return self.threads.setdefault(tid, G.SchedAttr(0, 0, 1_400_000))

    def set(self, tid: int, attr: G.SchedAttr) -> None:
        self.sets.append((tid, attr))
        if self.keeps:
            self.threads[tid] = attr


def _proc(root, pids: dict[int, list[int]]):
    for pid, tids in pids.items():
        for t in tids:
            (root / str(pid) / "task" / str(t)).mkdir(parents=True)
    return root


def test_every_fair_thread_gets_the_slice_and_keeps_its_nice(tmp_path):
    k = FakeKernel({11: G.SchedAttr(0, 5, 1_400_000), 12: G.SchedAttr(1, 0, 0),  # FIFO
                    21: G.SchedAttr(3, -2, 700_000)}, gone=(13,))
    rec = G.apply([10, 20], 30.0, k, _proc(tmp_path, {10: [11, 12, 13], 20: [21]}))
    assert (rec.threads, rec.skipped, rec.gone, rec.read_back_ms) == (2, 1, 1, (30.0, 30.0))
    assert k.threads[11] == G.SchedAttr(0, 5, 30_000_000)  # nice 5 kept
    assert k.threads[21] == G.SchedAttr(3, -2, 30_000_000)  # SCHED_BATCH too
    assert k.threads[12] == G.SchedAttr(1, 0, 0)  # a realtime thread is left alone


def test_a_kernel_that_keeps_no_slice_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(G.SliceUnsupported, match="needs Linux 6.12 or later; run without"):
        G.check(30.0, FakeKernel({}, keeps=False))
    with pytest.raises(G.SliceUnsupported, match="6.12"):
        G.apply([10], 30.0, FakeKernel({}, keeps=False), _proc(tmp_path, {10: [11]}))
    with pytest.raises(ValueError, match="0.1 to 100 ms"):
        G.check(500.0, FakeKernel({}))


def test_a_failing_syscall_is_refused_with_what_to_do():
    class Denied(FakeKernel):
        def set(self, tid, attr):
            raise PermissionError(1, "Operation not permitted")
    with pytest.raises(G.SliceUnsupported, match="run as root"):
        G.check(30.0, Denied({}))


def test_the_spec_takes_the_kernels_range_on_the_cgroup_backends():
    assert ExperimentSpec.of(guest_slice_ms=30.0, backend="uml").tuning.guest_slice_ms == 30.0
    for bad in ({"guest_slice_ms": 0.05}, {"guest_slice_ms": 101.0},
                {"guest_slice_ms": 30.0, "backend": "libvirt"}):
        with pytest.raises(ValueError, match="guest_slice_ms"):
            ExperimentSpec.of(**bad)


def test_this_kernel_keeps_a_childs_slice_and_its_forks_inherit_it():
    """The real syscalls: a child process's threads set to 30 ms read 30 ms back, and a
    process it forks afterwards has it too (why setting a guest once its servers run
    covers them)."""
    try:
        G.check(30.0)
    except G.SliceUnsupported as e:
        pytest.skip(f"this kernel ({os.uname().release}) keeps no fair slice: {e}")
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        rec = G.apply([child.pid], 30.0)
        assert rec.threads >= 1 and rec.read_back_ms == (30.0, 30.0)
        assert G.Syscalls().get(child.pid).runtime_ns == 30_000_000
    finally:
        child.communicate(b"")
