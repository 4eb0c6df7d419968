"""The report's capacity sections as text and CSV: the SLA, each mode's capacity and
what failed first, every count's verdict, the games of a mixed host (no privileges)."""

from __future__ import annotations

import pandas as pd

from analysis.capacity import capacity_text
from analysis.pointtables import fmt


def capacity_frame(cap: dict, sla: dict, both: dict | None = None) -> pd.DataFrame:
    """capacity.csv's rows: per mode, the capacity under the run's SLA; with `both`, the
    other terms' capacity beside it (paper_* or players_*) and what failed first."""
    other = None
    if both:
        other = "paper" if sla.get("terms", "players") == "players" else "players"
    rows = []
    for m, c in sorted(cap.items()):
        row = {"mode": m, "capacity": c["capacity"], "capacity_hi": c.get("capacity_hi"),
               "bounded_by_largest_count": c["bounded_by_largest_count"],
               "largest_measured": c["largest_measured"], "first_failure": c["first_failure"],
               "unsure_counts": " ".join(str(n) for n in c.get("unsure", [])),
               "invalid_counts": " ".join(str(n) for n in c.get("invalid", [])),
               "sla_stat": sla["stat"], "sla_delay_ms": sla["delay_ms"],
               "sla_loss": sla["loss"], "sla_share": sla.get("share", "client")}
        if other:
            v = both[sla.get("terms", "players")][0]
            oc = both[other][1].get(m, {})
            row.update({"sla_terms": sla.get("terms", "players"),
                        "failed_first": first_failed(v, m, c).partition(": ")[2],
                        f"{other}_capacity": oc.get("capacity"),
                        f"{other}_capacity_hi": oc.get("capacity_hi"),
                        f"{other}_bounded_by_largest_count": oc.get("bounded_by_largest_count")})
        rows.append(row)
    return pd.DataFrame(rows)

def capacity_csv(cap: dict, sla: dict, mixed: dict | None = None,
                 both: dict | None = None) -> pd.DataFrame:
    """capacity.csv: per mode; for a mixed host, the mix's rows and each profile's
    under its own SLA, with a `profile` column."""
    if not mixed:
        return capacity_frame(cap, sla, both)
    own = {"stat": "each profile's", "delay_ms": None, "loss": None,
           "share": sla.get("share", "client")}
    frames = [capacity_frame(cap, own).assign(profile="mix")]
    for name, (_v, caps) in mixed["profiles"].items():
        frames.append(capacity_frame(caps, mixed["slas"][name]).assign(profile=name))
    return pd.concat(frames, ignore_index=True)

def mix_rows(run: dict) -> list[list[str]]:
    """A mixed host's table: each profile's capacity under its SLA, then the mix's."""
    mixed = run.get("mix")
    if not mixed:
        return []
    rows = []
    for name, (_v, caps) in mixed["profiles"].items():
        s = mixed["slas"][name]
        for m, c in sorted(caps.items()):
            rows.append([name, f"{s['stat']} ≤ {s['delay_ms']:g} ms, loss ≤ {s['loss']:g}",
                         f"{m} stamps", capacity_text(c)])
    for m, c in sorted(mixed["mix"][1].items()):
        rows.append(["the mix", "every profile's own", f"{m} stamps", capacity_text(c)])
    return rows

MIX_HEAD = ["game", "SLA", "mode", "capacity (guests of the mix)"]

MIX_NOTE = ("A mixed host (--mix): each profile's figures over its own guests, judged under "
            "its own SLA, at the count of the whole mix; the mix passes a count when every "
            "profile passes it (analysis/mix.py). The capacity above is the mix's.")

SHARE_TEXT = {"host": ", on the host's share of the path (from the host's arrival stamp: "
                      "players on a WAN)"}

def sla_text(sla: dict) -> str:
    """The SLA in a line: its delay and loss terms, and the tick terms where they apply."""
    terms = sla.get("terms", "players")
    who = {"players": "the players' SLA", "paper": "the paper's terms"}.get(terms, terms)
    text = (f"SLA ({who}): {sla['stat']} delay ≤ "
            f"{sla['delay_ms']:g} ms and loss ≤ {sla['loss']:g}"
            + SHARE_TEXT.get(sla.get("share", "client"), ""))
    if sla.get("terms", "players") == "players":
        tick = sla.get("tick_hz", 20.0)
        text += (f"; every player receives ≥ 99% of the {tick:g} Hz ticks, p99 gap ≤ "
                 f"{1.5e3 / tick:g} ms")
    return text

def ratio_text(cap: dict) -> str:
    """Host/guest capacity: the ratio of the lower ends, and its range over the intervals;
    "≥" where host stamps were not bounded, with the reason."""
    h, g = cap.get("host"), cap.get("guest")
    if not h or not g:
        return "needs both modes"
    if g["capacity"] == 0:
        return "undefined (guest stamps meet the SLA at no measured count)"
    if g["bounded_by_largest_count"] and h["bounded_by_largest_count"]:
        return "undefined (both modes met the SLA at every count measured)"
    r = h["capacity"] / g["capacity"]
    g_hi, h_hi = g.get("capacity_hi"), h.get("capacity_hi")
    if h["bounded_by_largest_count"]:
        return (f"≥ {r:.2f}× (a lower bound: no measured count failed with host stamps, "
                f"so their capacity is at least {h['capacity']})")
    text = f"{r:.2f}×"
    if g_hi and g_hi > g["capacity"] or (h_hi and h_hi > h["capacity"]):
        lo = h["capacity"] / (g_hi or g["capacity"])
        hi = (h_hi or h["capacity"]) / g["capacity"]
        text += f" (over the capacity intervals: {lo:.2f}–{hi:.2f}×)"
    return text

def ratio_lines(caps: dict[str, tuple]) -> list[str]:
    """Both headline ratios, each labelled with the question it answers."""
    return [f"Host/guest capacity ratio, paper's terms (what host stamps buy): "
            f"{ratio_text(caps['paper'][1])}",
            f"Host/guest capacity ratio, players' SLA (how many fit): "
            f"{ratio_text(caps['players'][1])}"]

VERDICT_HEAD = ["tried", "guests", "mode", "points", "delay stat µs", "95% CI µs", "loss",
                "loss 95% CI", "worst tick share (95% CI)", "worst p99 tick gap ms (95% CI)",
                "verdict", "failed", "why"]

VERDICT_NOTE = ("A count passes when every term of the SLA holds with 95% confidence, fails "
                "when any is broken with 95% confidence, and is unsure otherwise (one point: "
                "the point's CIs, which treat it as a time series: batch means of about 2 s "
                "for the mean delay, the loss and the tick share, sectioning "
                "for p95, p99 and the tick gap; repeated points: Student's t over the "
                "repeats). 'failed': the terms that failed at that count. "
                "Capacity is the largest count that passed below the first that failed; the "
                "interval runs to the count before that failure (counts in between were not "
                "measured or were unsure).  A point whose load generator was the bottleneck "
                "(client p99 send lateness > 200 µs, or the host side's CPU > 90% busy) is "
                "neither: a count with only such points is invalid and never counted.")

def verdict_rows(run: dict) -> list[list[str]]:
    """Why each count passed or failed, in the order the run measured the counts."""
    v = run.get("verdicts")
    if v is None or not len(v):
        return []
    order: dict[int, int] = {}
    for p in run.get("points", []):
        order.setdefault(int(p["guests"]), len(order) + 1)
    v = v.assign(tried=[order.get(int(n), 0) for n in v["guests"]])
    rows = []
    for _, r in v.sort_values(["tried", "guests", "mode"]).iterrows():
        ci = (f"{r['ci_lo_us']:.1f}–{r['ci_hi_us']:.1f}" if r.get("k", 0) else "–")
        lci = (f"{r['loss_ci_lo']:.4f}–{r['loss_ci_hi']:.4f}" if r.get("k", 0) else "–")
        rows.append([str(r["tried"] or "–"), str(r["guests"]), r["mode"], str(r["k"]),
                     fmt(r.get("value_us", float("nan"))), ci,
                     fmt(r.get("loss", float("nan"))), lci,
                     _with_ci(r, "ticks_share", "ticks_share_ci_lo", "ticks_share_ci_hi", 3),
                     _with_ci(r, "tick_gap_ms", "tick_gap_ci_lo_ms", "tick_gap_ci_hi_ms", 1),
                     r["verdict"], _text(r.get("failed_terms")) or "–", r["reason"]])
    return rows

def _with_ci(r: pd.Series, col: str, lo: str, hi: str, digits: int) -> str:
    v = r.get(col)
    if v is None or v != v:
        return "–"
    return f"{v:.{digits}f} ({r[lo]:.{digits}f}–{r[hi]:.{digits}f})"

def _text(v) -> str:
    return v if isinstance(v, str) else ""

CAPACITY_HEAD = ["mode", "capacity, players' SLA", "first failing count: what failed",
                 "capacity, paper's terms", "first failing count: what failed"]

CAPACITY_NOTE = ("The players' SLA (the default; --sla-terms): a count passes only if its "
                 "inputs meet the delay and loss terms and, over the load window, the worst "
                 "player of every server received at least 99% of the scheduled ticks with "
                 "a p99 gap between them of at most 1.5 tick periods (analysis/ticks.py). "
                 "The paper's terms: delay and loss alone (Tsai 2009): with host stamps an "
                 "input's stamp is on time even when its server is starved, so these say "
                 "what host stamps buy, not how many guests fit.")

def first_failed(v: pd.DataFrame | None, mode: str, c: dict) -> str:
    """The first failing count of a mode and the terms that failed there."""
    n = c.get("first_failure")
    if n is None:
        return "–"
    if v is None or not len(v) or "failed_terms" not in v:
        return str(n)
    row = v[(v["mode"] == mode) & (v["guests"] == n)]
    what = row["failed_terms"].iloc[0] if len(row) else ""
    return f"{n}: {what}" if isinstance(what, str) and what else str(n)

def capacity_rows(caps: dict[str, tuple]) -> list[list[str]]:
    """One row per mode: its capacity under the players' SLA and under the paper's."""
    pv, pc = caps["players"]
    av, ac = caps["paper"]
    return [[f"{m} stamps", capacity_text(pc[m]), first_failed(pv, m, pc[m]),
             capacity_text(ac[m]) if m in ac else "–",
             first_failed(av, m, ac[m]) if m in ac else "–"] for m in sorted(pc)]

def game_name(spec: dict) -> str:
    """The run's game: its profile, or its mix."""
    if spec.get("mix"):
        return "the mix " + ", ".join(spec["mix"])
    return spec.get("profile") or "this game"

def invalid_lines(cap: dict, profile: str) -> list[str]:
    """Where the load generator, not the host, set the pace: said, never counted."""
    out = []
    for m, c in sorted(cap.items()):
        if c.get("invalid"):
            why = c.get("invalid_why") or {}
            head = "every point load-generator-bound: "
            causes = "; ".join(f"{profile} at {n}: {why[n].removeprefix(head)}" for n in why)
            out.append(f"{m} stamps: count(s) {', '.join(map(str, c['invalid']))} were "
                       "load-generator-bound in every point (invalid, not counted): "
                       + (causes or f"this host's load generator cannot measure {profile} "
                                    "there") + ".")
    return out

def search_lines(run: dict) -> list[str]:
    s = (run.get("spec") or {})
    if not s.get("search_max"):
        return []
    tried = list(dict.fromkeys(int(p["guests"]) for p in run.get("points", [])))
    return [f"Counts chosen by the search (--guests auto, up to {s['search_max']}, "
            f"{s.get('repeats', 1)} point(s) per count and mode), in order: "
            + ", ".join(map(str, tried))]
