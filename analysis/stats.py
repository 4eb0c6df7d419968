"""Statistics (no privileges; numpy, vectorised); the capacity rule is analysis/capacity.py.

A point is a time series, not independent draws: one slow wake-up of a guest delays a
run of inputs, so neighbouring delays are correlated, and an interval that treats
them as independent is too narrow (two main jobs on the same code gave capacities
that did not overlap).  `describe_series` therefore gives
- the mean's 95% CI by batch means: the point cut into about 2-s batches by send time
  (at least MIN_BATCHES), Student's t over the batch means;
- the p95's and p99's by sectioning, the batch means of quantiles: each batch's own
  quantile, Student's t over them, centred on the whole point's quantile and widened
  by how far the batches' mean quantile lies from it (a quantile of a batch is biased;
  that distance estimates the bias).  A moving-block bootstrap was tried first: on
  delays shaped like a real 24-guest UML point's (tests/unit/test_intervals.py) its
  nominal 95% covered the true p95 in 85% of trials, sectioning alone in 91%, this in
  95–96%;
- a loss ratio's CI by batch means too (`batch_ratio_ci`).
`describe` keeps the independent-draws intervals (normal theory for the mean,
order statistics for quantiles), for what has no time order.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959964


@dataclass(frozen=True)
class Stat:
    """A figure and its 95% interval; lo and hi are None where none was computed (a
    point whose loss a fault shares has no batch-means interval, say)."""

    value: float
    lo: float | None = None
    hi: float | None = None

    def ci(self) -> tuple[float, float]:
        """The interval, each unknown or non-finite end replaced by the value."""
        def end(x: float | None) -> float:
            return self.value if x is None or not math.isfinite(x) else x
        return end(self.lo), end(self.hi)


MIN_N_P999 = 10_000  # below this a p99.9 rests on fewer than 10 values above it


def describe(values: np.ndarray) -> dict:
    """n, mean, p50, p95, p99, p99.9 (NaN with fewer than MIN_N_P999 values: too few),
    exact min and max, with 95% CIs for the mean, the p95 and the p99."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return {"n": 0}
    mean = float(v.mean())
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    q = np.quantile(v, [0.5, 0.95, 0.99, 0.999])
    return {"n": n, "mean": mean, "mean_ci": (mean - half, mean + half), "p50": float(q[0]),
            "p95": float(q[1]), "p95_ci": quantile_ci(v, 0.95), "p99": float(q[2]),
            "p99_ci": quantile_ci(v, 0.99),
            "p999": float(q[3]) if n >= MIN_N_P999 else float("nan"),
            "min": float(v.min()), "max": float(v.max())}


def quantile_ci(v: np.ndarray, q: float) -> tuple[float, float]:
    """Distribution-free 95% CI of a quantile: order statistics at n·q ± z·sqrt(n·q·(1−q))."""
    n = len(v)
    if n < 2:
        return (float("nan"), float("nan"))
    spread = Z95 * math.sqrt(n * q * (1 - q))
    lo = int(max(0, math.floor(n * q - spread)))
    hi = int(min(n - 1, math.ceil(n * q + spread)))
    part = np.partition(v, (lo, hi))
    return float(part[lo]), float(part[hi])


def ccdf_points(values: np.ndarray, floor: float = 1e-4, n: int = 120
                ) -> tuple[np.ndarray, np.ndarray]:
    """The complementary CDF, P(X > x), at `n` log-spaced exceedance levels from 1 down to
    `floor` (or 1/len, if larger): a few hundred numbers however many values, with the
    tail resolved for a log-scale plot.  Returns (x, P(X > x))."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.array([]), np.array([])
    lowest = max(floor, 1.0 / len(v))
    exceed = np.logspace(0, math.log10(lowest), n)
    return np.quantile(v, 1.0 - exceed), exceed


# a batch: about 2 s of the point, and at least 5 batches.  Measured on delays shaped
# like a real 24-guest UML point's (correlated over 0.17 s; tests/unit/test_intervals.py)
# the mean's nominal 95% covered 92.9% of trials with 1-s batches, 94.0% with 2-s ones
MIN_BATCHES = 5
BATCH_S = 2.0


@functools.lru_cache(maxsize=4096)
def t_quantile(df: int, alpha: float = 0.05) -> float:
    """Student's t quantile of a two-sided (1 − alpha) interval, df degrees of freedom
    (scipy.special's: scipy.stats takes 2 s to import here, and 20-40 s under TCG, in
    every process that analyses a point)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 1 - alpha / 2))


@functools.lru_cache(maxsize=4096)
def binomial_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson's (1 − alpha) interval of a ratio k/n (scipy's beta quantiles):
    at least its nominal coverage for independent trials."""
    from scipy.special import betaincinv  # the beta quantile, without scipy.stats

    if n <= 0:
        return (0.0, 1.0)
    lo = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1, alpha / 2))
    hi = 1.0 if k >= n else float(betaincinv(k + 1, n - k, 1 - alpha / 2))
    return (lo, hi)


def t975(df: int) -> float:
    """Student's t, two-sided 95%, df degrees of freedom."""
    return t_quantile(df)


def batch_ids(times: np.ndarray, batch_s: float = BATCH_S,
              min_batches: int = MIN_BATCHES) -> np.ndarray:
    """Each value's batch by its time (ns): about `batch_s` long, at least `min_batches`
    over the span."""
    t = np.asarray(times, dtype="float64")
    if not len(t):
        return np.zeros(0, dtype=np.int64)
    t0, span = float(np.nanmin(t)), float(np.nanmax(t) - np.nanmin(t))
    k = max(min_batches, round(span / (batch_s * 1e9)))
    width = span / k if span > 0 else 1.0
    return np.minimum(((t - t0) / width).astype(np.int64), k - 1)


def batch_mean_ci(values: np.ndarray, batches: np.ndarray, alpha: float = 0.05
                  ) -> tuple[float, float]:
    """(1 − alpha) CI of the mean by batch means (Student's t over the batches' means)."""
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    v, b = v[ok], np.asarray(batches)[ok]
    if len(v) < 2:
        return (float("nan"), float("nan"))
    ids, inv = np.unique(b, return_inverse=True)
    if len(ids) < 2:
        return (float("nan"), float("nan"))
    means = np.bincount(inv, weights=v) / np.bincount(inv)
    half = t_quantile(len(means) - 1, alpha) * float(means.std(ddof=1)) / math.sqrt(len(means))
    m = float(v.mean())
    return (m - half, m + half)


def batch_ratio_ci(hits: np.ndarray, batches: np.ndarray) -> tuple[float, float]:
    """95% CI of a ratio (e.g. inputs lost / sent) by batch means: each batch's ratio,
    weighted by its size, Student's t over the batches; clipped to [0, 1]."""
    h = np.asarray(hits, dtype="float64")
    b = np.asarray(batches)
    if len(h) < 2:
        return (float("nan"), float("nan"))
    ids, inv = np.unique(b, return_inverse=True)
    if len(ids) < 2:
        return (float("nan"), float("nan"))
    n = np.bincount(inv).astype("float64")
    r = np.bincount(inv, weights=h) / n
    p = float(h.mean())
    # the ratio estimator's batch-means variance: sizes differ from batch to batch
    var = float(np.sum((n / n.mean()) ** 2 * (r - p) ** 2)) / (len(n) * (len(n) - 1))
    half = t975(len(n) - 1) * math.sqrt(var)
    return (max(0.0, p - half), min(1.0, p + half))


def batch_quantile_ci(values: np.ndarray, batches: np.ndarray, q: float,
                      alpha: float = 0.05) -> tuple[float, float]:
    """(1 − alpha) CI of the q-quantile of a series by sectioning: each batch's q-quantile,
    Student's t over the batches, centred on the whole series' quantile and widened by
    |mean of the batches' quantiles − the whole's| (the batch quantiles' bias)."""
    v = np.asarray(values, dtype="float64")
    b = np.asarray(batches)
    ok = np.isfinite(v)
    v, b = v[ok], b[ok]
    if len(v) < 2:
        return (float("nan"), float("nan"))
    whole = float(np.quantile(v, q))
    order = np.argsort(b, kind="stable")
    ids, starts = np.unique(b[order], return_index=True)
    if len(ids) < 2:
        return (float("nan"), float("nan"))
    parts = np.split(v[order], starts[1:])
    qs = np.array([np.quantile(p, q) for p in parts])
    half = t_quantile(len(qs) - 1, alpha) * float(qs.std(ddof=1)) / math.sqrt(len(qs))
    half += abs(float(qs.mean()) - whole)
    return (whole - half, whole + half)


def describe_series(values: np.ndarray, times: np.ndarray) -> dict:
    """`describe`'s figures of a point's series (`times`: each value's send time, ns),
    with intervals that carry the series' correlation: batch means for the mean,
    sectioning for p95 and p99 (batches of about 2 s, at least MIN_BATCHES)."""
    v = np.asarray(values, dtype="float64")
    t = np.asarray(times, dtype="float64")
    ok = np.isfinite(v) & np.isfinite(t)
    v, t = v[ok], t[ok]
    out = describe(v)
    if out["n"] < 2:
        return out
    b = batch_ids(t)
    out["mean_ci"] = batch_mean_ci(v, b)
    out["p95_ci"] = batch_quantile_ci(v, b, 0.95)
    out["p99_ci"] = batch_quantile_ci(v, b, 0.99)
    out["batches"] = int(b.max()) + 1
    return out


def verdict(ci: tuple[float, float], limit: float, above_fails: bool) -> str:
    """pass: the CI within the limit; fail: the CI wholly beyond it; else unsure."""
    lo, hi = ci
    if not above_fails:
        lo, hi, limit = -hi, -lo, -limit
    return "fail" if lo > limit else "pass" if hi <= limit else "unsure"
