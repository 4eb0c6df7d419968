"""Why the stamps are late: the guests' run-queue wait beside the stamp error (no
privileges).

Each point's cpu.json holds its guests' threads' run-queue wait over the load, from the
kernel's own per-thread schedstat (gamebed/schedwait.py); analysis/point.py turns it
into `rq_wait_per_wake_us`, the mean wait before a guest thread got a CPU.  With guest
stamps an input is stamped when its guest runs, so its stamp error holds that wait.
They differ where an input lands while its guest is already running (it waits for
nothing, but the wake-ups of that guest still count) and where a guest wakes for its
own work (ticks, timers) with no input waiting; the stamp error also carries the
guest's own path from its wake-up to the socket's stamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class WaitRow:
    """One guest count, guest stamps: the medians over its repeats."""

    guests: int
    points: int
    stamp_error_mean_us: float
    wait_per_wake_us: float

    @property
    def ratio(self) -> float | None:
        """Wait per wake-up over stamp error (1: the wait explains it all)."""
        e = self.stamp_error_mean_us
        return self.wait_per_wake_us / e if e and e > 0 else None


@dataclass(frozen=True)
class WaitFigures:
    """The per-count rows and, over every guest-mode point, the correlation of the mean
    stamp error with the mean wait per wake-up (None: under 3 points)."""

    rows: tuple[WaitRow, ...]
    correlation: float | None
    points: int


def _guest_points(df: pd.DataFrame) -> pd.DataFrame:
    if "rq_wait_per_wake_us" not in df:
        return df.iloc[0:0]
    g = df[df["mode"] == "guest"]
    return g[np.isfinite(g["rq_wait_per_wake_us"].astype(float))
             & np.isfinite(g["stamp_error_mean_us"].astype(float))]


def wait_figures(df: pd.DataFrame) -> WaitFigures | None:
    """The guest-stamp points' stamp error against their guests' wait per wake-up; None
    where no point recorded the wait (a run before the measure, or libvirt)."""
    g = _guest_points(df)
    if g.empty:
        return None
    rows = tuple(WaitRow(int(n), len(p), float(p["stamp_error_mean_us"].median()),
                         float(p["rq_wait_per_wake_us"].median()))
                 for n, p in g.groupby("guests"))
    x, y = g["rq_wait_per_wake_us"].astype(float), g["stamp_error_mean_us"].astype(float)
    r = None
    if len(g) >= 3 and x.std() > 0 and y.std() > 0:
        r = float(np.corrcoef(x, y)[0, 1])
    return WaitFigures(rows, r, len(g))


def wait_lines(w: WaitFigures) -> list[str]:
    """The section's prose: how close the two are."""
    r = "–" if w.correlation is None else f"{w.correlation:.3f}"
    ratios = [x.ratio for x in w.rows if x.ratio is not None]
    spread = (f"; the wait is {min(ratios):.2f}–{max(ratios):.2f} of the stamp error "
              "across counts") if ratios else ""
    return [f"Over the {w.points} guest-stamp points, the mean stamp error and the guests' "
            f"mean run-queue wait per wake-up correlate at r = {r}{spread}. The wait is "
            "the kernel's account (per-thread schedstat) of how long a guest's threads "
            "were runnable before they got a CPU; an input that lands while its guest "
            "already runs waits for nothing, and a guest also wakes for its own ticks and "
            "timers, so the two differ by what each counts that the other does not."]


WAIT_HEAD = ["guests", "points", "stamp error mean µs", "run-queue wait per wake-up µs",
             "wait / stamp error"]


def wait_rows(w: WaitFigures) -> list[list[str]]:
    return [[str(x.guests), str(x.points), f"{x.stamp_error_mean_us:.1f}",
             f"{x.wait_per_wake_us:.1f}", "–" if x.ratio is None else f"{x.ratio:.2f}"]
            for x in w.rows]
