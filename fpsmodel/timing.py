"""Poisson input schedules and the NTP-style clock-sync arithmetic (no privileges)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

NS = 1_000_000_000


def poisson_gaps_ns(rate_hz: float, rng: random.Random) -> Iterator[int]:
    """Exponential inter-arrival gaps (ns) of a Poisson process with mean rate `rate_hz`."""
    if rate_hz <= 0:
        raise ValueError("rate must be positive")
    while True:
        yield max(1, int(rng.expovariate(rate_hz) * NS))


def player_rng(seed: int, guest: int, player: int) -> random.Random:
    """One independent, reproducible stream per (seed, guest, player)."""
    return random.Random(f"gamebed:{seed}:{guest}:{player}")


@dataclass(frozen=True)
class SyncSample:
    t1: int  # client send
    t2: int  # server receive (kernel stamp)
    t3: int  # server send
    t4: int  # client receive

    @property
    def offset_ns(self) -> int:
        """Server clock minus client clock."""
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) // 2

    @property
    def delay_ns(self) -> int:
        """Round trip without the server's hold time."""
        return (self.t4 - self.t1) - (self.t3 - self.t2)


def best_sample(samples: list[SyncSample]) -> tuple[SyncSample, int]:
    """The minimum-delay sample and its uncertainty (half its round trip), as NTP does."""
    if not samples:
        raise ValueError("no clock-sync samples")
    best = min(samples, key=lambda s: s.delay_ns)
    return best, max(0, best.delay_ns) // 2
