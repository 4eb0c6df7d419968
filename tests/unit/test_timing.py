"""Poisson schedule statistics and clock-sync arithmetic."""

import itertools
import random

import numpy as np
import pytest
from scipy import stats

from fpsmodel.timing import SyncSample, best_sample, player_rng, poisson_gaps_ns


def gaps(seed, n=5000, rate=20.0):
    return np.array(list(itertools.islice(poisson_gaps_ns(rate, random.Random(seed)), n))) / 1e9


def test_gaps_are_exponential_at_the_rate():
    g = gaps(42)
    assert g.mean() == pytest.approx(1 / 20, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(1.0, abs=0.05)
    # Kolmogorov-Smirnov against Exp(20): a uniform or periodic schedule fails this
    assert stats.kstest(g, "expon", args=(0, 1 / 20)).pvalue > 0.01


def test_a_periodic_schedule_would_fail_the_same_test():
    periodic = np.full(5000, 1 / 20)
    assert stats.kstest(periodic, "expon", args=(0, 1 / 20)).pvalue < 1e-6


def test_counts_in_windows_are_poisson():
    arrivals = np.cumsum(gaps(7, n=20000))
    counts = np.bincount(arrivals.astype(int))[:-1]  # inputs per 1-s window
    assert counts.mean() == pytest.approx(20, rel=0.05)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.25)  # dispersion index


def test_seeded_streams_repeat_and_differ():
    a = list(itertools.islice(poisson_gaps_ns(20, player_rng(1, 0, 0)), 50))
    b = list(itertools.islice(poisson_gaps_ns(20, player_rng(1, 0, 0)), 50))
    c = list(itertools.islice(poisson_gaps_ns(20, player_rng(1, 0, 1)), 50))
    assert a == b and a != c


def test_rate_must_be_positive():
    with pytest.raises(ValueError):
        next(poisson_gaps_ns(0, random.Random(1)))


def test_sync_offset_and_delay():
    # server is 1000 ns ahead; 200 ns each way; server holds 50 ns
    s = SyncSample(t1=0, t2=1200, t3=1250, t4=450)
    assert s.offset_ns == 1000
    assert s.delay_ns == 400


def test_best_sample_is_min_delay():
    samples = [SyncSample(0, 1500, 1550, 900), SyncSample(0, 1200, 1250, 450)]
    best, unc = best_sample(samples)
    assert best is samples[1] and unc == 200
    with pytest.raises(ValueError):
        best_sample([])
