"""Capacity under an SLA, with its uncertainty, and the search for it (no privileges).

A guest count *passes* for a mode when the SLA holds with 95% confidence, *fails*
when it is broken with 95% confidence, and is *unsure* otherwise:

- one point per count: the point's own 95% CIs (the delay statistic's, analytic, in
  analysis/stats.py; the loss ratio's, Wilson's interval on lost/sent);
- K repeated points per count (`--repeat K`): Student's t interval of the K values of
  the statistic and of the loss ratio, so run-to-run noise is in the interval.

A point whose load generator was the bottleneck (`load_bound`, analysis/point.py) is
left out; a count with only such points is *invalid*: neither pass nor fail, never
counted for capacity.

Capacity is an interval [lo, hi]: lo is the largest count that passed below the
first failing count, hi the first failing count − 1 (counts in between were not
measured or were unsure); with no failing count it is "≥ lo".

`next_count` is the search of `gamebed run --guests auto`: double the count until
a mode fails (or the maximum is reached), then bisect each mode's interval until it
is narrower than about 10% (`resolution`).  Every count is measured in both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

Z95 = 1.959964
# Student's t, two-sided 95%, by degrees of freedom (1..30); the normal beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
STAT_COL = {"mean": "delay_mean_us", "p95": "delay_p95_us", "p99": "delay_p99_us"}
# what the SLA judges: the whole path (client send → stamp the server used), or with
# players on a WAN (--wan) the host's share only: from the host's arrival stamp (the
# stamp error) and the loss after it (analysis/point.py path_split).  Per share: the
# figure whose statistic is judged, the loss ratio, and its lost and sent counts.
SHARES = {"client": ("delay", "loss_ratio", "inputs_lost", "inputs_sent"),
          "host": ("stamp_error", "host_loss_ratio", "inputs_lost_host", "inputs_host_logged")}


@dataclass(frozen=True)
class SlaTerms:
    """SLA terms asked for (`gamebed report --sla-*`); None: the run's own."""

    delay_ms: float | None = None
    stat: str | None = None
    loss: float | None = None


@dataclass(frozen=True)
class Sla:
    """The SLA a run is judged by: a delay statistic and limit, a loss limit, and the
    share of the path they apply to."""

    stat: str
    delay_ms: float
    loss: float
    share: str = "client"

    @classmethod
    def of_run(cls, spec: dict, given: SlaTerms | None = None) -> Sla:
        """The given terms, else the run's (its spec's), else the spec's defaults; the
        host's share of the path for a --wan run."""
        from gamebed.spec import default  # the spec owns the SLA's defaults

        g = given or SlaTerms()
        pick = [(g.stat, "sla_stat"), (g.delay_ms, "sla_delay_ms"), (g.loss, "sla_loss")]
        s, d, x = (given if given is not None else spec.get(key, default(key))
                   for given, key in pick)
        return cls(s, float(d), float(x), "host" if spec.get("wan") else "client")

    @property
    def delay_us(self) -> float:
        return self.delay_ms * 1000.0

    def terms(self) -> SlaTerms:
        return SlaTerms(self.delay_ms, self.stat, self.loss)

    def as_dict(self) -> dict:
        return {"stat": self.stat, "delay_ms": self.delay_ms, "loss": self.loss,
                "share": self.share}


def t975(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else Z95


def wilson(lost: float, sent: float) -> tuple[float, float]:
    """95% Wilson interval of a loss ratio lost/sent."""
    if not sent or not np.isfinite(sent):
        return (float("nan"), float("nan"))
    p, n, z2 = lost / sent, sent, Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _t_interval(v: np.ndarray) -> tuple[float, float, float]:
    mean = float(v.mean())
    half = t975(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


def _judge(g: pd.DataFrame, cols: tuple[str, str, str, str], sla: Sla) -> dict:
    """One (mode, count): the statistic and the loss ratio with their CIs, and the verdict.
    `cols`: the statistic's column, the loss ratio's, and the lost and sent counts'."""
    col, loss_col, lost_col, sent_col = cols
    g = g.dropna(subset=[col, loss_col])
    if g.empty:
        return {"k": 0, "verdict": "fail", "reason": "no delivered inputs"}
    if len(g) == 1:
        r = g.iloc[0]
        value, lo, hi = r[col], r.get(f"{col[:-3]}_ci_lo_us", r[col]), \
            r.get(f"{col[:-3]}_ci_hi_us", r[col])
        loss = float(r[loss_col])
        # a fault's losses are not load's
        load_lost = float(r[lost_col]) - float(r.get("inputs_lost_fault", 0) or 0)
        loss_lo, loss_hi = (wilson(load_lost, float(r[sent_col])) if sent_col in r
                            else (loss, loss))
        how = "the point's 95% CI"
    else:
        value, lo, hi = _t_interval(g[col].to_numpy(dtype="float64"))
        loss, loss_lo, loss_hi = _t_interval(g[loss_col].to_numpy(dtype="float64"))
        loss_lo, loss_hi = max(0.0, loss_lo), min(1.0, loss_hi)
        how = f"t interval over {len(g)} repeats"
    lo = value if not np.isfinite(lo) else lo
    hi = value if not np.isfinite(hi) else hi
    return {"k": len(g), "value_us": float(value), "ci_lo_us": float(lo),
            "ci_hi_us": float(hi), "loss": loss, "loss_ci_lo": float(loss_lo),
            "loss_ci_hi": float(loss_hi),
            **_verdict((lo, hi), (loss_lo, loss_hi), sla, how)}


def _verdict(delay: tuple[float, float], loss: tuple[float, float], sla: Sla,
             how: str) -> dict:
    """pass: both CIs within the SLA; fail: either CI beyond it; else unsure."""
    d_ok, d_bad = delay[1] <= sla.delay_us, delay[0] > sla.delay_us
    l_ok, l_bad = loss[1] <= sla.loss, loss[0] > sla.loss
    if d_bad or l_bad:
        verdict = "fail"
        why = " and ".join(s for s, b in ((f"delay CI above {sla.delay_us:g} µs", d_bad),
                                          (f"loss CI above {sla.loss:g}", l_bad)) if b)
    elif d_ok and l_ok:
        verdict, why = "pass", "delay and loss CIs within the SLA"
    else:
        verdict = "unsure"
        why = " and ".join(s for s, b in (("delay CI straddles the SLA", not d_ok),
                                          ("loss CI straddles the SLA", not l_ok)) if b)
    return {"verdict": verdict, "reason": f"{why} ({how})"}


def verdicts(points: pd.DataFrame, sla: Sla) -> pd.DataFrame:
    """One row per (mode, guests): k, the statistic and its CI, loss and its CI, verdict
    (pass, fail, unsure) and the reason.  `points` has one row per measured point, with
    the columns SHARES names for the SLA's share, the statistic's and its CI's."""
    name, loss_col, lost_col, sent_col = SHARES[sla.share]
    cols = (f"{name}_{sla.stat}_us", loss_col, lost_col, sent_col)
    rows = []
    for (m, n), g in points.groupby(["mode", "guests"]):
        valid = g[~_load_bound(g)]
        if valid.empty:  # the load generator, not the host, set the pace: no verdict
            rows.append({"mode": m, "guests": int(n), "k": 0, "verdict": "invalid",
                         "reason": f"every point load-generator-bound ({LOAD_BOUND_RULE})"})
            continue
        row = {"mode": m, "guests": int(n), **_judge(valid, cols, sla)}
        if len(valid) < len(g):
            row["reason"] += (f"; {len(g) - len(valid)} load-generator-bound point(s) "
                              "left out")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["mode", "guests"]).reset_index(drop=True)


LOAD_BOUND_RULE = "client p99 send lateness > 200 µs or the host side's CPU > 90% busy"


def _load_bound(g: pd.DataFrame) -> pd.Series:
    """Points whose load generator was the bottleneck (analysis/point.py load_figures);
    points recorded before the rule existed have no such column and count as valid."""
    if "load_bound" not in g.columns:
        return pd.Series(False, index=g.index)
    return g["load_bound"].map(lambda x: x is True or x == 1 or x == "True").astype(bool)


def interval(v: pd.DataFrame) -> dict:
    """Capacity of one mode from its verdict rows: {capacity (lo), capacity_hi (None:
    unbounded), bounded_by_largest_count, first_failure, largest_measured, unsure,
    passed_above_failure}."""
    v = v.sort_values("guests")
    fails = v[v["verdict"] == "fail"]["guests"]
    first_fail = int(fails.min()) if len(fails) else None
    below = v if first_fail is None else v[v["guests"] < first_fail]
    passed = below[below["verdict"] == "pass"]["guests"]
    lo = int(passed.max()) if len(passed) else 0
    above = v[(v["verdict"] == "pass") & (v["guests"] > (first_fail or 10**9))]
    return {"capacity": lo, "capacity_hi": None if first_fail is None else first_fail - 1,
            # no count failed: capacity ≥ lo, bounded only by the largest count tried
            "bounded_by_largest_count": first_fail is None,
            "first_failure": first_fail, "largest_measured": int(v["guests"].max()),
            "unsure": [int(n) for n in below[below["verdict"] == "unsure"]["guests"]],
            # neither pass nor fail (the load generator was the bottleneck): not counted
            "invalid": [int(n) for n in v[v["verdict"] == "invalid"]["guests"]],
            "passed_above_failure": [int(n) for n in above["guests"]]}


def judge(points: pd.DataFrame | list[dict], sla: Sla) -> tuple[pd.DataFrame, dict]:
    """The one capacity judge (report, comparison and search): a run's points (rows of
    points.csv or summary.json's entries: the same names) → (verdicts per mode and
    count, {mode: interval(...)})."""
    frame = points if isinstance(points, pd.DataFrame) else pd.DataFrame(points)
    if not len(frame):
        return frame, {}
    v = verdicts(frame, sla)
    return v, {m: interval(g) for m, g in v.groupby("mode")}


TICK_RATE_TOLERANCE = 0.01  # achieved tick rate at least 99% of the profile's
TICK_GAP_LIMIT = 1.5  # p99 gap between ticks at most 1.5 tick periods


def served(points: pd.DataFrame | list[dict], tick_hz: float) -> dict:
    """Did the servers keep their tick rate?  Per mode: `served_up_to`, the largest
    count below the first count where some valid point's servers ticked more than 1%
    slow or had a p99 gap between ticks over 1.5 periods (`first_unserved`).  Beside
    the capacity, not part of it: the SLA is on the inputs' delay and loss (the
    paper's); this says whether the game was also served at its rate there."""
    frame = points if isinstance(points, pd.DataFrame) else pd.DataFrame(points)
    if not len(frame) or "tick_hz_achieved" not in frame:
        return {}
    frame = frame[~_load_bound(frame)]
    out = {}
    for mode, g in frame.groupby("mode"):
        ok = ((g["tick_hz_achieved"] >= (1 - TICK_RATE_TOLERANCE) * tick_hz)
              & (g["tick_gap_p99_ms"] <= TICK_GAP_LIMIT * 1e3 / tick_hz))
        bad = sorted(int(n) for n in g.loc[~ok.fillna(False).astype(bool), "guests"])
        first = bad[0] if bad else None
        good = [int(n) for n in g["guests"] if first is None or n < first]
        out[mode] = {"served_up_to": max(good) if good else 0, "first_unserved": first}
    return out


def capacity_text(c: dict) -> str:
    if c["bounded_by_largest_count"]:
        if c["capacity"] == 0:
            return "unknown: no count measured passed or failed with confidence"
        return f"≥ {c['capacity']} (no measured count failed)"
    if c["capacity_hi"] is None or c["capacity_hi"] <= c["capacity"]:
        return f"{c['capacity']}"
    return f"{c['capacity']}–{c['capacity_hi']}"


def resolution(lo: int) -> int:
    """How narrow the search makes a capacity interval: about 10% of the count."""
    return max(1, math.ceil(0.1 * lo))


def next_count(v: pd.DataFrame, tried: set[int], maximum: int,
               minimum: int = 1) -> int | None:
    """The search's next guest count from the verdicts so far (rows as `verdicts`), or
    None when every mode's capacity is known to `resolution` (or the maximum passed).
    `minimum`: the smallest count that can run (a mix needs a guest per profile)."""
    if not tried:
        return minimum
    caps = {m: interval(g) for m, g in v.groupby("mode")}
    top = max(tried)
    if any(c["first_failure"] is None for c in caps.values()) and top < maximum:
        return min(2 * top, maximum)  # grow: some mode has not failed yet
    best, width = None, 0.0
    for c in caps.values():
        lo, fail = c["capacity"], c["first_failure"]
        if fail is None or fail - lo <= resolution(lo):
            continue
        free = [n for n in range(max(lo + 1, minimum), fail) if n not in tried]
        if not free:
            continue  # every count between is measured (unsure): the interval stays
        mid = (lo + fail) / 2
        pick = min(free, key=lambda n: (abs(n - mid), n))
        rel = (fail - lo) / max(lo, 1)
        if rel > width:
            best, width = pick, rel
    return best


def search_step(sla: Sla, maximum: int):
    """The search as the sweep calls it: (summary.json's points so far, counts tried) →
    the next count or None (gamebed/sweep.py)."""
    def step(points: list[dict], tried: set[int]) -> int | None:
        judged, _ = judge(points, sla)
        return next_count(judged, tried, maximum)
    return step
