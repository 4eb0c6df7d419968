"""The input processes a workload profile can choose (fpsmodel/timing.py)."""

import itertools
import math
import random

import pytest
from scipy import stats

from fpsmodel.timing import NS, input_gaps_ns


def gaps(process: str, rate: float, n: int, jitter: float = 0.0, seed: int = 3) -> list[int]:
    return list(itertools.islice(input_gaps_ns(process, rate, random.Random(seed), jitter), n))


def test_poisson_gaps_are_exponential():
    g = [x / NS for x in gaps("poisson", 20.0, 5000)]
    assert stats.kstest(g, "expon", args=(0, 1 / 20.0)).pvalue > 0.01
    assert sum(g) / len(g) == pytest.approx(1 / 20.0, rel=0.05)


@pytest.mark.parametrize("rate,jitter", [(64.0, 0.0), (128.0, 0.2), (30.0, 0.5)])
def test_periodic_sends_keep_the_rate_and_the_jitter_bound(rate, jitter):
    g = gaps("periodic", rate, 4000, jitter)
    period = NS / rate
    t = list(itertools.accumulate(g))
    # each send within ±jitter/2 of its slot k·T (after the random phase): never drifts
    phase = t[0]
    for k, x in enumerate(t[1:200], start=1):
        assert abs(x - phase - k * period) <= jitter * period + 1
    # the achieved rate over the whole schedule is exact to well within 1%
    assert (len(t) - 1) / ((t[-1] - t[0]) / NS) == pytest.approx(rate, rel=0.001)
    if jitter == 0:
        assert max(g[1:]) - min(g[1:]) <= 1
    else:  # the gaps do vary, within one period of jitter
        assert min(g[1:]) >= period * (1 - jitter) - 1 and max(g[1:]) <= period * (1 + jitter) + 1
        assert max(g[1:]) - min(g[1:]) > period * jitter / 2


def test_per_tick_is_periodic_at_the_tick_rate():
    g = gaps("per_tick", 128.0, 1000)
    assert all(math.isclose(x, NS / 128, abs_tol=1) for x in g[1:])


def test_players_start_at_random_phases():
    firsts = {gaps("periodic", 20.0, 1, seed=s)[0] for s in range(20)}
    assert len(firsts) == 20 and max(firsts) - min(firsts) > NS / 20 / 2


def test_unknown_process_or_bad_jitter_is_refused():
    with pytest.raises(ValueError, match="input process must be one of"):
        gaps("bursty", 20.0, 1)
    with pytest.raises(ValueError, match="jitter"):
        gaps("periodic", 20.0, 1, jitter=1.0)
