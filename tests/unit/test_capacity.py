"""The capacity rule with confidence, and the capacity search (--guests auto), on data
with known answers; the sweep driven by the search on a stand-in testbed."""

import os
from contextlib import contextmanager

import pandas as pd
import pytest

from analysis.capacity import (
    Sla,
    capacity_text,
    interval,
    judge,
    next_count,
    resolution,
    search_step,
    verdicts,
    wilson,
)

SLA = Sla("mean", 1.0, 0.01)


def pts(mode, guests, delays, losses, half=10.0, sent=1000):
    """One point per count; the mean's CI is ±half µs."""
    return pd.DataFrame({"mode": mode, "guests": guests, "delay_mean_us": delays,
                         "delay_mean_ci_lo_us": [d - half for d in delays],
                         "delay_mean_ci_hi_us": [d + half for d in delays],
                         "loss_ratio": losses, "inputs_sent": sent,
                         "inputs_lost": [round(x * sent) for x in losses]})


def test_capacity_monotone_and_bounded():
    df = pd.concat([pts("guest", [1, 2, 4, 8], [100, 300, 900, 1500], [0, 0, 0, 0]),
                    pts("host", [1, 2, 4, 8], [50, 60, 70, 80], [0, 0, 0, 0])])
    c = judge(df, SLA)[1]
    assert c["guest"]["capacity"] == 4 and c["guest"]["capacity_hi"] == 7
    assert c["guest"]["first_failure"] == 8 and not c["guest"]["bounded_by_largest_count"]
    assert c["host"]["capacity"] == 8 and c["host"]["bounded_by_largest_count"] is True
    assert capacity_text(c["guest"]) == "4–7"
    assert capacity_text(c["host"]).startswith("≥ 8")


def test_capacity_non_monotone_stops_at_first_failure():
    # passes again at 8 after failing at 4: capacity is still 2, the pass above is noted
    df = pts("guest", [1, 2, 4, 8], [100, 200, 1200, 500], [0, 0, 0, 0])
    c = judge(df, SLA)[1]["guest"]
    assert c["capacity"] == 2 and c["capacity_hi"] == 3 and c["passed_above_failure"] == [8]


def test_capacity_loss_term_and_none_passing():
    df = pd.concat([pts("guest", [1, 2], [10, 10], [0.0, 0.05]),
                    pts("host", [1, 2], [2000, 10], [0, 0])])
    c = judge(df, SLA)[1]
    assert c["guest"]["capacity"] == 1 and c["guest"]["first_failure"] == 2
    assert c["host"]["capacity"] == 0 and c["host"]["first_failure"] == 1


def test_load_generator_bound_points_are_neither_pass_nor_fail():
    """A count whose every point was load-generator-bound is invalid: it neither raises
    the capacity (its delay passes) nor ends it (its delay fails); a bound repeat is left
    out of its count's t interval."""
    df = pts("guest", [1, 2, 4, 8], [100, 200, 300, 1500], [0, 0, 0, 0])
    df["load_bound"] = [False, False, True, False]
    v, c = judge(df, SLA)
    assert v.set_index("guests").loc[4, "verdict"] == "invalid"
    assert c["guest"]["capacity"] == 2 and c["guest"]["capacity_hi"] == 7
    assert c["guest"]["invalid"] == [4]
    # the same count failing on a bound point does not end the capacity either
    df["delay_mean_us"] = [100, 200, 5000, 1500]
    df["delay_mean_ci_lo_us"] = df["delay_mean_us"] - 10
    df["delay_mean_ci_hi_us"] = df["delay_mean_us"] + 10
    assert judge(df, SLA)[1]["guest"]["first_failure"] == 8
    # repeats: the bound one (an outlier) is left out, the others judged
    rep = pts("host", [3, 3, 3], [100, 110, 9000], [0, 0, 0])
    rep["load_bound"] = [False, False, True]
    row = verdicts(rep, SLA).iloc[0]
    assert row["verdict"] == "pass" and row["k"] == 2 and "1 load-generator-bound" in row["reason"]


def test_a_point_whose_ci_straddles_the_sla_is_unsure():
    df = pts("guest", [1, 2, 4], [500, 995, 1500], [0, 0, 0], half=20.0)
    v = verdicts(df, SLA)
    assert list(v["verdict"]) == ["pass", "unsure", "fail"]
    assert "straddles" in v["reason"][1]
    c = interval(v)
    assert (c["capacity"], c["capacity_hi"], c["unsure"]) == (1, 3, [2])


def test_loss_judged_on_wilson_interval():
    lo, hi = wilson(0, 100)
    assert lo == 0.0 and 0.03 < hi < 0.04  # 0 of 100 lost does not prove loss < 1%
    df = pts("guest", [1, 2], [10, 10], [0.0, 0.0], sent=100)
    assert set(verdicts(df, SLA)["verdict"]) == {"unsure"}
    df = pts("guest", [1], [10], [0.0], sent=2000)
    assert verdicts(df, SLA)["verdict"][0] == "pass"


def test_repeats_are_judged_on_a_t_interval():
    rows = []
    for n, values in ((1, [500, 510, 520]), (2, [900, 1000, 1080]), (4, [2000, 2100, 2050])):
        rows += [pts("guest", [n], [x], [0.0], half=1.0, sent=10_000) for x in values]
    v = verdicts(pd.concat(rows), SLA)
    assert list(v["verdict"]) == ["pass", "unsure", "fail"] and list(v["k"]) == [3, 3, 3]
    # the interval comes from the spread of the repeats, not the points' own tiny CIs
    assert v["ci_hi_us"][1] - v["ci_lo_us"][1] > 100
    assert "3 repeats" in v["reason"][0]


def oracle(truth: dict[str, int], noise: int = 0):
    """Verdict rows as a testbed with these true capacities would give them: counts
    within `noise` of the knee come out unsure."""
    def judge(tried):
        rows = []
        for n in sorted(tried):
            for m, cap in truth.items():
                v = ("unsure" if abs(n - cap - 0.5) < noise else
                     "pass" if n <= cap else "fail")
                rows.append({"mode": m, "guests": n, "verdict": v})
        return pd.DataFrame(rows)
    return judge


def search(truth, maximum, noise=0):
    judge, tried = oracle(truth, noise), []
    while (n := next_count(judge(tried) if tried else pd.DataFrame(), set(tried),
                           maximum)) is not None:
        assert n not in tried and 1 <= n <= maximum
        tried.append(n)
        assert len(tried) < 40
    caps = {m: interval(g) for m, g in judge(tried).groupby("mode")}
    return tried, caps


@pytest.mark.parametrize("truth", [{"guest": 13, "host": 37}, {"guest": 1, "host": 2},
                                   {"guest": 30, "host": 47}, {"guest": 6, "host": 6}])
def test_search_brackets_each_capacity_to_its_resolution(truth):
    tried, caps = search(truth, 48)
    assert tried[:3] == [1, 2, 4]  # grows geometrically first
    for m, cap in truth.items():
        c = caps[m]
        assert c["capacity"] <= cap <= c["capacity_hi"]
        assert c["first_failure"] - c["capacity"] <= resolution(c["capacity"])
    assert len(tried) <= 13  # far fewer points than every count up to 48


def test_search_stops_at_the_maximum_when_nothing_fails():
    tried, caps = search({"guest": 100, "host": 100}, 20)
    assert tried == [1, 2, 4, 8, 16, 20]
    assert caps["host"]["bounded_by_largest_count"] and caps["host"]["capacity"] == 20


def test_search_ends_when_only_unsure_counts_remain():
    tried, caps = search({"guest": 10, "host": 40}, 48, noise=2)
    assert caps["guest"]["capacity"] <= 10 <= caps["guest"]["capacity_hi"]
    assert caps["guest"]["unsure"]  # the counts near the knee stayed unsure
    assert caps["host"]["capacity"] <= 40 <= caps["host"]["capacity_hi"]


def test_search_where_the_first_count_fails():
    tried, caps = search({"guest": 0, "host": 0}, 48)
    assert tried == [1]
    assert caps["guest"]["capacity"] == 0 and caps["guest"]["capacity_hi"] == 0


class FakeBed:
    """A testbed stand-in: each mode's point 'measures' nothing; the summaries come from
    a model of a host whose guest-stamp delay grows 100 µs per guest."""

    def __init__(self, n, log):
        self.n, self.log = n, log
        self.phases = {}  # a point's marks (none: an empty budget)

    @property
    def n_guests(self):
        return self.n

    def __enter__(self):
        self.log.append(("build", self.n))
        return self

    def resize(self, n):
        self.log.append(("resize", n))
        self.n = n

    def warm_up(self, work_dir, seconds):
        self.log.append(("warm_up", self.n, seconds))

    def __exit__(self, *exc):
        return None

    @contextmanager
    def mode(self, mode, pdir, repeat=0):
        self.log.append((mode, self.n, repeat))
        pdir.mkdir(parents=True)
        yield self

    def environment(self):
        return {}

    def run_load(self):
        return None


def test_sweep_with_search_measures_both_modes_and_every_repeat(tmp_path, monkeypatch):
    from gamebed import manifest
    from gamebed.spec import ExperimentSpec
    from gamebed.sweep import run_sweep

    monkeypatch.setattr(manifest, "STATE_DIR", tmp_path / "state")
    log, synced, real_fsync = [], [], os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)

    def summarize(pdir):
        import json
        meta = json.loads((pdir / "point.json").read_text())
        n, mode, r = meta["guests"], meta["mode"], meta["repeat"]
        d = (100.0 * n if mode == "guest" else 10.0 * n) + 5 * r
        return {"inputs_sent": 5000, "inputs_lost": 0, "loss_ratio": 0.0,
                "delay_mean_us": d, "delay_mean_ci_lo_us": d - 5, "delay_mean_ci_hi_us": d + 5}

    from gamebed.run import Layers, Run

    spec = ExperimentSpec.of(backend="netns", search_max=16, repeats=2, duration=1)
    layers = Layers(lambda run, n, work: FakeBed(n, log), summarize, search_step(SLA, 16))
    s = run_sweep(Run.start(spec, tmp_path / "out", layers), check_privileges=False)
    # one testbed, built once at the first count and resized to every later one
    assert [what for what, *_ in log].count("build") == 1
    builds = [n for what, n, *_ in log if what in ("build", "resize")]
    # a grown testbed warms up, unmeasured, before its first point; a shrunk one does not
    grown = {b for a, b in zip(builds, builds[1:], strict=False) if b > a}
    assert {n for what, n, *_ in log if what == "warm_up"} == grown and grown
    for i, e in enumerate(log):
        if e[0] == "warm_up":
            assert log[i - 1] == ("resize", e[1]) and log[i + 1][0] in ("guest", "host")
    # guest mode: 10 passes (1000 µs ± 5 µs would be unsure), 11 fails; host never fails
    assert builds[:5] == [1, 2, 4, 8, 16]
    assert set(builds) >= {8, 16} and len(builds) == len(set(builds))
    for n in builds:  # both modes, both repeats, repeat r with seed + r
        assert sorted(e[0] + str(e[2]) for e in log if e[0] in ("guest", "host") and e[1] == n) == \
            ["guest0", "guest1", "host0", "host1"]
    assert len(s["points"]) == 4 * len(builds) and s["complete"]
    # every point's files were synced before the point was listed (none were written
    # here but point.json), and summary.json was synced at each rewrite
    assert synced.count("point.json") == len(s["points"])
    assert synced.count("summary.json.tmp") >= len(s["points"])
    assert (tmp_path / "out" / "points" / "guest-g008-r1" / "point.json").exists()
    c = judge(s["points"], SLA)[1]  # summary.json's entries, as they are
    assert c["guest"]["capacity"] <= 10 <= c["guest"]["capacity_hi"]
    assert c["host"]["bounded_by_largest_count"] and c["host"]["capacity"] == 16


def test_the_players_sla_fails_a_count_whose_ticks_a_player_missed():
    """Host stamps keep the delay term at every count; the players' SLA still fails the
    count where the worst player's tick share or p99 tick gap falls outside its terms,
    says which term, and the paper's terms do not see it."""
    df = pts("host", [1, 2, 4, 8], [10, 10, 10, 10], [0, 0, 0, 0])
    df["ticks_share_worst"] = [1.0, 0.999, 0.995, 0.25]
    df["ticks_share_ci_lo"] = [0.995, 0.994, 0.985, 0.20]  # 4: straddles 0.99
    df["ticks_share_ci_hi"] = [1.005, 1.004, 1.004, 0.30]
    df["tick_gap_p99_worst_ms"] = [52.0, 60.0, 70.0, 270.0]
    df["tick_gap_p99_ci_lo_ms"] = [51.0, 55.0, 60.0, 250.0]
    df["tick_gap_p99_ci_hi_ms"] = [53.0, 65.0, 74.0, 290.0]
    v, c = judge(df, SLA)
    assert c["host"]["capacity"] == 2 and c["host"]["first_failure"] == 8
    assert c["host"]["unsure"] == [4]
    row = v[v["guests"] == 8].iloc[0]
    assert row["verdict"] == "fail" and row["failed_terms"] == "tick rate, tick gap"
    assert row["tick_rate_verdict"] == "fail" and row["delay_verdict"] == "pass"
    paper = judge(df, SLA.with_terms("paper"))[1]
    assert paper["host"]["bounded_by_largest_count"] and paper["host"]["capacity"] == 8
    # a gap CI wholly above 1.5 periods fails on its own
    df.loc[1, "tick_gap_p99_ci_lo_ms"] = 76.0
    df.loc[1, "tick_gap_p99_ci_hi_ms"] = 80.0
    assert judge(df, SLA)[1]["host"]["first_failure"] == 2


def test_a_run_without_tick_records_is_judged_on_delay_and_loss_and_says_so():
    df = pts("host", [1, 2], [10, 10], [0, 0])
    v, c = judge(df, SLA)
    assert c["host"]["capacity"] == 2
    assert (v["tick_rate_verdict"] == "not recorded").all()
    assert "ticks not recorded" in v["reason"].iloc[0]


def test_a_batch_means_loss_interval_of_zero_to_x_is_an_interval():
    """A point's batch-means loss CI [0, x] is used as it is, not taken for missing (and
    replaced by Wilson's, which under-covers bursty low loss)."""
    df = pts("guest", [1], [10], [0.0], sent=100)  # Wilson's [0, 0.037]: unsure
    df["loss_ci_lo"], df["loss_ci_hi"] = 0.0, 0.004
    row = verdicts(df, SLA).iloc[0]
    assert (row["loss_ci_lo"], row["loss_ci_hi"]) == (0.0, 0.004)
    assert row["loss_verdict"] == "pass"


def test_a_count_with_one_empty_repeat_fails():
    """A repeat that delivered no inputs fails its count, though the others pass."""
    df = pts("guest", [1, 1, 1], [10, 11, 12], [0.0, 0.0, 0.0], sent=5000)
    df["repeat"] = [0, 1, 2]
    df.loc[2, ["delay_mean_us", "delay_mean_ci_lo_us", "delay_mean_ci_hi_us"]] = float("nan")
    row = verdicts(df, SLA).iloc[0]
    assert row["verdict"] == "fail" and row["failed_terms"] == "delivery"
    assert "1 of 3" in row["reason"]
    assert verdicts(df.iloc[:2], SLA).iloc[0]["verdict"] == "pass"
