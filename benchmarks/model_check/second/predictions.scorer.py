"""The model check's scoring rules (no privileges; the standard library only).

`gamebed predict --register FILE` freezes a copy of this file beside the predictions
(FILE's stem + `.scorer.py`) and records its sha256 in them; `gamebed predict --check`
scores with that copy, after checking its digest, so the rules a check is scored by
are the rules registered with its predictions, whatever this file says later.  A
shallow clone has no history to run an old scorer from: the copy is the record.

Rules (as of this file):
- a predicted interval is scored at its `capacity` (its point), a measured one at its
  middle; a measured lower bound ("≥ lo") is met by any prediction at or above lo,
  and only a prediction below it errs, by the gap;
- a predicted lower bound errs only where the measured middle is below it;
- a lower bound beside a lower bound has no error to take (the row is unscored);
- the baseline is scored as a prediction at its interval's middle (lo if unbounded);
- the totals sum the absolute errors over the rows both model and baseline are
  scored on, over all rows and per mode;
- a mode passes (`verdict`) when at least 3 of every 4 of its rows overlap (all but
  a quarter, rounded down), every predicted interval in it is bounded and within
  ±20% of its middle (a lower bound is not), and its total error is below the
  baseline's on the same rows; a mode with no row scored does not pass.
"""

from __future__ import annotations


def error(pred: dict, meas: dict, top: int) -> tuple[float | None, bool]:
    """(error in guests, overlap): the predicted point against the measured interval."""
    m_hi = meas["hi"] if meas["hi"] is not None else max(top, meas["lo"])
    p_hi = top if pred.get("at_least") else pred.get("hi", pred["lo"])
    overlap = pred["lo"] <= m_hi and p_hi >= meas["lo"]
    point = pred.get("capacity", pred["lo"])
    mid = meas["lo"] if meas["hi"] is None else (meas["lo"] + meas["hi"]) / 2
    if meas["hi"] is None and pred.get("at_least"):  # two lower bounds: no error to take
        return None, overlap
    if meas["hi"] is None:  # measured a lower bound: only a prediction below it errs
        return float(min(0, point - meas["lo"])), overlap
    if pred.get("at_least"):  # predicted a lower bound: only a measurement below it errs
        return float(max(0, point - mid)), overlap
    return float(point - mid), overlap


def baseline_point(base: dict) -> dict:
    """The baseline as a prediction: its interval's middle (its lo where unbounded)."""
    hi = base["hi"]
    mid = base["lo"] if hi is None else (base["lo"] + hi) / 2
    return {"lo": base["lo"], "hi": hi if hi is not None else base["lo"],
            "capacity": mid, "at_least": hi is None}


WIDTH_PCT = 20.0  # the most a predicted interval's half-width may be, % of its middle


def width(pred: dict) -> float | None:
    """Half the predicted interval's width, in percent of its midpoint (None for a
    lower bound: it has no width to give)."""
    if pred.get("at_least"):
        return None
    mid = (pred["lo"] + pred["hi"]) / 2
    return round(100 * (pred["hi"] - pred["lo"]) / 2 / mid, 1) if mid else None


def _pct(err: float | None, ref: float) -> float | None:
    return round(100 * err / ref, 1) if ref and err is not None else None


def score(predictions: dict, measured: dict[str, dict]) -> dict:
    """Per held-out case and mode, the prediction beside the measured capacity
    (`measured[case][mode]`: lo, hi (None: at least lo), text), the errors in guests and
    percent, and the baseline's; the totals over the rows both are scored on."""
    rows, totals = [], {"model": 0.0, "baseline": 0.0}
    by_mode: dict[str, dict] = {}
    for c in predictions["cases"]:
        meas = measured.get(c["case"]["name"])
        for mode, pred in sorted(c["modes"].items()) if meas else ():
            m = meas.get(mode)
            if m is None:
                continue
            err, ok = error(pred, m, predictions["top"])
            base = c["baseline"].get(mode)
            berr = error(baseline_point(base), m, predictions["top"])[0] if base else None
            ref = m["lo"] if m["hi"] is None else (m["lo"] + m["hi"]) / 2
            rows.append({"case": c["case"]["name"], "mode": mode,
                         "predicted": _text(pred), "measured": m["text"],
                         "overlap": ok, "error": None if err is None else round(err, 1),
                         "error_pct": _pct(err, ref),
                         "baseline": base and (f"≥ {base['lo']}" if base["hi"] is None
                                               else f"{base['lo']}–{base['hi']}"),
                         "baseline_error": berr, "baseline_error_pct": _pct(berr, ref),
                         "width_pct": width(pred)})
            t = by_mode.setdefault(mode, {"model": 0.0, "baseline": 0.0, "scored": 0})
            if err is not None and berr is not None:  # scored where both can be
                for tot in (totals, t):
                    tot["model"] += abs(err)
                    tot["baseline"] += abs(berr)
                t["scored"] += 1
    return {"digest": predictions["digest"], "rows": rows, "total_abs_error": totals,
            "by_mode": by_mode, "verdict": verdict(rows, by_mode)}


def verdict(rows: list[dict], by_mode: dict[str, dict]) -> dict[str, dict]:
    """Per mode, whether the check passes, and each of its three conditions."""
    out = {}
    for mode, t in sorted(by_mode.items()):
        mine = [r for r in rows if r["mode"] == mode]
        overlaps = sum(1 for r in mine if r["overlap"])
        need = len(mine) - len(mine) // 4
        narrow = all(r["width_pct"] is not None and r["width_pct"] <= WIDTH_PCT
                     for r in mine)
        beats = t["scored"] > 0 and t["model"] < t["baseline"]
        out[mode] = {"overlaps": overlaps, "rows": len(mine), "overlaps_needed": need,
                     "width_pct_max": WIDTH_PCT,
                     "within_width": narrow, "beats_baseline": beats,
                     "passes": overlaps >= need and narrow and beats}
    return out


def _text(pred: dict) -> str:
    text = f"{pred['capacity']} ({pred['lo']}–{pred['hi']})"
    return f"≥ {text}" if pred.get("at_least") else text
