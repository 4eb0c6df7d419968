"""Progress of long work (no privileges): a bar with an ETA on a terminal, plain lines
otherwise (a log file, CI).

One `Progress` per run travels with it (gamebed/run.py `Run.progress`, and every
point's `ctx.progress`): call it with a message to print a line (above the bar when
there is one), `status(text)` to say what the bar is doing now, and `task(total,
desc)` to show a bar for a piece of work whose `advance(n)` moves it by n units.
Units are whatever estimates the remaining time best: the sweep counts seconds of
expected work per point (boot time grows with the guest count).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, stream: TextIO | None = None, bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.use_bar = self.stream.isatty() if bar is None else bar
        self.bar: tqdm | None = None

    def __call__(self, msg: str) -> None:
        """A progress line: above the bar, or plain."""
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:
            print(msg, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """What the bar is doing now (e.g. '7/16 guests booted'); nothing without a bar."""
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)

    @contextmanager
    def task(self, total: float, desc: str, unit: str = "s") -> Iterator[Progress]:
        """A bar for `total` units of work while the block runs (on a terminal)."""
        if self.use_bar:
            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False,
                            dynamic_ncols=True, mininterval=0, miniters=1,
                            bar_format="{desc} {percentage:3.0f}%|{bar}| "
                                       "{elapsed}<{remaining}")
        try:
            yield self
        finally:
            if self.bar is not None:
                self.bar.close()
            self.bar = None

    def advance(self, n: float = 1.0) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def grow(self, n: float) -> None:
        """More work than estimated (a search chose another count)."""
        if self.bar is not None:
            self.bar.total += n
            self.bar.refresh()


def sweep_work(counts: tuple[int, ...], modes: tuple[str, ...], duration: float,
               boot_s_per_guest: float) -> dict[int, tuple[float, float]]:
    """Expected seconds per count: (building and booting, each mode's point)."""
    return {n: (2.0 + boot_s_per_guest * n, duration + 8.0 + 0.5 * n) for n in counts}
