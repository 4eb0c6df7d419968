"""A point's figures are one typed record (analysis/figures.py), stored under the names
summary.json and points.csv have always had, and the judge reads a statistic's
interval through the names' tables, not names built from strings."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.capacity import Sla, judge
from analysis.figures import DELAY, SHARE_SPREAD, STAMP_ERROR, Figures, Spread
from analysis.point import SUMMARY_FIELDS, PointInputs, guest_figures, point_figures
from analysis.records import add_delays, join_inputs, load_json, load_point
from analysis.stats import Stat
from analysis.synth import SynthPoint, write_point

N = 2000


def _point(pdir, delay_us=300.0):
    write_point(pdir, SynthPoint("guest", 2, np.full(N, delay_us), np.full(N, 50.0),
                                 np.zeros(N, bool)))


def test_a_stat_falls_back_to_its_value_where_an_end_is_unknown():
    assert Stat(5.0).ci() == (5.0, 5.0)
    assert Stat(5.0, float("nan"), 7.0).ci() == (5.0, 7.0)
    assert Stat(5.0, 4.0, 6.0).ci() == (4.0, 6.0)


def test_each_spread_stores_every_figure_under_its_tables_names():
    s = Spread.of({"mean": 1.0, "mean_ci": (0.5, 1.5), "p50": 2.0, "p95": 3.0,
                   "p95_ci": (2.5, 3.5), "p99": 4.0, "p99_ci": (3.5, 4.5), "p999": 5.0,
                   "min": 0.1, "max": 9.0}, widen=0.25)
    for names in (DELAY, STAMP_ERROR):
        row = s.row(names)
        assert set(row) == {*names.values(), *names.intervals()}
        # the clock's uncertainty widens every statistic an SLA can judge, not the mean's
        assert (row[names.mean.lo], row[names.mean.hi]) == (0.25, 1.75)
        assert (row[names.p95.lo], row[names.p95.hi]) == (2.25, 3.75)
        assert (row[names.p99.lo], row[names.p99.hi]) == (3.25, 4.75)
        # summary.json keeps the values and the intervals the judge reads
        assert {*names.intervals()} <= set(SUMMARY_FIELDS)
    assert set(DELAY.values()) <= set(SUMMARY_FIELDS)


def test_the_point_record_is_the_reports_row(tmp_path):
    _point(tmp_path / "p")
    fig, _ = point_figures(tmp_path / "p")
    row = fig.row()
    f = fig.figures
    assert row["inputs_sent"] == f.inputs.sent == N
    assert row["delay_p99_us"] == f.inputs.delay.p99.value == pytest.approx(300.0)
    assert (row["delay_p99_ci_lo_us"], row["delay_p99_ci_hi_us"]) == (f.inputs.delay.p99.lo,
                                                                        f.inputs.delay.p99.hi)
    assert (row["loss_ratio"], row["loss_ci_lo"]) == (f.loss.value, f.loss.lo) == (0.0, 0.0)
    assert row["ticks_share_worst"] == f.ticks.share.value
    assert (row["load_first_send_ns"], row["load_last_send_ns"]) == f.load_window


def test_a_faults_losses_leave_the_load_loss_and_its_batch_interval(tmp_path):
    """The load's loss takes a fault's losses out, and then has no batch-means interval
    (the judge takes Wilson's on the load's counts)."""
    pdir = tmp_path / "p"
    _point(tmp_path / "scratch")  # which input goes to which guest
    guest = load_point(tmp_path / "scratch")["client"].sort_values("sched_ns")["guest"]
    lost = np.zeros(N, bool)
    lost[np.flatnonzero(guest.to_numpy() == 1)[:100]] = True  # 100 of guest 1's, early
    write_point(pdir, SynthPoint("guest", 2, np.full(N, 300.0), np.full(N, 50.0), lost))
    meta = load_json(pdir / "point.json")
    rec = load_point(pdir, slim=True)
    jd = add_delays(join_inputs(rec))
    t0 = int(jd["send_ns"].min())
    (pdir / "faults.json").write_text(json.dumps({"faults": [
        {"fault": "server:1@0+9", "guest": 1, "fault_ns": t0, "restarted_ns": None}]}))
    fig, _ = guest_figures(PointInputs(pdir, meta, jd, rec["updates"]))
    assert isinstance(fig, Figures)
    assert fig.inputs.lost == 100 and fig.faults.inputs_lost_fault == 100
    assert fig.loss == Stat(0.0)  # no interval: not the batch means of the fault's losses
    assert "loss_ci_lo" not in fig.row()
    assert fig.row()["availability_others_min"] == 1.0  # guest 0 lost nothing


@pytest.mark.parametrize("share,col", [("client", "delay_p99_us"),
                                       ("host", "stamp_error_p99_us")])
def test_the_judge_reads_the_shares_statistic_and_its_interval(share, col):
    names = SHARE_SPREAD[share].stat("p99")
    assert names.value == col
    point = {"mode": "host", "guests": 4, "inputs_sent": 1000, "inputs_lost": 0,
             "loss_ratio": 0.0, "host_loss_ratio": 0.0, "inputs_lost_host": 0,
             "inputs_host_logged": 1000, names.value: 900.0, names.lo: 800.0,
             names.hi: 1100.0}
    sla = Sla("p99", 1.0, 0.01, share=share, terms="paper")
    v, _ = judge(pd.DataFrame([point]), sla)
    assert v.iloc[0]["verdict"] == "unsure"  # the interval straddles 1000 µs
    assert (v.iloc[0]["ci_lo_us"], v.iloc[0]["ci_hi_us"]) == (800.0, 1100.0)
