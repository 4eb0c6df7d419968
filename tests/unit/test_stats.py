"""Statistics on synthetic data with known answers (the capacity rule: test_capacity)."""

import numpy as np
import pandas as pd
import pytest

from analysis.records import add_delays, join_inputs
from analysis.stats import describe


def test_describe_known_values():
    v = np.arange(1, 1001, dtype=float)
    s = describe(v)
    assert s["n"] == 1000 and s["mean"] == pytest.approx(500.5)
    assert s["p50"] == pytest.approx(500.5) and s["max"] == 1000
    lo, hi = s["mean_ci"]
    assert lo < 500.5 < hi and hi - lo == pytest.approx(2 * 1.96 * v.std(ddof=1) / np.sqrt(1000),
                                                        rel=1e-3)
    plo, phi = s["p95_ci"]
    assert plo <= s["p95"] <= phi


def test_join_handles_missing_and_duplicated_records():
    rec = {
        "client": pd.DataFrame({"guest": [0, 0, 0], "player": [0, 0, 0], "seq": [1, 2, 3],
                                "send_ns": [100, 200, 300]}),
        "server": pd.DataFrame({"guest": [0, 0, 0], "player": [0, 0, 0], "seq": [1, 1, 3],
                                "kernel_ns": [150, 999, 330], "app_ns": [160, 1000, 340],
                                "verdict": ["ok", "ok", "ok"]}),
        "shim": pd.DataFrame({"guest": [0, 0], "player": [0, 0], "seq": [1, 3],
                              "host_ns": [130, 330]}),
        "sync": pd.DataFrame({"guest": [0], "t1": [50], "offset_ns": [10], "delay_ns": [40],
                              "chosen": [1]}),
    }
    j = add_delays(join_inputs(rec)).sort_values("seq")
    assert len(j) == 3  # a duplicate never multiplies rows
    assert j["delivered"].tolist() == [True, False, True]
    assert j["delay_ns"].iloc[0] == 150 - (100 + 10)  # a guest-clock stamp: offset applied
    assert j["stamp_error_ns"].tolist()[0] == 150 - 10 - 130
    # seq 3's stamp equals the host's: a host-clock value, so no offset
    assert j["delay_ns"].iloc[2] == 330 - 300 and j["stamp_error_ns"].iloc[2] == 0
    shared = add_delays(join_inputs(rec, shared_clock=True)).sort_values("seq")
    assert shared["delay_ns"].iloc[0] == 50


def test_epoch_nanoseconds_keep_their_precision():
    # at ~1.7e18 ns a float64 step is 256 ns: differences must be taken in integers
    t0 = 1_763_000_000_000_000_001
    rec = {
        "client": pd.DataFrame({"guest": [0, 0], "player": [0, 0], "seq": [1, 2],
                                "send_ns": [t0, t0 + 10]}),
        "server": pd.DataFrame({"guest": [0, 0], "player": [0, 0], "seq": [1, 2],
                                "kernel_ns": [t0 + 3, t0 + 11], "app_ns": [t0 + 7, t0 + 20],
                                "verdict": ["ok", "ok"]}),
        "shim": pd.DataFrame({"guest": [0, 0], "player": [0, 0], "seq": [1, 2],
                              "host_ns": [t0 + 2, t0 + 11]}),
        "sync": pd.DataFrame({"guest": [0], "t1": [t0], "offset_ns": [0], "delay_ns": [0],
                              "chosen": [1]}),
    }
    j = add_delays(join_inputs(rec)).sort_values("seq")
    assert j["delay_ns"].tolist() == [3.0, 1.0]
    assert j["stamp_error_ns"].tolist() == [1.0, 0.0]
    from analysis.point import input_figures
    assert input_figures(j)[0].host_stamp_exact_fraction == 0.5


def test_drifting_guest_clock_is_followed_between_the_two_syncs():
    # guest clock 1000 ns ahead before the load and 3000 ns ahead 10 s later (200 ppb)
    t0 = 1_763_000_000_000_000_000
    sends = [t0 + 1_000_000_000, t0 + 5_000_000_000, t0 + 9_000_000_000]
    true_off = [1200, 2000, 2800]
    true_delay = 50_000
    rec = {
        "client": pd.DataFrame({"guest": 0, "player": 0, "seq": [0, 1, 2], "send_ns": sends}),
        "server": pd.DataFrame({"guest": 0, "player": 0, "seq": [0, 1, 2],
                                "kernel_ns": [s + true_delay + o for s, o in
                                              zip(sends, true_off, strict=True)],
                                "app_ns": 0, "verdict": "ok"}),
        "shim": pd.DataFrame({"guest": 0, "player": 0, "seq": [0, 1, 2], "host_ns": sends}),
        "sync": pd.DataFrame({"guest": [0, 0, 0], "t1": [t0, t0 + 10_000_000_000, t0 + 5],
                              "offset_ns": [1000, 3000, 999_999], "delay_ns": [400, 600, 9],
                              "chosen": [1, 1, 0], "phase": [0, 1, 0]}),
    }
    j = add_delays(join_inputs(rec)).sort_values("seq")
    assert j["clock_offset_ns"].tolist() == true_off
    assert j["delay_ns"].tolist() == [true_delay] * 3
    assert j["clock_uncertainty_ns"].tolist() == [300.0] * 3  # the larger half round trip
    # without the end sync: the start offset throughout
    rec["sync"] = rec["sync"][rec["sync"]["phase"] == 0].drop(columns="phase")
    j = add_delays(join_inputs(rec)).sort_values("seq")
    assert j["clock_offset_ns"].tolist() == [1000] * 3


def test_tails_p999_needs_ten_thousand_and_p99_has_a_ci():
    import numpy as np

    from analysis.stats import MIN_N_P999, describe

    rng = np.random.default_rng(5)
    small = describe(rng.exponential(100.0, MIN_N_P999 - 1))
    assert small["p999"] != small["p999"]  # NaN: too few to say
    big = rng.exponential(100.0, 200_000)
    d = describe(big)
    assert abs(d["p999"] - 100.0 * np.log(1000)) < 40  # exponential: −ln(0.001)·scale
    lo, hi = d["p99_ci"]
    assert lo < d["p99"] < hi and lo < 100.0 * np.log(100) < hi
    assert d["min"] == big.min() and d["max"] == big.max()  # exact, not estimated


def test_ccdf_points_follow_an_exponential_tail():
    import numpy as np

    from analysis.stats import ccdf_points

    v = np.random.default_rng(6).exponential(50.0, 100_000)
    x, p = ccdf_points(v)
    assert len(x) == 120 and p[0] == 1.0 and abs(p[-1] - 1e-4) < 1e-9
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(p) < 0)
    k = np.searchsorted(p[::-1], 0.01)  # P(X > x) = 0.01 at x = 50·ln 100
    assert abs(x[::-1][k] - 50.0 * np.log(100)) < 25
    assert ccdf_points(np.array([]))[0].size == 0


def test_the_quantiles_are_the_tabulated_ones():
    """Student's t and Clopper-Pearson, from scipy.special: the textbook values."""
    from analysis.stats import binomial_ci, t_quantile

    assert t_quantile(10) == pytest.approx(2.228139, abs=1e-6)
    assert t_quantile(4, 0.01) == pytest.approx(4.604095, abs=1e-6)
    assert binomial_ci(0, 10) == pytest.approx((0.0, 1 - 0.025 ** 0.1), abs=1e-9)
    assert binomial_ci(10, 10) == pytest.approx((0.025 ** 0.1, 1.0), abs=1e-9)
    lo, hi = binomial_ci(5, 10)
    assert (lo, hi) == pytest.approx((0.187086, 0.812914), abs=1e-6)
