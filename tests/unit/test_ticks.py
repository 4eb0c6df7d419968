"""What players feel of the ticks (analysis/ticks.py): per player, over its own window,
from the arrival stamps; the servers' own ticks as a cross-check on one clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import ticks
from analysis.ticks import cross_check, player_ticks, players, tick_verdicts

S = 1_000_000_000
T0 = 1_800_000_000 * S
HZ = 20.0


def even(start_ns: int, seconds: float, hz: float = HZ, lag_ns: int = 300_000) -> np.ndarray:
    return start_ns + lag_ns + (np.arange(int(seconds * hz)) * (S / hz)).astype(np.int64)


def verdicts(pl: list, check=None) -> dict:
    check = check or ticks.CrossCheck(None, None, None, None)
    fig = ticks.figures(pl, check, (T0, T0 + 10 * S), HZ)
    return tick_verdicts((fig.share.lo, fig.share.hi), (fig.gap_p99_ms.lo, fig.gap_p99_ms.hi), HZ)


def test_a_player_that_gets_every_tick_passes():
    a = even(T0, 10)
    p = player_ticks(a, np.arange(len(a)), (T0, T0 + 10 * S), HZ, (0, 0))
    assert p.share == pytest.approx(1.0, abs=0.01) and p.share_ci[0] >= 0.99
    assert p.gap_p99_ms == pytest.approx(50.0, abs=0.1)
    assert verdicts([p]) == {"tick rate": "pass", "tick gap": "pass"}


def test_a_caught_up_burst_counts_as_late():
    """A server that stalls for half a second every two seconds, then runs its missed
    ticks back to back: the player gets every tick (the share passes), but the gaps
    before the bursts fail the gap term."""
    a = even(T0, 10)
    for k in range(5):
        stall = (a > T0 + (2 * k + 1) * S) & (a < T0 + (2 * k + 1) * S + S // 2)
        a[stall] = T0 + (2 * k + 1) * S + S // 2 + np.arange(stall.sum()) * 100_000
    p = player_ticks(np.sort(a), np.arange(len(a)), (T0, T0 + 10 * S), HZ, (0, 0))
    assert p.share == pytest.approx(1.0, abs=0.01) and p.gap_p99_ms > 400
    assert verdicts([p])["tick gap"] == "fail"


def test_one_stall_in_a_point_is_within_the_p99_term():
    """One 1-s stall in 10 s is one gap of 199: the p99 gap does not see it (the term
    allows 1% of gaps to be long), nor does the share of a caught-up server."""
    a = even(T0, 10)
    stall = (a > T0 + 4 * S) & (a < T0 + 5 * S)
    a[stall] = T0 + 5 * S + np.arange(stall.sum()) * 100_000
    p = player_ticks(np.sort(a), np.arange(len(a)), (T0, T0 + 10 * S), HZ, (0, 0))
    assert p.gap_p99_ms < 75 and verdicts([p])["tick rate"] == "pass"


def test_the_worst_player_of_every_server_decides():
    good = [player_ticks(even(T0, 10), np.arange(200), (T0, T0 + 10 * S), HZ, (g, 0))
            for g in range(3)]
    half = even(T0, 10)[::2]  # every other update lost
    starved = player_ticks(half, np.arange(len(half)) * 2, (T0, T0 + 10 * S), HZ, (3, 1))
    assert starved.share == pytest.approx(0.5, abs=0.01) and starved.update_loss > 0.45
    assert verdicts(good)["tick rate"] == "pass"
    assert verdicts([*good, starved]) == {"tick rate": "fail", "tick gap": "fail"}


def test_a_player_counts_from_its_first_input():
    """Updates start once the server has heard from a player: its window does too."""
    late = T0 + S // 2
    u = pd.DataFrame({"guest": 0, "player": 0, "tick": np.arange(190),
                      "recv_ns": even(late, 9.5), "arrive_ns": even(late, 9.5)})
    [p] = players(u, {(0, 0): late}, T0 + 10 * S, {0: HZ})
    assert p.share == pytest.approx(1.0, abs=0.01) and p.window_s == pytest.approx(9.5)
    # a player that received nothing in its window is there, with share 0
    [p, q] = players(u, {(0, 0): late, (0, 1): T0}, T0 + 10 * S, {0: HZ})
    assert q.received == 0 and q.share == 0.0


def test_a_late_delivery_is_lined_up_by_tick_number():
    """Updates that reach the players 40 ms after the server ran the tick (a starved
    guest's send path): at a window's edge the server's tick and the players' receipt
    fall on either side, unless the server's times are moved by the delivery lag."""
    a = even(T0, 10, hz=4.0, lag_ns=40_000_000)
    wall = list(a - 40_000_000)
    u = pd.DataFrame({"guest": 0, "player": 0, "tick": np.arange(1, len(a) + 1),
                      "recv_ns": a, "arrive_ns": a})
    end = int(a[-1]) - 10_000_000  # the last update arrives after the window's end
    check = cross_check(u, {(0, 0): T0}, end, {0: wall}, {0: 0.0})
    assert check.tick_rate_disagreement == pytest.approx(0.0, abs=1e-9)
    assert ticks.delivery_lag(ticks.arrivals_of(u), ticks.ticks_of(u), 0,
                              np.asarray(wall)) == 40_000_000


def test_the_servers_own_ticks_agree_on_one_clock():
    """The server's tick times, on a guest clock 3 ms ahead, moved by the offset, and its
    players' arrivals 0.3 ms later: rate and gap agree."""
    a = even(T0, 10)
    wall = list(a - 300_000 + 3_000_000)  # the guest's clock
    u = pd.DataFrame({"guest": 0, "player": np.repeat([0, 1], len(a)),
                      "tick": np.tile(np.arange(1, len(a) + 1), 2),
                      "recv_ns": np.tile(a, 2), "arrive_ns": np.tile(a, 2)})
    check = cross_check(u, {(0, 0): T0, (0, 1): T0}, T0 + 10 * S, {0: wall},
                        {0: 3_000_000.0})
    assert check.tick_rate_disagreement < 0.01 and check.tick_gap_disagreement < 0.01
    assert check.server_tick_hz_mean == pytest.approx(20.0, abs=0.2)


def test_a_stall_left_out_loses_no_update():
    """A stall's window is left out of the share and the gaps, but the updates that
    arrived in it were not lost: the player lost none (the lost share counts the tick
    numbers missing over the whole window)."""
    a = even(T0, 10)
    cut = ((T0 + 4 * S, T0 + 4 * S + S // 5),)
    p = player_ticks(a, np.arange(len(a)), (T0, T0 + 10 * S), HZ, (0, 0),
                     ticks.Reading(cut))
    assert p.update_loss == 0.0
    assert p.received == len(a) - 4  # the 4 ticks in the cut are not counted as received
    lost = np.delete(np.arange(len(a)), [50, 150])  # two updates really lost
    q = player_ticks(np.delete(a, [50, 150]), lost, (T0, T0 + 10 * S), HZ, (0, 0),
                     ticks.Reading(cut))
    assert q.update_loss == pytest.approx(2 / 200)
