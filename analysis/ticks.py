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
spins and sends do not widen the gaps.  A player's window runs from its first input
(a server sends a player updates once it has heard from it) to the load's last input.
A count passes only if the worst player of every server does.

Each player's figures carry a 95% CI: for the share of ticks received, the count's
resolution widened by batch means (about 2-s batches); for the p99 gap, sectioning
(analysis/stats.py).  A point keeps the envelope over its players: the lowest share
with the lowest CI bounds, and the largest p99 gap with the largest CI bounds.  So
"every player's CI within the term" is the envelope's CI within it (pass), and "some
player's CI beyond it" is the envelope's other bound beyond it (fail).

The servers' own ticks (server_summary.json `tick_wall_ns`: when each tick's updates
had been handed to the guest's kernel, on the guest's clock, moved to the host's by the
guest's clock-sync offset) over the load window are a cross-check:
`tick_rate_disagreement` and `tick_gap_disagreement` give the largest relative
difference, over the guests, between what a guest's server did and what its players
received.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats import batch_ids, batch_mean_ci, batch_quantile_ci

TICK_RATE_TOLERANCE = 0.01  # received ticks at least 99% of those scheduled
TICK_GAP_LIMIT = 1.5  # p99 gap between received ticks at most 1.5 tick periods


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
    """A point's tick figures: the players' envelope and the servers' cross-check."""

    tick_hz: float
    window_s: float
    players: int
    ticks_share_worst: float
    ticks_share_ci_lo: float
    ticks_share_ci_hi: float
    tick_gap_p99_worst_ms: float
    tick_gap_p99_ci_lo_ms: float
    tick_gap_p99_ci_hi_ms: float
    update_loss_worst: float
    tick_hz_received_mean: float
    tick_hz_received_min: float
    server_tick_hz_mean: float | None
    server_tick_gap_p99_max_ms: float | None
    tick_rate_disagreement: float | None
    tick_gap_disagreement: float | None

    def row(self) -> dict:
        return asdict(self)


def player_ticks(arrive: np.ndarray, ticks: np.ndarray, window: tuple[int, int],
                 tick_hz: float, key: tuple[int, int]) -> PlayerTicks:
    """One player's figures from its updates' arrival stamps (ns) and tick numbers.

    The share received is n / scheduled.  Its CI: the count's resolution, a tick either
    way at the window's edges, widened by the relative 95% half-width of the mean gap
    between ticks by batch means (about 2-s batches): a server that ticks evenly has a
    narrow one, one that stalls and bursts a wide one."""
    w0, w1 = window
    inside = (arrive >= w0) & (arrive <= w1)
    order = np.argsort(arrive[inside], kind="stable")
    a = arrive[inside][order]
    scheduled = (w1 - w0) * tick_hz / 1e9
    n = len(a)
    share = n / scheduled if scheduled > 0 else float("nan")
    gaps = np.diff(a).astype("float64") / 1e6
    rel = 1.0
    if len(gaps) >= 2:
        lo, hi = batch_mean_ci(gaps, batch_ids(a[1:]))
        if np.isfinite(lo) and gaps.mean() > 0:
            rel = (hi - lo) / 2 / gaps.mean()
    share_ci = (max(0.0, (n - 1) / scheduled * (1 - rel)), (n + 1) / scheduled * (1 + rel))
    if len(gaps) >= 2:
        p99 = float(np.quantile(gaps, 0.99))
        ci = batch_quantile_ci(gaps, batch_ids(a[1:]), 0.99)
    else:  # fewer than three ticks in the window: the gap is the window itself
        p99 = (w1 - w0) / 1e6
        ci = (p99, p99)
    t = ticks[inside]
    loss = 1 - len(np.unique(t)) / (t.max() - t.min() + 1) if len(t) else 1.0
    return PlayerTicks(key[0], key[1], n, share, share_ci, p99, ci, float(loss),
                       (w1 - w0) / 1e9)


def players(updates: pd.DataFrame, joined: dict[tuple[int, int], int], end_ns: int,
            tick_hz_of: dict[int, float]) -> list[PlayerTicks]:
    """Every player's figures over its own window: from its first input (a server sends
    a player updates once it has heard from it) to the load's last input.  `joined`:
    each player's first send (ns); `tick_hz_of`: each guest's tick rate (a mix's
    differ).  A player that received nothing in its window counts with share 0."""
    col = "arrive_ns" if "arrive_ns" in updates and updates["arrive_ns"].notna().any() \
        else "recv_ns"
    u = updates.dropna(subset=[col])
    got = {(int(g), int(p)): grp for (g, p), grp in u.groupby(["guest", "player"], sort=True)}
    out = []
    for (g, p), start in sorted(joined.items()):
        grp = got.get((g, p))
        arrive = grp[col].to_numpy(dtype="int64") if grp is not None else np.zeros(0, "int64")
        ticks = grp["tick"].to_numpy(dtype="int64") if grp is not None else arrive
        out.append(player_ticks(arrive, ticks, (start, end_ns), tick_hz_of[g], (g, p)))
    return out


def server_ticks(tick_wall: dict[int, list[int]], offsets: dict[int, float],
                 window: tuple[int, int]) -> dict[int, tuple[float, float]]:
    """Each server's own (rate Hz, p99 gap ms) over the window, on the host's clock."""
    w0, w1 = window
    out = {}
    for g, times in tick_wall.items():
        t = np.asarray(times, dtype="int64") - int(round(offsets.get(g, 0.0)))
        t = t[(t >= w0) & (t <= w1)]
        if len(t) < 3:
            continue
        gaps = np.diff(t) / 1e6
        out[g] = (len(t) / ((w1 - w0) / 1e9), float(np.quantile(gaps, 0.99)))
    return out


def figures(pl: list[PlayerTicks], servers: dict[int, tuple[float, float]],
            window: tuple[int, int], tick_hz: float) -> TickFigures | None:
    """The point's envelope over its players, and the servers' cross-check."""
    if not pl:
        return None
    w = (window[1] - window[0]) / 1e9
    worst_share = min(pl, key=lambda p: p.share)
    worst_gap = max(pl, key=lambda p: p.gap_p99_ms)
    rates = np.array([p.rate_hz for p in pl])
    rate_dis = gap_dis = None
    if servers:
        by_guest: dict[int, list[PlayerTicks]] = {}
        for p in pl:
            by_guest.setdefault(p.guest, []).append(p)
        rd, gd = [], []
        for g, (rate, gap) in servers.items():
            mine = by_guest.get(g)
            if not mine or not rate or not gap:
                continue
            rd.append(abs(np.mean([p.rate_hz for p in mine]) / rate - 1))
            gd.append(abs(np.median([p.gap_p99_ms for p in mine]) / gap - 1))
        rate_dis = float(max(rd)) if rd else None
        gap_dis = float(max(gd)) if gd else None
    return TickFigures(
        tick_hz, round(w, 3), len(pl), worst_share.share,
        min(p.share_ci[0] for p in pl), min(p.share_ci[1] for p in pl),
        worst_gap.gap_p99_ms, max(p.gap_p99_ci_ms[0] for p in pl),
        max(p.gap_p99_ci_ms[1] for p in pl), max(p.update_loss for p in pl),
        float(rates.mean()), float(rates.min()),
        float(np.mean([r for r, _ in servers.values()])) if servers else None,
        float(max(gp for _, gp in servers.values())) if servers else None,
        rate_dis, gap_dis)


def server_walls(point_dir: Path) -> dict[int, list[int]]:
    """Each guest's server tick times (its own clock), where its summary has them."""
    from analysis.records import load_json

    out = {}
    for f in sorted(Path(point_dir).glob("**/server_summary.json")):
        s = load_json(f, {}) or {}
        if s.get("tick_wall_ns") and s.get("guest") is not None:
            out[int(s["guest"])] = s["tick_wall_ns"]
    return out


def term_verdicts(row: dict, tick_hz: float) -> dict[str, str]:
    """Each tick term's verdict for one point's envelope: pass, fail or unsure."""
    limit_share, limit_gap = 1 - TICK_RATE_TOLERANCE, TICK_GAP_LIMIT * 1e3 / tick_hz
    s_lo, s_hi = row["ticks_share_ci_lo"], row["ticks_share_ci_hi"]
    g_lo, g_hi = row["tick_gap_p99_ci_lo_ms"], row["tick_gap_p99_ci_hi_ms"]
    return {"tick rate": "fail" if s_hi < limit_share else
            "pass" if s_lo >= limit_share else "unsure",
            "tick gap": "fail" if g_lo > limit_gap else
            "pass" if g_hi <= limit_gap else "unsure"}
