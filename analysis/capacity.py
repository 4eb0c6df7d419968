"""Capacity under an SLA, with its uncertainty, and the search for it (no privileges).

The SLA's terms (spec `sla_terms`, `--sla-terms`):
- **players** (the default): what players feel.  The inputs' delay statistic and loss,
  as the paper's, and the ticks each player received over the load window
  (analysis/ticks.py): at least 99% of those scheduled, and a p99 gap between them of
  at most 1.5 tick periods, for the worst player of every server.
- **paper**: the inputs' delay and loss alone (Tsai 2009's terms): what host stamps
  buy, whatever the servers' tick rate.

Each term gets a verdict from its 95% CI: *pass* when the CI lies within its limit,
*fail* when it lies wholly beyond, *unsure* otherwise; a count fails when any term
fails, passes when every term passes, and is unsure otherwise (`failed_terms` names
the terms that failed).  The CIs:

- one point per count: the point's own (analysis/stats.py: batch means for the mean
  and the loss ratio, sectioning for p95, p99 and the tick gap; the
  point is a time series, not independent draws);
- K repeated points per count (`--repeat K`): Student's t interval of the K values of
  each figure, so run-to-run noise is in the interval.

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

from analysis.figures import SHARE_SPREAD, StatNames
from analysis.stats import Z95, t975, verdict
from analysis.ticks import TICK_GAP_LIMIT, TICK_RATE_TOLERANCE, tick_verdicts

# what the SLA judges: the whole path (client send → stamp the server used), or with
# players on a WAN (--wan) the host's share only: from the host's arrival stamp (the
# stamp error) and the loss after it (analysis/point.py path_split).  Per share: the
# loss ratio, and its lost and sent counts; the spread whose statistic is judged is
# analysis/figures.py SHARE_SPREAD's.
SHARES = {"client": ("loss_ratio", "inputs_lost", "inputs_sent"),
          "host": ("host_loss_ratio", "inputs_lost_host", "inputs_host_logged")}


@dataclass(frozen=True)
class SlaTerms:
    """SLA terms asked for (`gamebed report --sla-*`); None: the run's own."""

    delay_ms: float | None = None
    stat: str | None = None
    loss: float | None = None
    terms: str | None = None  # "players" or "paper"


@dataclass(frozen=True)
class Sla:
    """The SLA a run is judged by: a delay statistic and limit, a loss limit, the share
    of the path they apply to, and which terms: "players" adds the tick terms
    (analysis/ticks.py) at `tick_hz`; "paper" is delay and loss alone."""

    stat: str
    delay_ms: float
    loss: float
    share: str = "client"
    terms: str = "players"
    tick_hz: float = 20.0

    @classmethod
    def of_run(cls, spec: dict, given: SlaTerms | None = None) -> Sla:
        """The given terms, else the run's (its spec's), else the spec's defaults; the
        host's share of the path for a --wan run."""
        from gamebed.spec import default  # the spec owns the SLA's defaults

        g = given or SlaTerms()
        pick = [(g.stat, "sla_stat"), (g.delay_ms, "sla_delay_ms"), (g.loss, "sla_loss"),
                (g.terms, "sla_terms")]
        s, d, x, t = (given if given is not None else spec.get(key, default(key))
                      for given, key in pick)
        return cls(s, float(d), float(x), "host" if spec.get("wan") else "client", t,
                   float(spec.get("tick_hz", default("tick_hz"))))

    @property
    def delay_us(self) -> float:
        return self.delay_ms * 1000.0

    def terms_asked(self) -> SlaTerms:
        return SlaTerms(self.delay_ms, self.stat, self.loss, self.terms)

    def with_terms(self, terms: str) -> Sla:
        return Sla(self.stat, self.delay_ms, self.loss, self.share, terms, self.tick_hz)

    def as_dict(self) -> dict:
        return {"stat": self.stat, "delay_ms": self.delay_ms, "loss": self.loss,
                "share": self.share, "terms": self.terms, "tick_hz": self.tick_hz}


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


@dataclass(frozen=True)
class Columns:
    """Where a share's figures are: the judged statistic's three columns, the loss
    ratio's, and its lost and sent counts'."""

    stat: StatNames
    loss: str
    lost: str
    sent: str

    @classmethod
    def of(cls, sla: Sla) -> Columns:
        return cls(SHARE_SPREAD[sla.share].stat(sla.stat), *SHARES[sla.share])


def _judge(g: pd.DataFrame, cols: Columns, sla: Sla) -> dict:
    """One (mode, count): the statistic and the loss ratio with their CIs, the players'
    tick figures with theirs, each term's verdict and the count's."""
    col, loss_col = cols.stat.value, cols.loss
    empty = g[col].isna() | g[loss_col].isna()
    if empty.any():  # a repeat that delivered nothing fails its count, whatever the rest
        return {"k": len(g), "verdict": "fail", "failed_terms": "delivery",
                "reason": f"{int(empty.sum())} of {len(g)} point(s) delivered no inputs"}
    if len(g) == 1:
        r = g.iloc[0]
        value, lo, hi = r[col], r.get(cols.stat.lo, r[col]), r.get(cols.stat.hi, r[col])
        loss, (loss_lo, loss_hi) = float(r[loss_col]), _point_loss_ci(r, cols)
        how = "the point's 95% CI"
    else:
        value, lo, hi = _t_interval(g[col].to_numpy(dtype="float64"))
        loss, loss_lo, loss_hi = _t_interval(g[loss_col].to_numpy(dtype="float64"))
        loss_lo, loss_hi = max(0.0, loss_lo), min(1.0, loss_hi)
        how = f"t interval over {len(g)} repeats"
    lo = value if not np.isfinite(lo) else lo
    hi = value if not np.isfinite(hi) else hi
    terms = {"delay": verdict((lo, hi), sla.delay_us, above_fails=True),
             "loss": verdict((loss_lo, loss_hi), sla.loss, above_fails=True)}
    out = {"k": len(g), "value_us": float(value), "ci_lo_us": float(lo),
           "ci_hi_us": float(hi), "loss": loss, "loss_ci_lo": float(loss_lo),
           "loss_ci_hi": float(loss_hi)}
    if sla.terms == "players":
        ticks = _tick_terms(g, sla.tick_hz)
        out.update(ticks.pop("figures"))
        terms.update(ticks)
    return {**out, **_combine(terms, sla, how)}


def _point_loss_ci(r: pd.Series, cols: Columns) -> tuple[float, float]:
    """One point's loss CI: by batch means over its send times (analysis/point.py) where
    recorded; else Wilson's on the load's lost and sent counts (a fault's losses are not
    load's)."""
    loss_col, lost_col, sent_col = cols.loss, cols.lost, cols.sent
    lo = r.get("loss_ci_lo")
    # a batch-means interval of [0, x] is an interval (bursty low loss): only a missing
    # one falls back to Wilson's
    if loss_col == "loss_ratio" and lo is not None and pd.notna(lo) and np.isfinite(float(lo)):
        return float(r["loss_ci_lo"]), float(r["loss_ci_hi"])
    load_lost = float(r[lost_col]) - float(r.get("inputs_lost_fault", 0) or 0)
    if sent_col in r:
        return wilson(load_lost, float(r[sent_col]))
    return float(r[loss_col]), float(r[loss_col])


def _tick_terms(g: pd.DataFrame, tick_hz: float) -> dict:
    """The tick terms of one (mode, count) (analysis/ticks.py): each point's envelope over
    its players, or Student's t over repeats of the worst player's figures.  A point
    recorded before the players' ticks were (no ticks_share_worst) is "not recorded"."""
    if "ticks_share_worst" not in g or g["ticks_share_worst"].isna().all():
        return {"figures": {}, "tick rate": "not recorded", "tick gap": "not recorded"}
    g = g.dropna(subset=["ticks_share_worst"])
    if len(g) == 1:
        r = g.iloc[0]
        share = (r["ticks_share_ci_lo"], r["ticks_share_ci_hi"])
        gap = (r["tick_gap_p99_ci_lo_ms"], r["tick_gap_p99_ci_hi_ms"])
        s_val, g_val = r["ticks_share_worst"], r["tick_gap_p99_worst_ms"]
    else:
        s_val, *share = _t_interval(g["ticks_share_worst"].to_numpy(dtype="float64"))
        g_val, *gap = _t_interval(g["tick_gap_p99_worst_ms"].to_numpy(dtype="float64"))
    return {"figures": {"ticks_share": float(s_val), "ticks_share_ci_lo": float(share[0]),
                        "ticks_share_ci_hi": float(share[1]), "tick_gap_ms": float(g_val),
                        "tick_gap_ci_lo_ms": float(gap[0]), "tick_gap_ci_hi_ms": float(gap[1])},
            **tick_verdicts(tuple(share), tuple(gap), tick_hz)}


TERMS = ("delay", "loss", "tick rate", "tick gap")
TERM_COLUMN = {"delay": "delay_verdict", "loss": "loss_verdict",
               "tick rate": "tick_rate_verdict", "tick gap": "tick_gap_verdict"}
TERM_TEXT = {"delay": "delay CI {} {:g} µs", "loss": "loss CI {} {:g}",
             "tick rate": "worst player's tick share CI {} {:g}",
             "tick gap": "worst player's p99 tick gap CI {} {:g} ms"}


def _combine(terms: dict[str, str], sla: Sla, how: str) -> dict:
    """The count's verdict from its terms': fail if any fails, pass if all pass (a term
    not recorded is left out, and said), else unsure; each term's verdict too."""
    limits = {"delay": sla.delay_us, "loss": sla.loss, "tick rate": 1 - TICK_RATE_TOLERANCE,
              "tick gap": TICK_GAP_LIMIT * 1e3 / sla.tick_hz}
    judged = {t: v for t, v in terms.items() if v != "not recorded"}
    failed = [t for t, v in judged.items() if v == "fail"]
    unsure = [t for t, v in judged.items() if v == "unsure"]
    if failed:
        verdict, names, word = "fail", failed, "beyond"
    elif unsure:
        verdict, names, word = "unsure", unsure, "straddles"
    else:
        verdict, names, word = "pass", list(judged), "within"
    why = " and ".join(TERM_TEXT[t].format(word, limits[t]) for t in names)
    if len(terms) > len(judged):
        why += "; ticks not recorded (a run before the players' SLA)"
    return {"verdict": verdict, "reason": f"{why} ({how})",
            "failed_terms": ", ".join(failed),
            **{TERM_COLUMN[t]: v for t, v in terms.items()}}


def verdicts(points: pd.DataFrame, sla: Sla) -> pd.DataFrame:
    """One row per (mode, guests): k, the statistic and its CI, loss and its CI, verdict
    (pass, fail, unsure) and the reason.  `points` has one row per measured point, with
    the columns SHARES names for the SLA's share, the statistic's and its CI's."""
    cols = Columns.of(sla)
    rows = []
    for (m, n), g in points.groupby(["mode", "guests"]):
        valid = g[~_load_bound(g)]
        if valid.empty:  # the load generator, not the host, set the pace: no verdict
            why = "; ".join(bound_text(r) for _, r in g.iterrows())
            rows.append({"mode": m, "guests": int(n), "k": 0, "verdict": "invalid",
                         "reason": f"every point load-generator-bound: {why}"})
            continue
        row = {"mode": m, "guests": int(n), **_judge(valid, cols, sla)}
        if len(valid) < len(g):
            row["reason"] += (f"; {len(g) - len(valid)} load-generator-bound point(s) "
                              "left out")
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["mode", "guests"]).reset_index(drop=True)


LOAD_BOUND_RULE = "client p99 send lateness > 200 µs or the host side's CPU > 90% busy"


CAUSE_TEXT = {
    "host busy": "the host side could not keep up (its CPU over 90% busy)",
    "client late": "the client was late with no stall the machine explains",
    "stolen": "the machine took more of the load than the analysis leaves out (20%)",
    "unknown stall": "a stall of 20 ms or more that no record explains",
}


def bound_text(r: pd.Series) -> str:
    """Why one point was load-generator-bound, with its figures (analysis/stalls.py)."""
    cause = r.get("load_bound_cause")
    if not isinstance(cause, str):  # a point recorded before causes were
        return LOAD_BOUND_RULE
    late = r.get("send_lateness_p99_us")
    out = f"{CAUSE_TEXT.get(cause, cause)} (client p99 send lateness {late:.0f} µs"
    if isinstance(r.get("stall_causes"), str):
        out += f"; {r['stall_causes']}"
    if pd.notna(r.get("steal_s")):
        out += f"; steal {r['steal_s']:.2f} s"
    if pd.notna(r.get("tries")) and r.get("tries", 1) > 1:
        out += f"; measured {int(r['tries'])} times"
    return out + ")"


def _load_bound(g: pd.DataFrame) -> pd.Series:
    """Points whose load generator was the bottleneck (analysis/load.py load_figures);
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
            "invalid_why": {int(r["guests"]): r["reason"]
                            for _, r in v[v["verdict"] == "invalid"].iterrows()},
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
    """The search as the sweep calls it: (summary.json's points so far, counts tried, the
    run's directory) → the next count or None (gamebed/sweep.py).  It judges the points'
    stored figures (analysis/point.py stored_figures), as the report does."""
    from analysis.point import stored_figures

    def step(points: list[dict], tried: set[int], out=None) -> int | None:
        judged, _ = judge(stored_figures(out, points) if out else points, sla)
        return next_count(judged, tried, maximum)
    return step
