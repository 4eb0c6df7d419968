"""Input schedules (Poisson, periodic with jitter, one per tick) and the NTP-style
clock-sync arithmetic (no privileges)."""

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


INPUT_PROCESSES = ("poisson", "periodic", "per_tick")


def periodic_gaps_ns(rate_hz: float, jitter: float, rng: random.Random) -> Iterator[int]:
    """A send every 1/rate_hz s, each moved by a uniform offset within ±jitter/2 of a
    period (0 ≤ jitter < 1), from a random phase: the k-th send is at
    phase + k·T + u_k, so jitter never accumulates and the rate stays exact."""
    if rate_hz <= 0 or not 0 <= jitter < 1:
        raise ValueError("rate must be positive and jitter a fraction of a period in [0, 1)")
    period = NS / rate_hz
    offset = rng.uniform(-jitter / 2, jitter / 2) * period
    yield max(1, int(rng.uniform(0, period) + period * jitter / 2 + offset))
    while True:
        nxt = rng.uniform(-jitter / 2, jitter / 2) * period
        yield max(1, int(period + nxt - offset))
        offset = nxt


def input_gaps_ns(process: str, rate_hz: float, rng: random.Random,
                  jitter: float = 0.0) -> Iterator[int]:
    """A player's gaps between inputs: `poisson` (mean rate_hz), `periodic` (rate_hz,
    jittered) or `per_tick` (rate_hz = the tick rate: one input per server tick, as a
    client that sends its command each frame it simulates)."""
    if process == "poisson":
        return poisson_gaps_ns(rate_hz, rng)
    if process in ("periodic", "per_tick"):
        return periodic_gaps_ns(rate_hz, jitter, rng)
    raise ValueError(f"input process must be one of {INPUT_PROCESSES}, not {process!r}")


def player_rng(seed: int, guest: int, player: int) -> random.Random:
    """One independent, reproducible stream per (seed, guest, player): its schedule's."""
    return random.Random(f"gamebed:{seed}:{guest}:{player}")


def content_rng(seed: int, guest: int, player: int) -> random.Random:
    """The stream of what a player's inputs hold (apart from when they are sent)."""
    return random.Random(f"gamebed:{seed}:{guest}:{player}:input")


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
