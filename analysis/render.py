"""Render the capacity report as Markdown, self-contained HTML and CSV (no privileges)."""

from __future__ import annotations

import base64
import html
import statistics
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.capacity import capacity_text
from analysis.point import between_loads_s
from analysis.waits import WAIT_HEAD, wait_figures, wait_lines, wait_rows

COLS = [("mode", "mode"), ("guests", "guests"), ("inputs_sent", "sent"), ("inputs_lost", "lost"),
        ("loss_ratio", "loss"), ("delay_mean_us", "delay mean µs"),
        ("delay_mean_ci", "mean 95% CI µs"), ("delay_p95_us", "delay p95 µs"),
        ("delay_p99_us", "p99 µs"), ("delay_p99_ci", "p99 95% CI µs"),
        ("delay_p999_us", "p99.9 µs"), ("delay_min_us", "min µs"), ("delay_max_us", "max µs"),
        ("stamp_error_mean_us", "stamp err mean µs"), ("stamp_error_p95_us", "stamp err p95 µs"),
        ("stamp_error_min_us", "stamp err min µs"), ("clock_uncertainty_us", "clock ± µs"),
        ("rtt_p50_us", "RTT p50 µs"), ("update_jitter_us", "update jitter µs")]


# the second table: the host-mode points' paired guest stamps, and what each point cost
COLS2 = [("mode", "mode"), ("guests", "guests"), ("paired_n", "paired inputs"),
         ("paired_stamp_error_mean_us", "paired guest-stamp err mean µs"),
         ("paired_stamp_error_p95_us", "paired err p95 µs"),
         ("paired_guest_delay_mean_us", "paired guest delay mean µs"),
         ("guest_cores_busy", "guest cores busy"), ("host_core_busy", "host core busy"),
         ("guest_cpu_s", "guests' CPU s"), ("guest_throttled_s", "throttled s"),
         ("softirq_s", "softirq s"), ("zero_stamp_inputs", "inputs sent on with stamp 0"),
         ("ring_drops", "truth records dropped")]
PAIRED_NOTE = ("Paired: in host mode the guests' decoder (UML backend) also logs the guest "
               "kernel's own receive stamp of every input it re-stamps, so the guest-stamp "
               "error is measured on exactly the inputs and load the host stamps saw, beside "
               "the separate guest-mode points above. CPU: each core's busy share during the "
               "load (the guests' cores and the host side's), the guests' CPU seconds and the "
               "time their cgroups were throttled (cpu.json). Host side: inputs that left "
               "with a zero stamp (receive stamps off: host mode would silently be guest "
               "mode) and ground-truth records the stamper's ring dropped; both must be 0.")

CAPTIONS = {"loss": "Inputs lost (never reached the server) per placement and mode",
            "mean_delay": "Mean delay with its 95% CI (clock uncertainty included)",
            "p95_delay": "95th-percentile delay with its distribution-free 95% CI",
            "stamp_error_cdf": "Stamp error at the largest guest count: 0 = the host's stamp",
            "delay_ccdf_guest": "Delay tail with guest stamps, per guest count (log-log)",
            "delay_ccdf_host": "Delay tail with host stamps, per guest count (log-log)",
            "stamp_vs_wait": "Guest-stamp error against the guests' run-queue wait per "
                             "wake-up (schedstat), per guest count"}
TAIL_NOTE = ("p99.9 is given where a point has at least 10,000 delivered inputs ('–': too "
             "few to say); min and max are exact; the p99's CI is distribution-free.")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "–" if v != v else (f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}")
    return str(v)


def _ci(lo: pd.Series, hi: pd.Series) -> list[str]:
    return [f"{a:.1f}–{b:.1f}" if a == a and b == b else "–"
            for a, b in zip(lo, hi, strict=True)]


def table_rows(df: pd.DataFrame) -> list[list[str]]:
    df = df.assign(delay_mean_ci=_ci(df["delay_mean_ci_lo_us"], df["delay_mean_ci_hi_us"]),
                   delay_p99_ci=_ci(df["delay_p99_ci_lo_us"], df["delay_p99_ci_hi_us"]))
    return [[_fmt(r[c]) for c, _ in cols(df)] for _, r in df.iterrows()]


def cols(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The per-point table's columns: with a repeat column where counts were repeated."""
    if "repeat" in df and len(df) and df["repeat"].max() >= 1:
        return [*COLS[:2], ("repeat", "repeat"), *COLS[2:]]
    return COLS


def table2_rows(df: pd.DataFrame) -> list[list[str]]:
    cols = [c for c, _ in COLS2]
    df = df.reindex(columns=list(dict.fromkeys([*df.columns, *cols])))
    def cell(c, v):
        ints = ("paired_n", "zero_stamp_inputs", "ring_drops")
        return str(int(v)) if c in ints and v == v else _fmt(v)
    return [[cell(c, r[c]) for c in cols] for _, r in df.iterrows()]


def setup_lines(env: dict, run: dict) -> list[str]:
    """What a reader must know to weigh the numbers: backend and why, where the client
    ran, what a guest costs, its clock, boot time and memory."""
    out = []
    if run.get("ignored_points"):
        out.append("Not in this run (summary.json does not list them), so not analysed: "
                   + ", ".join(run["ignored_points"]))
    if run.get("backend_reason"):
        out.append(f"Backend: {env.get('backend', '?')} ({run['backend_reason']})")
    if env.get("guest_kernel"):
        out.append(f"Guest kernel: {env['guest_kernel']}, digest "
                   f"{env.get('guest_kernel_digest')}, from {env.get('guest_kernel_source')}, "
                   f"patch {env.get('guest_kernel_patch')}"
                   + (f"; UML mode {env['uml_mode']}" if env.get("uml_mode") else ""))
    if env.get("cost_model"):
        out.append(f"Cost model: {env['cost_model']}")
    out.append(f"CPUs: host side (shim, stamper, client) on {env.get('shim_cpus') or 'any'}, "
               f"guests on {env.get('guest_cpus') or 'any'} ({env.get('placement', '?')} "
               "placement); the client stands for players on other machines")
    if env.get("clock"):
        out.append(f"Guest clock: {env['clock']}")
    boots = run.get("build_s") or {}
    if boots:
        kept = (run.get("spec") or {}).get("reuse_guests")
        out.append(("Guests booted for each count, beside the last count's (s): " if kept
                    else "Guests built and booted per count (s): ")
                   + ", ".join(f"{k}: {v}" for k, v in sorted(boots.items(),
                                                               key=lambda kv: int(kv[0]))))
    gaps = between_loads_s(run.get("points") or [])
    if gaps:
        out.append(f"Between loads (a point's last input to the next one's first): median "
                   f"{statistics.median(gaps):.1f} s, longest {max(gaps):.1f} s "
                   f"({len(gaps)} gaps); the whole run took {run.get('elapsed_s', '?')} s")
    unsynced = [f"{p['mode']} {p['guests']}" + (f" r{p['repeat']}" if p.get("repeat") else "")
                + f" (guests {', '.join(map(str, p['clock_unsynced']))})"
                for p in run.get("points") or [] if p.get("clock_unsynced")]
    if unsynced:
        out.append("Clock sync got no answer from some guests (their guest-clock stamps were "
                   "not moved to the host's clock; host stamps need no offset): "
                   + "; ".join(unsynced))
    if speed := run.get("machine_speed"):
        out.append(f"Machine speed (to compare runs): {speed_text(speed)}")
    if env.get("commit"):
        out.append(f"gamebed commit {env['commit'][:12]}"
                   + (" with local changes" if env.get("dirty") else ""))
    if env.get("pss_mib_per_guest") is not None:
        out.append(f"Memory per guest after boot (PSS of its processes, largest count): "
                   f"{env['pss_mib_per_guest']} MiB; host memory used by the guests: "
                   f"{env.get('host_memory_used_mib')} MiB")
    return out


def speed_text(speed: dict) -> str:
    sd = f" ± {speed['sd']:g} (sd)" if speed.get("sd") is not None else ""
    return (f"the guests used {speed['guest_cpu_ms_per_1000_inputs']:g}{sd} ms of CPU per "
            f"1000 inputs at {speed['at_guests']} guest(s) ({speed['points']} points)")


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
                     _fmt(r.get("value_us", float("nan"))), ci,
                     _fmt(r.get("loss", float("nan"))), lci,
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


SPREAD_HEAD = ["mode", "guests", "repeats", "delay mean µs", "delay p95 µs", "loss",
               "stamp err mean µs", "sent"]


def _spread(x: pd.Series) -> str:
    x = x.astype("float64").dropna()
    if not len(x):
        return "–"
    digits = 4 if x.abs().max() < 1 else 1
    return (f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f} "
            f"({x.min():.{digits}f}–{x.max():.{digits}f})")


def spread_rows(df: pd.DataFrame) -> list[list[str]]:
    """Each figure's spread over a count's repeats: mean ± sd (min–max)."""
    if "repeat" not in df or df["repeat"].max() < 1:
        return []
    rows = []
    for (m, n), g in df.groupby(["mode", "guests"]):
        rows.append([m, str(n), str(len(g)), _spread(g["delay_mean_us"]),
                     _spread(g["delay_p95_us"]), _spread(g["loss_ratio"]),
                     _spread(g["stamp_error_mean_us"]),
                     f"{int(g['inputs_sent'].min())}–{int(g['inputs_sent'].max())}"])
    return rows


FAULT_HEAD = ["mode", "guests", "repeat", "fault", "faulted guest's availability",
              "others' lowest", "point's availability", "lost to the fault", "lost to load",
              "answered again after s", "availability per guest"]
FAULT_NOTE = ("Availability = (inputs sent − inputs no server recorded) / inputs sent "
              "(MVMDP's). Lost to the fault: the faulted guest's inputs sent from one server "
              "tick before the kill until it answered again (or the end); every other lost "
              "input is load's, and only load's losses count against the SLA. Answered "
              "again: from the kill to the first state update the players got from the "
              "guest's new server (– where it was not restarted).")


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


GAME_HEAD = ["mode", "guests", "repeat", "order", "worst player's tick share",
             "worst player's p99 tick gap ms", "players' Hz mean (min)",
             "servers' own Hz", "servers' p99 gap ms", "rate / gap disagreement",
             "inputs/s/player", "send lateness p99 µs", "encode p99 µs",
             "load generator bound", "off the profile"]
GAME_NOTE = ("How each point's game ran, over its load window (first to last input sent). "
             "The players' side: what each player received, by the kernel's receive stamps "
             "on the client's sockets; the worst player's share of the scheduled ticks and "
             "p99 gap between them, and the players' mean (lowest) received rate. The "
             "servers' own: their ticks over the same window on the host's clock (guest "
             "clocks moved by their offsets); disagreement: the largest relative difference, "
             "over the guests, between a server's own rate (p99 gap) and its players'. "
             "order: 0 where the point was its repeat's first on the count's guests. "
             "Encode: an input's header stamp to its hand-over to the kernel (not part of "
             "its delay). 'load generator bound': lateness p99 > 200 µs or host core > 90% "
             "busy; such a point is never counted (docs/workloads.md). 'off the profile': "
             "a rate more than 1% from the profile's (a Poisson schedule's input rate: "
             "beyond 3 standard deviations of its count).")


def _off(df_row: pd.Series, spec: dict) -> str:
    """What of a point's game ran more than 1% off its profile (empty: nothing)."""
    out = []
    tick, want_tick = df_row.get("tick_hz_achieved"), spec.get("tick_hz", 20.0)
    if tick is not None and np.isfinite(tick) and abs(tick / want_tick - 1) > 0.01:
        out.append(f"tick {tick / want_tick - 1:+.1%}")
    rate, want = df_row.get("input_rate_achieved"), spec.get("rate", 20.0)
    if rate is not None and np.isfinite(rate) and want:
        n = want * spec.get("players", 4) * int(df_row["guests"]) * spec.get("duration", 10.0)
        poisson = spec.get("input_process", "poisson") == "poisson"
        tol = max(0.01, 3 / np.sqrt(n)) if poisson and n > 0 else 0.01
        if abs(rate / want - 1) > tol:
            out.append(f"inputs {rate / want - 1:+.1%}")
    return ", ".join(out)


def game_rows(df: pd.DataFrame, spec: dict) -> list[list[str]]:
    """One row per point that recorded how its game ran (load_figures)."""
    if "tick_hz_achieved" not in df or not df["tick_hz_achieved"].notna().any():
        return []
    rows = []
    for _, r in df.sort_values(["guests", "repeat", "mode"]).iterrows():
        bound = r.get("load_bound")
        order = r.get("order")
        dis = (r.get("tick_rate_disagreement"), r.get("tick_gap_disagreement"))
        rows.append([r["mode"], str(r["guests"]), str(int(r.get("repeat", 0))),
                     "–" if order is None or order != order else str(int(order)),
                     _fmt(r.get("ticks_share_worst")), _fmt(r.get("tick_gap_p99_worst_ms")),
                     f"{_fmt(r.get('tick_hz_received_mean'))} "
                     f"({_fmt(r.get('tick_hz_received_min'))})",
                     _fmt(r.get("tick_hz_achieved")), _fmt(r.get("tick_gap_p99_ms")),
                     " / ".join("–" if x is None or x != x else f"{x:.1%}" for x in dis),
                     _fmt(r.get("input_rate_achieved")), _fmt(r.get("send_lateness_p99_us")),
                     _fmt(r.get("encode_p99_us")),
                     "–" if bound is None or bound != bound else ("yes" if bound else "no"),
                     _off(r, spec) or "–"])
    return rows


def fault_rows(df: pd.DataFrame) -> list[list[str]]:
    """One row per fault per point, for runs with --fault."""
    if "faults" not in df:
        return []
    rows = []
    for _, r in df.sort_values(["guests", "repeat", "mode"]).iterrows():
        faults = r["faults"] if isinstance(r["faults"], list) else []
        per = r.get("availability_by_guest")
        per_text = ", ".join(f"{g}: {a:.4f}" for g, a in per.items()) \
            if isinstance(per, dict) else "–"
        for f in faults:
            back = f.get("answered_again_s")
            rows.append([r["mode"], str(r["guests"]), str(int(r.get("repeat", 0))),
                         f["fault"] + ("" if f.get("carried_out", True) else " (not due)"),
                         _fmt(f.get("availability")), _fmt(r.get("availability_others_min")),
                         _fmt(r.get("availability")), str(f.get("lost_fault", 0)),
                         str(int(r["inputs_lost"]) - int(r.get("inputs_lost_fault", 0))),
                         "–" if back is None else f"{back:.3f}", per_text])
    return rows


SHARE_TEXT = {"host": ", on the host's share of the path (from the host's arrival stamp: "
                      "players on a WAN)"}
def wan_rows(df: pd.DataFrame) -> list[list[str]]:
    if "net_delay_mean_us" not in df:
        return []
    rows = []
    def n(r, k):
        v = r.get(k)
        return "–" if v is None or v != v else str(int(v))

    for _, r in df.sort_values(["mode", "guests", "repeat"]).iterrows():
        rows.append([r["mode"], str(r["guests"]), str(int(r.get("repeat", 0))),
                     _fmt(r["net_delay_mean_us"]), _fmt(r["net_delay_p95_us"]),
                     n(r, "inputs_lost_network"), _fmt(r["stamp_error_mean_us"]),
                     _fmt(r["stamp_error_p95_us"]), n(r, "inputs_lost_host"),
                     n(r, "inputs_reordered")])
    return rows


WAN_HEAD = ["mode", "guests", "repeat", "network delay mean µs", "network p95 µs",
            "lost on the network", "host share mean µs", "host share p95 µs",
            "lost after the host stamp", "reordered (stale)"]
WAN_NOTE = ("With --wan the host's arrival stamp splits each input's path: before it the "
            "network's (netem: delay, jitter, loss), after it the host's. Network delay = "
            "host stamp − client send; host share = stamp the server used − host stamp. "
            "Inputs reordered by jitter (the server refuses them as stale) are counted "
            "apart from loss. Capacity judges the host's share only.")


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _html_table(tid: str, head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    return (f'<table id="{tid}"><tr>' + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


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
            out.append(f"{m} stamps: count(s) {', '.join(map(str, c['invalid']))} were "
                       "load-generator-bound in every point (invalid, not counted): this "
                       f"host's load generator cannot measure {profile} there.")
    return out


def search_lines(run: dict) -> list[str]:
    s = (run.get("spec") or {})
    if not s.get("search_max"):
        return []
    tried = list(dict.fromkeys(int(p["guests"]) for p in run.get("points", [])))
    return [f"Counts chosen by the search (--guests auto, up to {s['search_max']}, "
            f"{s.get('repeats', 1)} point(s) per count and mode), in order: "
            + ", ".join(map(str, tried))]


# -- the report: one model (a list of blocks), rendered as Markdown and as HTML ----------

DELAY_NOTE = ("Delay = stamp the server used − when the input left the client (built, "
              "encrypted and handed to the kernel: client_inputs.csv left_ns); stamp error = "
              "stamp the "
              "server used − host arrival stamp. The mean's CI is widened by the clock-sync "
              "uncertainty (clock ±, 0 where guests share the host's clock). Where a guest has "
              "its own clock, its stamps are moved to the host's by the measured offset, so a "
              "guest-stamp error carries that uncertainty too; a stamp cannot precede the "
              "host's arrival, so stamp err min bounds the offset's bias. " + TAIL_NOTE)
PAPER_TITLE = "The paper's figures (a different machine: Xen, 2008; not comparable 1:1)"


BUDGET_HEAD = ["guests", "boot", "settle", "load", "collect", "teardown", "analysis",
               "total"]


def budget_rows(run: dict) -> list[list[str]]:
    """summary.json's budget_s (gamebed/budget.py): per count, then the sweep's."""
    b = run.get("budget_s") or {}
    counts = sorted((b.get("counts") or {}).items(), key=lambda kv: int(kv[0]))
    rows = [[n, *(f"{row.get(k, 0):.1f}" for k in BUDGET_HEAD[1:])] for n, row in counts]
    if rows and b.get("total"):
        rows.append(["all", *(f"{b['total'].get(k, 0):.1f}" for k in BUDGET_HEAD[1:])])
    return rows


def budget_note(run: dict) -> str:
    """What the phases are, and how good the progress bar's estimates were."""
    text = ("boot: the count's guests booted (or stopped); settle: servers resumed, stamper "
            "and shim attached, the guests' CPUs back at their idle baseline; load: clock "
            "sync, play and last updates; collect: CPU read, shim stopped while every guest "
            "writes its records, those records, memory; teardown: the mode's last parts; "
            "analysis: the point's summary.")
    eta = [e for e in run.get("eta") or [] if e.get("error") is not None]
    if eta:
        text += " Estimated time left after each count (actual, error): " + ", ".join(
            f"{e['after_count']} guests {e['remaining_est_s']:.0f} s "
            f"({e['remaining_actual_s']:.0f} s, {e['error']:+.0%})" for e in eta) + "."
    return text


MODEL_HEAD = ["guest cores", "guest stamps", "host stamps", "hosts needed, guest stamps",
              "hosts needed, host stamps"]


def model_blocks(m: dict) -> list[Block]:
    """The capacity model's section: this host and the paper's, predicted from this run
    alone (docs/model.md), and the hosts needed for a player count."""
    from analysis.forecast import PAPER_CAPACITY, hosts_text, interval_text

    if "error" in m:
        return [Block("h2", "Capacity model"), Block("p", f"Not calibrated on this run: "
                                                          f"{m['error']}", id="model")]
    rows = []
    for c in m["cases"]:
        modes, hosts = c["modes"], c["hosts"]
        rows.append([c["case"]["name"], *(interval_text(modes[k]) for k in ("guest", "host")),
                     *(hosts_text(hosts[k]) for k in ("guest", "host"))])
    note = (f"Model {m['digest']} (docs/model.md), calibrated on this run alone: each "
            f"mode's capacity with its 90% bootstrap interval; ≥: no point of the run lost "
            f"inputs, so the loss limit is a lower bound. Hosts needed for "
            f"{m['players_total']} concurrent players of {m['game']['players']} per guest. "
            f"The paper measured {PAPER_CAPACITY['guest']} (guest stamps) and "
            f"{PAPER_CAPACITY['host']} (host stamps) on 3 guest cores under Xen; the table "
            "is not fitted to them (the cost factors below are).")
    out = _table("Capacity model", "model", MODEL_HEAD, rows, note) + [
        Block("p", paper_text(m["paper"]), id="model-paper")]
    if m.get("first_check"):
        out.append(Block("p", first_check_text(m["first_check"]), id="model-check"))
    if m.get("second_check"):
        out.append(Block("p", second_check_text(m["second_check"]), id="model-check2"))
    return out


def second_check_text(c: dict) -> str:
    """The model's second held-out check, as its registered scorer scores it."""
    def mode(name: str, v: dict) -> str:
        t = c["by_mode"][name]
        return (f"{name} stamps {'pass' if v['passes'] else 'do not pass'} ({v['overlaps']} "
                f"of {v['rows']} intervals overlap, {v['overlaps_needed']} needed; every "
                f"interval within ±{v['width_pct_max']:g}%: "
                f"{'yes' if v['within_width'] else 'no'}; total absolute error "
                f"{t['model']:g} guests against the proportional baseline's "
                f"{t['baseline']:g})")
    return ("The model's second held-out check (docs/model.md; predictions and scorer "
            "registered before any held-out run, git tag model-check-2-registered), scored "
            f"by {c['scored_by']}: "
            + "; ".join(mode(n, v) for n, v in sorted(c["verdict"].items())) + ".")


def first_check_text(c: dict) -> str:
    """The model's first held-out check, as registered first, the later reading beside."""
    reg, later = c["registered"], c["later"]
    def total(s: dict) -> str:
        t = s["total_abs_error"]
        return f"model {t['model']:g} guests, proportional baseline {t['baseline']:g}"
    worst = max(reg["rows"], key=lambda r: abs(r["error"]))
    return (f"The model's first held-out check (docs/model.md; 4 cases × 2 modes), scored "
            f"by its registered scorer ({reg['rules']}): total absolute error "
            f"{total(reg)}, so the model lost to the baseline; its largest error, "
            f"{worst['error']:+g} guests, is the {worst['case']} {worst['mode']}-stamp row. "
            f"A later reading, with two rules changed after registration (the baseline "
            f"at its interval's middle; a lower bound beside a lower bound unscored), "
            f"gives {total(later)}; it is shown beside the registered result, not in its "
            f"place.")


def paper_text(p: dict) -> str:
    """How much a guest's cost alone moves the paper setup's prediction."""
    by = p["by_factor"]
    need = p["factor_for_paper"]
    steps = ", ".join(f"{f}×: {v['guest']} / {v['host']}" for f, v in by.items())
    ratios = "; ".join(f"{m} stamps {need[m]:g}×" if need[m] else f"{m} stamps: none up to 10×"
                       for m in ("guest", "host"))
    return (f"The paper's setup with a guest costing a multiple of what a UML guest costs "
            f"here (guest / host stamps): {steps}. The cost factor fitted, one per mode, "
            f"to bring the model down to the paper's figures: {ratios}. These are fits to "
            f"the paper, not predictions of it: they say how much dearer a guest would "
            f"have to be for this model to give the paper's figures, not that the model "
            f"explains them.")


@dataclass(frozen=True)
class Block:
    """One piece of the report: kind is h1, h2, p, note, list, table or images."""

    kind: str
    text: str = ""
    rows: tuple = ()  # list: lines; table: (head, rows); images: (name, png) pairs
    id: str = ""


def _table(title: str, tid: str, head: list[str], rows: list[list[str]],
           note: str = "") -> list[Block]:
    out = [Block("h2", title), Block("table", rows=(head, rows), id=tid)]
    return out + ([Block("note", note)] if note else [])


def document(rep: Report) -> list[Block]:
    """The report's content, once: what both renderings show."""
    sla, env, run, df = rep.sla, rep.env, rep.run, rep.points
    out = [Block("h1", "gamebed capacity report"),
           Block("p", sla_text(sla)),
           Block("p", f"Backend: {env.get('backend', '?')}, placement: "
                      f"{env.get('placement', '?')}."),
           Block("list", rows=tuple(setup_lines(env, run)), id="setup")]
    if env.get("accel_reason"):
        out.append(Block("p", f"Accelerator: {env['accel_reason']}", id="accel"))
    if rep.caps:
        out += _table("Capacity", "capacity", CAPACITY_HEAD, capacity_rows(rep.caps),
                      CAPACITY_NOTE)
    else:  # a mixed host: the mix's capacity under its profiles' own SLAs
        caps = [[f"{m} stamps", capacity_text(c), str(c["first_failure"] or "–"), "–", "–"]
                for m, c in sorted(rep.cap.items())]
        out += _table("Capacity", "capacity", CAPACITY_HEAD, caps, CAPACITY_NOTE)
    if mix := mix_rows(run):
        out += _table("Games on this host", "mix", MIX_HEAD, mix, MIX_NOTE)
    ratios = ratio_lines(rep.caps) if rep.caps else [
        f"Host/guest capacity ratio: {ratio_text(rep.cap)}"]
    out += [*(Block("p", x, id=f"ratio{i}") for i, x in enumerate(ratios)),
            *(Block("p", x) for x in invalid_lines(rep.cap, game_name(rep.spec))),
            *(Block("p", x) for x in search_lines(run))]
    if rep.model is not None:
        out += model_blocks(rep.model)
    out += _table("Counts: why each passed or failed", "verdicts", VERDICT_HEAD,
                  verdict_rows(run), VERDICT_NOTE)
    if (w := wait_figures(df)) is not None:
        out += _table("Why the stamps are late", "waits", WAIT_HEAD, wait_rows(w),
                      " ".join(wait_lines(w)) + " Guest stamps; medians over a count's "
                      "repeats.")
    if spread := spread_rows(df):
        out += _table("Spread over repeats", "spread", SPREAD_HEAD, spread,
                      "Each figure over a count's repeated points: mean ± sd (min–max).")
    if rep.spec.get("wan"):
        out += _table(f"Network and host (--wan {rep.spec['wan']})", "wan", WAN_HEAD,
                      wan_rows(df), WAN_NOTE)
    if game := game_rows(df, rep.spec):
        out += _table("How the game ran", "game", GAME_HEAD, game, GAME_NOTE)
    if faults := fault_rows(df):
        out += _table("Faults and availability", "faults", FAULT_HEAD, faults, FAULT_NOTE)
    if rep.images:
        out += [Block("h2", "Plots"), Block("images", rows=tuple(rep.images.items()))]
    if budget := budget_rows(run):
        out += _table("Where the time went (s)", "budget", BUDGET_HEAD, budget,
                      budget_note(run))
    out += _table("Per point", "points", [h for _, h in cols(df)], table_rows(df), DELAY_NOTE)
    out += _table("Paired stamps and CPU", "paired", [h for _, h in COLS2], table2_rows(df),
                  PAIRED_NOTE)
    out += _table("Spec and environment", "environment", ["", ""],
                  [[str(k), str(v)] for k, v in
                   {**env, **{f"spec.{a}": b for a, b in rep.spec.items()}}.items()])
    out += _table(PAPER_TITLE, "paper", ["", "Tsai 2009, ch. 6"], [list(r) for r in rep.paper])
    return out


@dataclass(frozen=True)
class Report:
    """What a capacity report is made of (analysis/report.py gathers it)."""

    points: pd.DataFrame
    cap: dict
    sla: dict
    spec: dict
    env: dict
    paper: list
    run: dict
    images: dict = field(default_factory=dict)
    model: dict | None = None  # analysis/forecast.py report_model
    # {"players": (verdicts, caps), "paper": (verdicts, caps)}: the run judged both ways
    caps: dict | None = None


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out += [f"# {b.text}", ""]
        elif b.kind == "h2":
            out += [f"## {b.text}", ""]
        elif b.kind in ("p", "note"):
            out += [b.text, ""]
        elif b.kind == "list":
            out += [*(f"- {line}" for line in b.rows), ""]
        elif b.kind == "table":
            out += [*_md_table(*b.rows), ""]
        # images: the HTML page carries the plots
    return "\n".join(out)


HTML_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
              "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
              "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
              "th{background:#f3f3f3}figure{display:inline-block;margin:.5em}"
              "img{max-width:520px}.note{color:#666;font-size:13px}")


def _html_block(b: Block) -> str:
    e = html.escape
    ident = f' id="{b.id}"' if b.id else ""
    if b.kind in ("h1", "h2"):
        return f"<{b.kind}>{e(b.text)}</{b.kind}>"
    if b.kind in ("p", "note"):
        cls = ' class="note"' if b.kind == "note" else ""
        return f"<p{ident}{cls}>{e(b.text)}</p>"
    if b.kind == "list":
        return f"<ul{ident}>" + "".join(f"<li>{e(x)}</li>" for x in b.rows) + "</ul>"
    if b.kind == "table":
        return _html_table(b.id, *b.rows)
    return "".join(f'<figure><img alt="{k}" src="data:image/png;base64,'
                   f'{base64.b64encode(v).decode()}"><figcaption>{e(CAPTIONS.get(k, k))}'
                   "</figcaption></figure>" for k, v in b.rows)


def to_html(blocks: list[Block]) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><title>gamebed report</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n"
            + "\n".join(_html_block(b) for b in blocks) + "\n</body></html>\n")
