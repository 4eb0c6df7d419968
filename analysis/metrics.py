"""Per-point summaries computed from raw records (no privileges).

`play_summary` is the smoke test's summary.json; `point_summary` is one
(mode, guests) entry of a sweep's summary.json.  Both read only files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.records import (
    add_delays,
    interarrival_cv,
    join_inputs,
    load_json,
    load_point,
    update_jitter_us,
    update_loss,
    update_rates,
)


def _us(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x) / 1e3, 3)


def _pct(s: pd.Series, q: float) -> float:
    s = s.dropna()
    return float(np.percentile(s.to_numpy(dtype="float64"), q)) if len(s) else float("nan")


def _dropped(point_dir: Path) -> dict[str, int]:
    total: dict[str, int] = {}
    for f in sorted(Path(point_dir).glob("**/server_summary.json")):
        for k, v in (load_json(f) or {}).get("dropped", {}).items():
            total[k] = total.get(k, 0) + int(v)
    return total


def play_summary(point_dir: Path, client: dict, dispatch: str) -> dict:
    """The fields `gamebed play` promises in summary.json."""
    rec = load_point(point_dir)
    srv, upd = rec["server"], rec["updates"]
    ok = srv[srv["verdict"] == "ok"]
    dur = (client["end_ns"] - client["start_ns"]) / 1e9
    per_player = ok.groupby(["guest", "player"]).size() / dur
    rtt = upd["rtt_ns"].dropna().astype("float64")
    rates = update_rates(upd)
    sync0 = next(iter(client.get("clock_sync", {}).values()), {})
    return {
        "inputs_sent": int(len(rec["client"])),
        "inputs_received": int(len(ok)),
        "inputs_lost": int(len(rec["client"]) - len(ok)),
        "input_payload_sizes": sorted(int(x) for x in srv["size"].dropna().unique()),
        "input_rate_per_player": round(float(per_player.mean()), 3) if len(ok) else 0.0,
        "input_rate_each_player": [round(float(x), 3) for x in per_player],
        "interarrival_cv": round(interarrival_cv(srv), 4),
        "updates_per_second": round(float(rates.mean()), 3) if len(rates) else 0.0,
        "update_jitter_us": _us(update_jitter_us(upd) * 1e3),
        "update_loss_ratio": round(update_loss(upd), 6) if len(upd) else None,
        "rtt_p50_us": _us(_pct(rtt, 50)),
        "rtt_p99_us": _us(_pct(rtt, 99)),
        "schedule_lateness_p50_us": _us(_pct(rec["client"]["lateness_ns"], 50)),
        "schedule_lateness_p99_us": _us(_pct(rec["client"]["lateness_ns"], 99)),
        "dropped": _dropped(point_dir),
        "clock_offset_ns": sync0.get("offset_ns"),
        "clock_uncertainty_ns": sync0.get("uncertainty_ns"),
        "dispatch": dispatch,
        "duration_s": round(dur, 3),
    }


def delay_stats(j: pd.DataFrame) -> dict:
    """Delay and stamp-error figures of one point from a joined, delayed table."""
    d = j[j["delivered"]]
    err = d["stamp_error_ns"].dropna()
    exact = d["stamp_error_ns"] == 0  # integer difference: NaN (no host stamp) ≠ 0
    return {
        "inputs_sent": int(len(j)),
        "inputs_delivered": int(len(d)),
        "inputs_lost": int(len(j) - len(d)),
        "loss_ratio": round(float(1 - len(d) / len(j)), 6) if len(j) else None,
        "delay_mean_us": _us(d["delay_ns"].mean()),
        "delay_p50_us": _us(_pct(d["delay_ns"], 50)),
        "delay_p95_us": _us(_pct(d["delay_ns"], 95)),
        "delay_p99_us": _us(_pct(d["delay_ns"], 99)),
        "app_delay_mean_us": _us(d["app_delay_ns"].mean()),
        "stamp_error_mean_us": _us(err.mean()) if len(err) else None,
        "stamp_error_p95_us": _us(_pct(err, 95)) if len(err) else None,
        "app_stamp_error_mean_us": _us(d["app_stamp_error_ns"].mean()),
        "host_stamp_exact_fraction": round(float(exact.mean()), 6) if len(d) else None,
        "clock_uncertainty_us": _us(d["stamp_uncertainty_ns"].max()),
    }


def point_summary(point_dir: Path) -> dict:
    """One (mode, guests) entry: delay, stamp error, loss, drops, round trip."""
    rec = load_point(point_dir, slim=True)
    meta = load_json(Path(point_dir) / "point.json", {}) or {}
    shared = bool(meta.get("environment", {}).get("shared_clock", False))
    j = add_delays(join_inputs(rec, shared_clock=shared))
    out = delay_stats(j)
    rtt = rec["updates"]["rtt_ns"].dropna().astype("float64")
    out["rtt_p50_us"] = _us(_pct(rtt, 50))
    out["rtt_p99_us"] = _us(_pct(rtt, 99))
    out["update_jitter_us"] = _us(update_jitter_us(rec["updates"]) * 1e3)
    out["dropped"] = _dropped(point_dir)
    return out
