"""Progress of long work (no privileges): a bar with an ETA on a terminal, plain lines
otherwise (a log file, CI).

`Progress(total, desc)` wraps tqdm: `line(msg)` prints a message above the bar (or
as a plain line), `advance(n)` moves the bar by n units of work, `close()` ends it.
Units are whatever estimates the remaining time best: the sweep counts seconds of
expected work per point (boot time grows with the guest count), a boot counts
guests.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, total: float, desc: str, unit: str = "s", stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        on = self.stream.isatty() if bar is None else bar
        self.bar = (tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False,
                         dynamic_ncols=True, mininterval=0, miniters=1,
                         bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
                    if on else None)

    def line(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:
            print(msg, file=self.stream, flush=True)

    def advance(self, n: float = 1.0) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def grow(self, n: float) -> None:
        """More work than estimated (a search chose another count)."""
        if self.bar is not None:
            self.bar.total += n
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        _current.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self in _current:
            _current.remove(self)
        self.close()


def sweep_work(counts: tuple[int, ...], modes: tuple[str, ...], duration: float,
               boot_s_per_guest: float) -> dict[int, tuple[float, float]]:
    """Expected seconds per count: (building and booting, each mode's point)."""
    return {n: (2.0 + boot_s_per_guest * n, duration + 8.0 + 0.5 * n) for n in counts}


_current: list[Progress] = []  # the bar of the work under way, if any


def say(msg: str) -> None:
    """A progress line: above the current bar, or plain on stderr."""
    if _current:
        _current[-1].line(msg)
    else:
        print(msg, file=sys.stderr, flush=True)


def status(text: str) -> None:
    """What the current bar is doing now (e.g. '7/16 guests booted'); no-op without a bar."""
    if _current and _current[-1].bar is not None:
        _current[-1].bar.set_description_str(text, refresh=True)
