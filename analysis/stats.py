"""Statistics (no privileges; numpy, vectorised); the capacity rule is analysis/capacity.py.

Confidence intervals are analytic so they scale to millions of records:
normal-theory for the mean, distribution-free order statistics for quantiles.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959964


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
