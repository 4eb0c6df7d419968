"""A count that would not fit in the host's memory is refused before it is booted, with
its figures (gamebed/memory.py)."""

import pytest

from gamebed import memory
from gamebed.memory import RESERVE_MIB, MemoryNeed


def test_a_count_that_fits_passes_and_one_that_does_not_says_what_fits():
    fits = MemoryNeed(96, 60.0, "measured", 8000)
    assert fits.need_mib == 96 * 60 + RESERVE_MIB and fits.refusal(0) is None
    big = MemoryNeed(128, 160.0, "a guest's RAM", 16000)
    why = big.refusal(0)
    assert "128 more guest(s) need about 21504 MiB (160 MiB each, a guest's RAM" in why
    assert "the host has 16000 MiB available: at most 93 guests fit here" in why
    assert "--guests" in why and "--vm-memory" in why
    assert "at most 125 guests fit" in MemoryNeed(100, 160.0, "x", 16000).refusal(32)


def test_running_guests_are_measured_and_new_ones_judged_by_the_most_any_takes(monkeypatch):
    monkeypatch.setattr(memory, "available_mib", lambda: 4000)
    memory.check(40, {0: 50.0, 1: 70.0}, "uml", 160)  # 40 x 70 + 1024 <= 4000
    with pytest.raises(ValueError, match=r"\(70 MiB each, as much as the most of the 2 "):
        memory.check(50, {0: 50.0, 1: 70.0}, "uml", 160)
    with pytest.raises(ValueError, match=r"160 MiB each, a guest's RAM"):
        memory.check(40, {}, "uml", 160)  # nothing measured yet: the guest's RAM
    memory.check(40, {}, "netns", 160)  # a namespace guest is a game server


def test_the_reserve_is_the_capacity_models():
    from analysis.model import MEMORY_RESERVE_MIB

    assert RESERVE_MIB == MEMORY_RESERVE_MIB
