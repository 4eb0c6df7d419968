"""The first model check's scorer as registered at commit ebafe27 (no privileges).

A frozen copy of `_error` and of the scoring in `check` from `analysis/forecast.py` at
ebafe27, the commit that registered `predictions.json` before any held-out run. The
scoring code there was changed twice afterwards (see docs/model.md, "Model check");
this file keeps the rules the predictions were registered under, so that the check can
be scored as registered from a shallow clone, with no history to run it from.

Only the scoring is frozen: the measured intervals it takes are the held-out runs'
capacities under the judge of that time, kept in `first_check.json` beside this file
(`measured`), each one as `held_out.tar.gz`'s `check.json` shows it.

    python benchmarks/model_check/registered_scorer.py      # print both scorings
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REGISTERED_AT = "ebafe27"


def registered_error(pred: dict, meas: dict, top: int) -> tuple[float, bool]:
    """ebafe27's `_error`, verbatim: (error in guests, overlap)."""
    m_hi = meas["hi"] if meas["hi"] is not None else max(top, meas["lo"])
    p_hi = top if pred.get("at_least") else pred.get("hi", pred["lo"])
    overlap = pred["lo"] <= m_hi and p_hi >= meas["lo"]
    point = pred.get("capacity", pred["lo"])
    mid = meas["lo"] if meas["hi"] is None else (meas["lo"] + meas["hi"]) / 2
    if meas["hi"] is None:  # measured a lower bound: only a prediction below it errs
        return float(min(0, point - meas["lo"])), overlap
    if pred.get("at_least"):  # predicted a lower bound: only a measurement below it errs
        return float(max(0, point - mid)), overlap
    return float(point - mid), overlap


def later_error(pred: dict, meas: dict, top: int) -> tuple[float | None, bool]:
    """The rule of e25a326, written after the held-out results: a predicted lower bound
    beside a measured lower bound is not scored. Otherwise as registered."""
    err, overlap = registered_error(pred, meas, top)
    if meas["hi"] is None and pred.get("at_least"):
        return None, overlap
    return err, overlap


def registered_baseline(base: dict) -> dict:
    """ebafe27: the baseline scored as a prediction at its interval's low end."""
    return {**base, "capacity": base["lo"], "hi": base["hi"] or base["lo"]}


def later_baseline(base: dict) -> dict:
    """e8314ce, committed after the held-out runs had started: the baseline scored at
    its interval's middle (its lo where unbounded)."""
    hi = base["hi"]
    mid = base["lo"] if hi is None else (base["lo"] + hi) / 2
    return {"lo": base["lo"], "hi": hi if hi is not None else base["lo"],
            "capacity": mid, "at_least": hi is None}


def score(predictions: dict, measured: dict, later: bool = False) -> dict:
    """Rows and total absolute errors, by the registered rules (or, with `later`, by the
    rules changed after registration). `measured`: {case: {mode: {lo, hi}}}."""
    err_of = later_error if later else registered_error
    base_of = later_baseline if later else registered_baseline
    rows, totals = [], {"model": 0.0, "baseline": 0.0}
    for c in predictions["cases"]:
        name = c["case"]["name"]
        for mode, pred in sorted(c["modes"].items()):
            m = (measured.get(name) or {}).get(mode)
            if m is None:
                continue
            err, ok = err_of(pred, m, predictions["top"])
            base = c["baseline"].get(mode)
            berr = err_of(base_of(base), m, predictions["top"])[0] if base else None
            rows.append({"case": name, "mode": mode, "overlap": ok, "error": err,
                         "baseline_error": berr})
            if later and (err is None or berr is None):
                continue  # e25a326: scored only where both can be
            totals["model"] += abs(err)
            totals["baseline"] += abs(berr or 0.0)
    return {"rules": "later reading" if later else f"registered ({REGISTERED_AT})",
            "rows": rows, "total_abs_error": totals}


def first_check() -> dict:
    """The stored first check (first_check.json) scored both ways."""
    stored = json.loads((HERE / "first_check.json").read_text())
    pred = json.loads((HERE / "predictions.json").read_text())
    return {"registered": score(pred, stored["measured"]),
            "later": score(pred, stored["measured"], later=True), "stored": stored}


if __name__ == "__main__":
    out = first_check()
    for key in ("registered", "later"):
        s = out[key]
        print(f"== {s['rules']}")
        for r in s["rows"]:
            print(f"  {r['case']:>8} {r['mode']:<5} model {r['error']}  baseline "
                  f"{r['baseline_error']}")
        t = s["total_abs_error"]
        print(f"  total: model {t['model']:g}, baseline {t['baseline']:g}")
    sys.exit(0)
