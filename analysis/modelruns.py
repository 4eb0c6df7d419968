"""What the capacity model reads of finished runs (no privileges; reads only files):
each point as an observation (its guests' CPU use and supply, delay, loss and tick
verdict), the share a --guest-cpus budget gave, and the game the runs played with the
host side's CPU per input.  analysis/model.py fits and predicts on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.model import Game, Obs, line_fit, tick_verdict
from analysis.records import load_json


def _budget(pdir: Path) -> dict:
    return (load_json(pdir / "cpu.json", {}) or {}).get("budget") or {}


def run_share(points: list[dict], results: Path) -> tuple[float, int, str]:
    """(k, c, how): the share of each guest CPU a run's guests could have, as recorded.
    A budget's: the median `share` (weight) or use (quota) at the points where the
    guests took what they were given; else the asked share; no budget: 1."""
    recs = [_budget(results / p["dir"]) for p in points if p.get("dir")]
    recs = [r for r in recs if r]
    if not recs:
        return 1.0, 0, "no budget"
    c, asked = len(recs[0]["cpus"]), recs[0]["per_cpu"]
    full = [r for r in recs if (r.get("cores_used") or 0) >= 0.9 * asked * c]
    if recs[0]["by"] == "weight":
        got = [r["share"] for r in full if r.get("share") is not None]
    else:
        got = [r["cores_used"] / c for r in full]
    if not got:
        return asked, c, f"asked {asked:g} (no point used it all)"
    return float(np.median(got)), c, f"recorded at {len(got)} point(s)"


def _guest_cpus(env: dict, spec: dict) -> int:
    text = str(env.get("guest_cpus") or "")
    listed = [x for x in text.split(",") if x.strip().isdigit()]
    if listed:
        return len(listed)
    return int(env.get("cpus_usable") or env.get("cpus") or 1)


def observations(results: Path, game: Game, run: int = 0) -> tuple[list[Obs], dict]:
    """Every point of a finished run (summary.json, each point's point.json and cpu.json),
    and the run's spec and recorded share.  Where the host side shared the guests' CPUs
    (dynamic placement) its cores, by the game's host-side line, are not the guests'."""
    results = Path(results)
    summary = load_json(results / "summary.json")
    if not summary or not summary.get("points"):
        raise FileNotFoundError(f"{results}: no summary.json with points; give a finished "
                                "`gamebed run` directory")
    spec = summary.get("spec", {})
    k, c_budget, how = run_share(summary["points"], results)
    out = []
    for p in summary["points"]:
        pmeta = load_json(results / p["dir"] / "point.json", {}) or {}
        env = pmeta.get("environment", {})
        c = c_budget or _guest_cpus(env, spec)
        used = p.get("guest_cpu_s", 0.0) / max(p.get("budget_s", {}).get("load", 0.0) or
                                               _window(results / p["dir"]), 1e-9)
        supply = c * k
        if env.get("placement") == "dynamic":
            supply = max(0.1, c - game.host_cores(int(p["guests"])))
        out.append(Obs(run, p["mode"], int(p["guests"]), c, k, supply, used,
                       float(p.get("tick_hz_achieved") or 0.0),
                       float(p.get("delay_mean_us") or np.nan),
                       float(p.get("loss_ratio") or 0.0), bool(p.get("load_bound")),
                       tick_verdict(p, game.tick_hz)))
    return out, {"spec": spec, "share": k, "share_how": how, "dir": str(results)}


def _window(pdir: Path) -> float:
    return float((load_json(pdir / "cpu.json", {}) or {}).get("window_s") or 0.0)


def game_of(results: list[Path]) -> Game:
    """The game the runs played, its SLA, the most memory a guest took, and the host
    side's CPU per input (restricted points: its own core's busy share)."""
    summary = load_json(Path(results[0]) / "summary.json")
    s = summary["spec"]
    pss, xs, ys = [], [], []
    for r in results:
        for p in load_json(Path(r) / "summary.json")["points"]:
            g = load_json(Path(r) / p["dir"] / "guests.json", {}) or {}
            pss += [v["pss_mib"] for v in g.values() if v.get("pss_mib")]
            if p.get("host_core_busy") is not None and p.get("input_rate_achieved"):
                xs.append(p["input_rate_achieved"] * p["guests"] * s["players"])
                ys.append(p["host_core_busy"])
    a, b = line_fit(np.array(xs), np.array(ys)) if len(xs) >= 2 else (0.0, 0.0)
    return Game(s.get("profile", "?"), float(s["tick_hz"]), int(s["players"]),
                float(s["rate"]), float(s["sla_delay_ms"]) * 1000.0, float(s["sla_loss"]),
                float(max(pss)) if pss else 64.0, (a, b))
