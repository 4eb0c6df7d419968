"""What the players feel of the servers' ticks, over the load window (no privileges).

The players' SLA (analysis/capacity.py) holds a count to two tick terms, fixed before
any of this was measured (issue 26's report used them first):
- the ticks a player received in the load window are at least 99% of those scheduled
  in it (TICK_RATE_TOLERANCE);
- the p99 gap between a player's received ticks is at most 1.5 tick periods
  (TICK_GAP_LIMIT).

Both are read per player, from what the player received: the kernel's receive stamp
on the client's socket (client_updates.csv `arrive_ns`, before any emulated WAN), so
a caught-up burst of ticks counts with the long gap before it, and the client's own
spins and sends do not widen the gaps.  A player's window runs from its first input's
arrival at the host side (a server sends a player updates once it has heard from it)
to the load's last input.
A count passes only if the worst player of every server does.

Each player's figures carry an interval whose two ends serve the two verdicts: a
pass needs the player's own 95% end within the term, a fail the family's end beyond
it, at the level 1 − 0.05 / players (Bonferroni over the point's players,
FAMILY_ALPHA), so that a point whose players all sit at a term's limit fails it with
probability at most about 2.5% however many players it has.  For the share of ticks
received see share_interval; for the p99 gap, sectioning (analysis/stats.py).  A
point keeps the envelope over its players: the lowest share with the lowest bounds,
and the largest p99 gap with the largest bounds.  So "every player's interval within
the term" is the envelope's within it (pass), and "some player's beyond it" is the
envelope's other end beyond it (fail).

The servers' own ticks (server_summary.json `tick_wall_ns`: when each tick's updates
had been handed to the guest's kernel, on the guest's clock, moved to the host's by the
guest's clock-sync offset) over the load window are a cross-check:
`tick_rate_disagreement` and `tick_gap_disagreement` give the largest relative
difference, over the guests, between what a guest's server did and what its players
received.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import stalls
from analysis.stats import (
    Stat,
    batch_ids,
    batch_mean_ci,
    batch_quantile_ci,
    binomial_ci,
    verdict,
)

TICK_RATE_TOLERANCE = 0.01  # received ticks at least 99% of those scheduled
TICK_GAP_LIMIT = 1.5  # p99 gap between received ticks at most 1.5 tick periods
# the tick terms hold for every player of a point at once: each player's interval is
# at the level 1 − FAMILY_ALPHA / players (Bonferroni), so that a point whose players
# all sit at a term's limit fails it with probability at most FAMILY_ALPHA / 2
# (tests/unit/test_tick_family.py simulates 4 and 100 players; docs/workloads.md)
FAMILY_ALPHA = 0.05
EDGE_95 = 1 - 0.05 ** 0.5  # the count's 95% resolution at a window's edges, in ticks


@dataclass(frozen=True)
class PlayerTicks:
    """One player's ticks over the window."""

    guest: int
    player: int
    received: int
    share: float  # received / scheduled
    share_ci: tuple[float, float]
    gap_p99_ms: float
    gap_p99_ci_ms: tuple[float, float]
    update_loss: float  # ticks missing between the first and last received
    window_s: float  # from the player's first input to the load's last

    @property
    def rate_hz(self) -> float:
        return self.received / self.window_s if self.window_s > 0 else float("nan")


@dataclass(frozen=True)
class TickFigures:
    """A point's tick figures: the players' envelope (the worst player's share of the
    ticks scheduled and p99 gap, each with its interval) and the servers' cross-check."""

    tick_hz: float
    window_s: float
    players: int
    share: Stat  # the worst player's share received; CI: the lowest ends over players
    gap_p99_ms: Stat  # the worst player's p99 gap; CI: the highest ends over players
    update_loss_worst: float
    tick_hz_received_mean: float
    tick_hz_received_min: float
    server_tick_hz_mean: float | None
    server_tick_gap_p99_max_ms: float | None
    tick_rate_disagreement: float | None
    tick_gap_disagreement: float | None

    def row(self) -> dict:
        return {"tick_hz": self.tick_hz, "window_s": self.window_s, "players": self.players,
                "ticks_share_worst": self.share.value, "ticks_share_ci_lo": self.share.lo,
                "ticks_share_ci_hi": self.share.hi,
                "tick_gap_p99_worst_ms": self.gap_p99_ms.value,
                "tick_gap_p99_ci_lo_ms": self.gap_p99_ms.lo,
                "tick_gap_p99_ci_hi_ms": self.gap_p99_ms.hi,
                "update_loss_worst": self.update_loss_worst,
                "tick_hz_received_mean": self.tick_hz_received_mean,
                "tick_hz_received_min": self.tick_hz_received_min,
                "server_tick_hz_mean": self.server_tick_hz_mean,
                "server_tick_gap_p99_max_ms": self.server_tick_gap_p99_max_ms,
                "tick_rate_disagreement": self.tick_rate_disagreement,
                "tick_gap_disagreement": self.tick_gap_disagreement}


@dataclass(frozen=True)
class Reading:
    """How a player's ticks are read: the windows a stall left out (analysis/stalls.py)
    and the family's level for a fail (1 − alpha)."""

    cut: tuple = ()
    alpha: float = 0.05


def player_ticks(arrive: np.ndarray, ticks: np.ndarray, window: tuple[int, int],
                 tick_hz: float, key: tuple[int, int], how: Reading = Reading()
                 ) -> PlayerTicks:
    """One player's figures from its updates' arrival stamps (ns) and tick numbers.

    The share received is n / scheduled, with share_interval's (1 − alpha) interval;
    the p99 gap between ticks has sectioning's (analysis/stats.py).  The windows in
    `how.cut` (a stall's, analysis/stalls.py) are left out."""
    cut, alpha = how.cut, how.alpha
    w0, w1 = window
    inside = (arrive >= w0) & (arrive <= w1)
    order = np.argsort(arrive[inside], kind="stable")
    a = arrive[inside][order]
    # what a stall left out (analysis/stalls.py): its ticks, the gaps that span it, and
    # its time from the ticks scheduled
    kept = ~stalls.inside(a, list(cut))
    scheduled = ((w1 - w0) - stalls.overlap_ns(list(cut), window)) * tick_hz / 1e9
    n = int(kept.sum())
    share = n / scheduled if scheduled > 0 else float("nan")
    span = kept[1:] & kept[:-1]
    if cut:
        starts = np.array([c[0] for c in cut])
        span &= np.searchsorted(starts, a[1:]) == np.searchsorted(starts, a[:-1])
    gaps = (np.diff(a).astype("float64") / 1e6)[span]
    ends = a[1:][span]
    share_ci = share_interval(n, scheduled, (gaps, ends), (window, cut), tick_hz, alpha)
    if len(gaps) >= 2:
        p99, b = float(np.quantile(gaps, 0.99)), batch_ids(ends)
        # a pass needs the player's own 95% within the term, a fail the family's beyond
        ci = (batch_quantile_ci(gaps, b, 0.99, alpha)[0], batch_quantile_ci(gaps, b, 0.99)[1])
    else:  # fewer than three ticks in the window: the gap is the window itself
        p99 = (w1 - w0) / 1e6
        ci = (p99, p99)
    # updates lost: tick numbers missing between the first and last received, over the
    # whole window; a stall's cut is not left out here, as its ticks still arrive (the
    # kernel holds them for a stalled client) and cutting them would read as lost ticks
    t = ticks[inside]
    loss = 1 - len(np.unique(t)) / (t.max() - t.min() + 1) if len(t) else 1.0
    return PlayerTicks(key[0], key[1], n, share, share_ci, p99, ci, float(loss),
                       (w1 - w0) / 1e9)


def share_interval(n: int, scheduled: float, gaps: tuple[np.ndarray, np.ndarray],
                   span: tuple[tuple[int, int], tuple], tick_hz: float, alpha: float
                   ) -> tuple[float, float]:
    """A player's share of ticks received, n / scheduled: its interval's two ends serve
    the two verdicts.  The lower end (a pass needs it within the term) is the player's
    own 95%: the count's resolution at the window's edges, ±(1 − √0.05) ticks (with the
    ticks' phase against the window uniform, n lies within a tick of s·scheduled with a
    triangular likelihood), widened by the relative half-width of the mean gap between
    ticks by batch means (a server that stalls and bursts has a wide one).  The upper
    end (a fail needs it beyond the term) is at the family's level 1 − alpha:
    Clopper-Pearson's on the ticks missed, its half-width widened by √φ where misses
    come in bursts (φ, `dispersion`), and by the edges' resolution at that level.  A
    10-s point of 200 ticks cannot show 99% at 95% by Clopper-Pearson even with none
    missed (its bound is 98.2%), so the pass side keeps the resolution's narrower
    bound."""
    if scheduled < 1:
        return (0.0, 1.0)
    (g, ends), (window, cut) = gaps, span
    rel = 1.0
    if len(g) >= 2 and g.mean() > 0:
        lo, hi = batch_mean_ci(g, batch_ids(ends))
        if np.isfinite(lo):
            rel = (hi - lo) / 2 / g.mean()
    whole = int(round(scheduled))
    miss_lo, _ = binomial_ci(max(0, whole - n), whole, alpha)
    share = n / scheduled
    w = max(1.0, dispersion(ends, window, tick_hz, cut)) ** 0.5
    return (max(0.0, (n - EDGE_95) / scheduled * (1 - rel)),
            share + w * max(0.0, (1 - miss_lo) - share) + (1 - alpha ** 0.5) / scheduled)


def dispersion(arrive: np.ndarray, window: tuple[int, int], tick_hz: float,
               cut: tuple = ()) -> float:
    """φ of a player's missed ticks: their variance over their mean across batches of
    about 2 s (at least 5) of the window, each batch's time in `cut` not scheduled; 1
    where fewer than one is missed per batch."""
    w0, w1 = window
    k = max(5, round((w1 - w0) / 2e9))
    got = np.bincount(np.minimum(((arrive - w0) * k // max(1, w1 - w0)).astype("int64"),
                                 k - 1), minlength=k)
    edges = [w0 + (w1 - w0) * i // k for i in range(k + 1)]
    live = np.array([(b - a) - stalls.overlap_ns(list(cut), (a, b))
                     for a, b in zip(edges, edges[1:], strict=False)])
    miss = live * tick_hz / 1e9 - got
    mean = float(miss.mean())
    return float(miss.var(ddof=1)) / mean if mean >= 1 else 1.0


def players(updates: pd.DataFrame, joined: dict[tuple[int, int], int], end_ns: int,
            tick_hz_of: dict[int, float], cut: tuple = ()) -> list[PlayerTicks]:
    """Every player's figures over its own window: from its first input (a server sends
    a player updates once it has heard from it) to the load's last input.  `joined`:
    each player's first send (ns); `tick_hz_of`: each guest's tick rate (a mix's
    differ).  A player that received nothing in its window counts with share 0."""
    got = arrivals_of(updates)
    ticks = ticks_of(updates)
    none = np.zeros(0, "int64")
    alpha = FAMILY_ALPHA / max(1, len(joined))  # Bonferroni over the point's players
    return [player_ticks(got.get(k, none), ticks.get(k, none), (start, end_ns),
                         tick_hz_of[k[0]], k, Reading(cut, alpha))
            for k, start in sorted(joined.items())]


@dataclass(frozen=True)
class CrossCheck:
    """The servers' own ticks against their players', each guest over one window."""

    server_tick_hz_mean: float | None
    server_tick_gap_p99_max_ms: float | None
    tick_rate_disagreement: float | None
    tick_gap_disagreement: float | None


def _rate_gap(t: np.ndarray, window: tuple[int, int]) -> tuple[float, float] | None:
    t = np.sort(t[(t >= window[0]) & (t <= window[1])])
    if len(t) < 3:
        return None
    return len(t) / ((window[1] - window[0]) / 1e9), float(np.quantile(np.diff(t) / 1e6, 0.99))


def delivery_lag(arrivals: dict, ticks: dict, guest: int, wall: np.ndarray) -> int:
    """The median time from a server's tick (its updates handed to its kernel, host
    clock) to its players' receiving that tick, matched by tick number (tick k is the
    session's k-th: wall[k - 1]); 0 where none match."""
    lags = []
    for (g, _p), a in arrivals.items():
        if g != guest:
            continue
        k = ticks[(g, _p)] - 1
        ok = (k >= 0) & (k < len(wall))
        lags.append(a[ok] - wall[k[ok]])
    lags = np.concatenate(lags) if lags else np.zeros(0, "int64")
    return int(np.median(lags)) if len(lags) else 0


def cross_check(updates: pd.DataFrame, joined: dict[tuple[int, int], int], end_ns: int,
                tick_wall: dict[int, list[int]], offsets: dict[int, float]) -> CrossCheck:
    """Per guest, over one window (from its last player's first input to the load's
    last): its players' mean rate and median p99 gap between ticks received, against the
    server's own over the same ticks: its tick times on the host's clock, moved by the
    median delivery lag, so that a tick at the window's edge counts for both or neither.
    The largest relative difference over the guests."""
    arrivals, ticks = arrivals_of(updates), ticks_of(updates)
    servers, rd, gd = {}, [], []
    for g, times in tick_wall.items():
        mine = [k for k in joined if k[0] == g]
        if not mine:
            continue
        wall = np.asarray(times, dtype="int64") - int(round(offsets.get(g, 0.0)))
        w = (max(joined[k] for k in mine), end_ns)
        own = _rate_gap(wall + delivery_lag(arrivals, ticks, g, wall), w)
        if own is None:
            continue
        servers[g] = own
        theirs = [_rate_gap(arrivals.get(k, np.zeros(0, "int64")), w) for k in mine]
        theirs = [x for x in theirs if x is not None]
        if theirs:
            rd.append(abs(np.mean([r for r, _ in theirs]) / own[0] - 1))
            gd.append(abs(np.median([gp for _, gp in theirs]) / own[1] - 1))
    if not servers:
        return CrossCheck(None, None, None, None)
    return CrossCheck(float(np.mean([r for r, _ in servers.values()])),
                      float(max(gp for _, gp in servers.values())),
                      float(max(rd)) if rd else None, float(max(gd)) if gd else None)


def figures(pl: list[PlayerTicks], check: CrossCheck, window: tuple[int, int],
            tick_hz: float) -> TickFigures | None:
    """The point's envelope over its players, and the servers' cross-check."""
    if not pl:
        return None
    worst_share = min(pl, key=lambda p: p.share)
    worst_gap = max(pl, key=lambda p: p.gap_p99_ms)
    rates = np.array([p.rate_hz for p in pl])
    return TickFigures(
        tick_hz, round((window[1] - window[0]) / 1e9, 3), len(pl),
        Stat(worst_share.share, min(p.share_ci[0] for p in pl),
             min(p.share_ci[1] for p in pl)),
        Stat(worst_gap.gap_p99_ms, max(p.gap_p99_ci_ms[0] for p in pl),
             max(p.gap_p99_ci_ms[1] for p in pl)), max(p.update_loss for p in pl),
        float(rates.mean()), float(rates.min()), check.server_tick_hz_mean,
        check.server_tick_gap_p99_max_ms, check.tick_rate_disagreement,
        check.tick_gap_disagreement)


def _arrival_col(updates: pd.DataFrame) -> str:
    """The kernel's receive stamps where recorded, else the time after recv (older)."""
    return "arrive_ns" if "arrive_ns" in updates and updates["arrive_ns"].notna().any() \
        else "recv_ns"


def arrivals_of(updates: pd.DataFrame) -> dict[tuple[int, int], np.ndarray]:
    """Each player's update arrivals (ns)."""
    col = _arrival_col(updates)
    u = updates.dropna(subset=[col])
    return {(int(g), int(p)): grp[col].to_numpy(dtype="int64")
            for (g, p), grp in u.groupby(["guest", "player"], sort=True)}


def ticks_of(updates: pd.DataFrame) -> dict[tuple[int, int], np.ndarray]:
    """Each player's received tick numbers, in the order of arrivals_of."""
    u = updates.dropna(subset=[_arrival_col(updates)])
    return {(int(g), int(p)): grp["tick"].to_numpy(dtype="int64")
            for (g, p), grp in u.groupby(["guest", "player"], sort=True)}


def server_walls(point_dir: Path) -> dict[int, list[int]]:
    """Each guest's server tick times (its own clock), where its summary has them."""
    from analysis.records import load_json

    out = {}
    for f in sorted(Path(point_dir).glob("**/server_summary.json")):
        s = load_json(f, {}) or {}
        if s.get("tick_wall_ns") and s.get("guest") is not None:
            out[int(s["guest"])] = s["tick_wall_ns"]
    return out


def tick_verdicts(share_ci: tuple[float, float], gap_ci: tuple[float, float],
                  tick_hz: float) -> dict[str, str]:
    """The one verdict of the tick terms (the judge's and the model's): the worst
    player's share of ticks received and its p99 gap, each by its interval."""
    return {"tick rate": verdict(share_ci, 1 - TICK_RATE_TOLERANCE, above_fails=False),
            "tick gap": verdict(gap_ci, TICK_GAP_LIMIT * 1e3 / tick_hz, above_fails=True)}
