"""How the client keeps its send times (no privileges; SCHED_FIFO where it may): exact
waits, a short spin before each send, 1 ns timer slack and a realtime policy."""

from __future__ import annotations

import ctypes
import os
import select
import time

PR_SET_TIMERSLACK = 29


EPOLL_MARGIN_S = 0.0025


def wait_exact(fds: list[int], seconds: float) -> None:
    """Until `seconds` pass or a socket has data: select(2), µs timeouts (fd numbers from
    1024 on are beyond it: then a plain sleep, which is as exact but reads nothing)."""
    try:
        select.select(fds, [], [], seconds)
    except ValueError:
        time.sleep(seconds)


def spin_per_send(spin_us: float, share: float, rate_hz: float) -> float:
    """The spin before each send: `spin_us`, but no more than `share` of the core at
    `rate_hz` sends/s (a dense schedule's sends are each other's wake-ups anyway)."""
    if rate_hz <= 0:
        return spin_us
    return min(spin_us, share * 1e6 / rate_hz)


def spin_until(t_ns: int) -> None:
    while time.time_ns() < t_ns:
        pass


def punctual_timers() -> None:
    """The kernel may defer this thread's timers by its slack (50 µs by default) to
    batch wake-ups: 1 ns instead, where prctl is there (a send's lateness is on record)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def realtime(priority: int) -> str:
    """SCHED_FIFO at `priority` for this process, where it may: a send that is due then
    preempts the host side's other work on its CPU (the shim) at once, instead of waiting
    out that work's time slice.  Returns the policy it runs under, and why."""
    if priority <= 0:
        return "other"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as e:  # EPERM: not root, or no RT budget
        return f"other (SCHED_FIFO refused: {getattr(e, 'strerror', None) or e})"
    return f"fifo {priority}"
