"""Intervals that hold: a point's 95% CIs on autocorrelated delays with a known truth
(analysis/stats.py describe_series' batch means and sectioning, batch_ratio_ci).

The truth's shape comes from a stored point (tests/data/series: the guest-stamp point
of 24 UML guests, 19,007 inputs in 10 s).  Its delays in send order are correlated
far beyond neighbours (lag 1: 0.22, lag 200: 0.12): white noise plus a slow AR(1)
component, x = sqrt(1 − a)·w + sqrt(a)·s, whose autocorrelation is a·phi^k; a and phi
are fitted to the stored point's at lags 10 and 200.  Each trial is one point of that
many inputs over 10 s.  The nominal 95% must cover the truth in 93–97% of the trials,
the mean's interval must be at most 1.5 times as wide on average as the one computed
knowing the true autocorrelation, and the interval of before, which takes the inputs
as independent (`describe`), must fail that coverage.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.stats import norm

from analysis.capacity import wilson
from analysis.stats import (
    Z95,
    batch_ids,
    batch_mean_ci,
    batch_quantile_ci,
    batch_ratio_ci,
    describe,
    describe_series,
)

TRIALS = 1000
SERIES = Path(__file__).resolve().parents[1] / "data" / "series" / "uml-g024-guest.npz"


def acf(x: np.ndarray, k: int) -> float:
    x = x - x.mean()
    return float(np.dot(x[:-k], x[k:]) / np.dot(x, x))


@pytest.fixture(scope="module")
def shape() -> tuple[float, float, int]:
    """(a, phi, n) of the stored point: a·phi^k through its autocorrelation at 10 and 200."""
    d = np.load(SERIES)["delay_us"].astype("float64")
    r10, r200 = acf(d, 10), acf(d, 200)
    phi = (r200 / r10) ** (1 / 190)
    return r10 / phi ** 10, phi, len(d)


def series(a: float, phi: float, n: int, trials: int, seed: int) -> np.ndarray:
    """Unit-variance, zero-mean series of the stored point's shape."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((trials, n))
    e[:, 0] /= math.sqrt(1 - phi * phi)
    slow = lfilter([1.0], [1.0, -phi], e, axis=1) * math.sqrt(1 - phi * phi)
    return math.sqrt(1 - a) * rng.standard_normal((trials, n)) + math.sqrt(a) * slow


def known_half(a: float, phi: float, n: int) -> float:
    """The mean's 95% half-width knowing the true autocorrelation a·phi^k."""
    k = np.arange(1, n)
    return Z95 * math.sqrt((1 + 2 * float(np.sum((1 - k / n) * a * phi ** k))) / n)


def test_the_stored_point_is_correlated_beyond_neighbours(shape):
    a, phi, n = shape
    assert 0.1 < a < 0.5 and 0.99 < phi < 1 and n > 10_000


@pytest.fixture(scope="module")
def trials(shape):
    a, phi, n = shape
    x = series(a, phi, n, TRIALS, seed=11)
    return x, batch_ids(np.arange(n) * (10e9 / n))  # a 10-s point's batches


def test_batch_means_cover_the_true_mean(shape, trials):
    a, phi, n = shape
    x, b = trials
    ci = [batch_mean_ci(row, b) for row in x]
    cover = np.mean([lo <= 0.0 <= hi for lo, hi in ci])
    width = np.mean([hi - lo for lo, hi in ci])
    before = np.mean([lo <= 0.0 <= hi for lo, hi in (describe(r)["mean_ci"] for r in x)])
    assert 0.93 <= cover <= 0.97, cover
    assert width <= 1.5 * 2 * known_half(a, phi, n), (width, 2 * known_half(a, phi, n))
    assert before < 0.93, before  # independent draws: too narrow for a queue's delays


@pytest.mark.parametrize("q", [0.95, 0.99])
def test_sectioning_covers_the_true_quantile(trials, q):
    x, b = trials
    truth = float(norm.ppf(q))  # the stationary series is standard normal
    cover = np.mean([lo <= truth <= hi for lo, hi in (batch_quantile_ci(r, b, q) for r in x)])
    key = f"p{round(q * 100)}_ci"
    before = np.mean([lo <= truth <= hi for lo, hi in (describe(r)[key] for r in x[:300])])
    assert 0.93 <= cover <= 0.97, cover
    assert before < 0.93, before


def test_the_loss_ratio_covers_its_truth_when_losses_come_in_runs(shape):
    """Losses in runs (a stall loses a few inputs in a row), about 1% of inputs, as many
    inputs as the stored point: the batch ratio's CI covers the long-run loss ratio in
    93-97% of trials; Wilson's, which takes each input as independent, does not."""
    n = shape[2]
    rng = np.random.default_rng(5)
    start, mean_run = 0.002, 5.0

    def losses(trials: int) -> np.ndarray:
        starts = rng.random((trials, n)) < start
        length = rng.geometric(1 / mean_run, size=(trials, n))
        mark = np.zeros((trials, n + 1))
        rows, cols = np.nonzero(starts)
        np.add.at(mark, (rows, cols), 1)
        np.add.at(mark, (rows, np.minimum(cols + length[rows, cols], n)), -1)
        return (np.cumsum(mark[:, :n], axis=1) > 0).astype("float64")

    truth = float(losses(200).mean())  # the long-run ratio, from 200 points' worth
    b = batch_ids(np.arange(n) * (10e9 / n))
    x = losses(TRIALS)
    cover = np.mean([lo <= truth <= hi for lo, hi in (batch_ratio_ci(r, b) for r in x)])
    before = np.mean([lo <= truth <= hi for lo, hi in
                      (wilson(float(r.sum()), float(n)) for r in x)])
    assert 0.93 <= cover <= 0.97, cover
    assert before < 0.93, before


def test_a_point_is_described_in_send_order():
    """describe_series batches by send time: the same values in another order give the
    same figures."""
    rng = np.random.default_rng(2)
    v, t = rng.exponential(100, 500), np.arange(500) * 2e7
    perm = rng.permutation(500)
    a, b = describe_series(v, t), describe_series(v[perm], t[perm])
    assert a["mean_ci"] == pytest.approx(b["mean_ci"]) and a["p99_ci"] == b["p99_ci"]
    assert a["batches"] == 5  # 10 s of inputs: 2-s batches
