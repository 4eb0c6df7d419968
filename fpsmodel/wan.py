"""A WAN between the players and the host, emulated in the client (no privileges).

Where the kernel has no netem (CONFIG_NET_SCH_NETEM unset, as on the 6.18 kernel
gamebed was built on), `gamebed run --wan` has the client hold each datagram for
the WAN's delay before it leaves, and each state update for the delay back before
it counts as received.  The datagrams really reach the host late, jittered
(reordered where the jitter exceeds the gap between two of them) and thinned; the
host stamps them as they arrive, which is the point: everything before the host
stamp is the network's.  Clock-sync messages bypass it (an asymmetric delay would
bias every offset).

The netem arguments it takes: `delay D [J]` (each datagram: D ± J, uniform, as
netem without a distribution), `loss P%` and `rate R` (bits/s with netem's units:
bit, kbit, mbit, gbit; a datagram leaves once the link has sent the ones before
it).  Its random draws have their own seed, so the inputs sent (their schedule and
content) are the same with and without a WAN.
"""

from __future__ import annotations

import heapq
import random
import re
from dataclasses import dataclass

_TIME = {"us": 1e3, "usec": 1e3, "ms": 1e6, "msec": 1e6, "s": 1e9, "sec": 1e9}
_RATE = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def _num(text: str, units: dict[str, float], what: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]*)", text)
    if not m or (m[2] and m[2] not in units):
        raise ValueError(f"--wan: {what} {text!r}: expected a number with one of "
                         f"{', '.join(units)}")
    return float(m[1]) * units.get(m[2], next(iter(units.values())))


@dataclass(frozen=True)
class WanModel:
    delay_ns: int = 0
    jitter_ns: int = 0
    loss: float = 0.0  # probability
    rate_bps: float = 0.0  # 0: unlimited

    @classmethod
    def parse(cls, args: list[str]) -> WanModel:
        """From netem arguments; ValueError for those only the kernel's netem has."""
        kw: dict = {}
        i = 0
        while i < len(args):
            key, vals = args[i], []
            i += 1
            while i < len(args) and args[i] not in ("delay", "loss", "rate") \
                    and re.match(r"^\d", args[i]):
                vals.append(args[i])
                i += 1
            if key == "delay" and 1 <= len(vals) <= 2:
                kw["delay_ns"] = int(_num(vals[0], _TIME, "delay"))
                if len(vals) == 2:
                    kw["jitter_ns"] = int(_num(vals[1], _TIME, "jitter"))
            elif key == "loss" and len(vals) == 1:
                kw["loss"] = float(vals[0].rstrip("%")) / 100
            elif key == "rate" and len(vals) == 1:
                kw["rate_bps"] = _num(vals[0], _RATE, "rate")
            else:
                raise ValueError(f"--wan: {key} {' '.join(vals)}: the client's WAN emulator "
                                 "takes delay D [J], loss P% and rate R; the rest needs the "
                                 "kernel's netem (CONFIG_NET_SCH_NETEM)")
        return cls(**kw)

    @property
    def span_ns(self) -> int:
        return self.delay_ns + self.jitter_ns


class WanLink:
    """One direction of the WAN: `put(now, item, size)` queues an item (or drops it),
    `due(now)` returns the items whose time has come, in departure order."""

    def __init__(self, model: WanModel, seed: int) -> None:
        self.m, self.rng = model, random.Random(seed)
        self._heap: list[tuple[int, int, object]] = []
        self._n = 0
        self._link_free_ns = 0
        self.dropped = self.passed = 0

    def put(self, now_ns: int, item: object, size: int) -> bool:
        """Queue `item` to come out after the link's delay; False: the link lost it."""
        if self.m.loss and self.rng.random() < self.m.loss:
            self.dropped += 1
            return False
        t = now_ns
        if self.m.rate_bps:  # serialisation on a link of that rate, in order
            t = max(t, self._link_free_ns) + int(size * 8 * 1e9 / self.m.rate_bps)
            self._link_free_ns = t
        t += self.m.delay_ns
        if self.m.jitter_ns:
            t += int(self.rng.uniform(-self.m.jitter_ns, self.m.jitter_ns))
        heapq.heappush(self._heap, (max(t, now_ns), self._n, item))
        self._n += 1
        self.passed += 1
        return True

    def next_ns(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now_ns: int) -> list[tuple[int, object]]:
        out = []
        while self._heap and self._heap[0][0] <= now_ns:
            t, _, item = heapq.heappop(self._heap)
            out.append((t, item))
        return out

    def __len__(self) -> int:
        return len(self._heap)
