"""Will the guests fit in the host's memory?  Checked before a count's guests are booted
(no privileges; reads /proc/meminfo).

A count is refused, with its figures, when its new guests would need more than the
host has available less a reserve for its own (kernel, host side, the records' page
cache).  What a guest needs: the most any running guest of this testbed takes (PSS of
its processes, measured), or before any is running the guest's RAM for a VM (a UML or
libvirt guest may touch all of it) and a game server process's for a namespace guest.
Measured on an AMD EPYC host with 160 MiB UML guests: 51 MiB PSS and 55 MiB charged
per guest at 32 and 48 guests (docs/records.md point.json `pss_mib_per_guest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# the host's own beside the guests: analysis/model.py MEMORY_RESERVE_MIB's value (that
# module's source is in the registered model's digest, so it keeps its own; a test
# checks the two agree)
RESERVE_MIB = 1024
NETNS_GUEST_MIB = 40.0  # a namespace guest is its game server: a Python process


def available_mib() -> int | None:
    """MemAvailable (MiB), or None where /proc/meminfo does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def a_priori_mib(backend: str, vm_memory_mib: int) -> float:
    """What one guest of `backend` may take before any is measured."""
    return NETNS_GUEST_MIB if backend == "netns" else float(vm_memory_mib)


@dataclass(frozen=True)
class MemoryNeed:
    """New guests, what each needs and how that is known, and what the host has."""

    guests: int
    per_guest_mib: float
    how: str
    available_mib: int

    @property
    def need_mib(self) -> float:
        return self.guests * self.per_guest_mib + RESERVE_MIB

    @property
    def most(self) -> int:
        """The most new guests that fit."""
        return max(0, int((self.available_mib - RESERVE_MIB) // self.per_guest_mib))

    def refusal(self, running: int) -> str | None:
        """Why these guests cannot be booted, or None where they fit."""
        if self.need_mib <= self.available_mib:
            return None
        return (f"{self.guests} more guest(s) need about {self.need_mib:.0f} MiB "
                f"({self.per_guest_mib:.0f} MiB each, {self.how}, and {RESERVE_MIB} MiB for "
                f"the host), but the host has {self.available_mib} MiB available: at most "
                f"{running + self.most} guests fit here; ask for fewer (--guests) or "
                "smaller guests (--vm-memory)")


def check(guests: int, running: dict[int, float], backend: str, vm_memory_mib: int) -> None:
    """Refuse `guests` new guests that would not fit (ValueError, with the figures).
    `running`: the PSS (MiB) of the guests already running, by index."""
    avail = available_mib()
    if not guests or avail is None:
        return
    measured = [v for v in running.values() if v]
    if measured:
        need = MemoryNeed(guests, max(measured), f"as much as the most of the {len(measured)} "
                          "running guests takes (PSS)", avail)
    else:
        need = MemoryNeed(guests, a_priori_mib(backend, vm_memory_mib),
                          "a guest's RAM" if backend != "netns" else "a game server's",
                          avail)
    why = need.refusal(len(running))
    if why:
        raise ValueError(why)
