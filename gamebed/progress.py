"""Progress of long work (no privileges): a bar with an ETA on a terminal, plain lines
otherwise (a log file, CI).

One `Progress` per run travels with it (gamebed/run.py `Run.progress`, and every
point's `ctx.progress`): call it with a message to print a line (above the bar when
there is one), `status(text)` to say what the bar is doing now, and `task(total,
desc)` to show a bar for a piece of work whose `advance(n)` moves it by n units.
Units are whatever estimates the remaining time best: the sweep's are seconds, the
time spent and the time its budget says is left (gamebed/budget.py), set anew after
every point.
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

    def set(self, done: float, total: float) -> None:
        """Where the work stands: `done` of `total` units (a fresh estimate)."""
        if self.bar is not None:
            self.bar.total = max(total, done)
            self.bar.n = done
            self.bar.refresh()
