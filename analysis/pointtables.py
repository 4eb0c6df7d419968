"""The report's per-point tables: the setup, each point's figures, their spread over
repeats, how the game ran, faults, the --wan split and where the time went (no
privileges)."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd

from analysis.load import between_loads_s

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

TAIL_NOTE = ("p99.9 is given where a point has at least 10,000 delivered inputs ('–': too "
             "few to say); min and max are exact; the p99's CI is distribution-free.")

def fmt(v) -> str:
    if isinstance(v, float):
        return "–" if v != v else (f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}")
    return str(v)

def _ci(lo: pd.Series, hi: pd.Series) -> list[str]:
    return [f"{a:.1f}–{b:.1f}" if a == a and b == b else "–"
            for a, b in zip(lo, hi, strict=True)]

def table_rows(df: pd.DataFrame) -> list[list[str]]:
    df = df.assign(delay_mean_ci=_ci(df["delay_mean_ci_lo_us"], df["delay_mean_ci_hi_us"]),
                   delay_p99_ci=_ci(df["delay_p99_ci_lo_us"], df["delay_p99_ci_hi_us"]))
    return [[fmt(r[c]) for c, _ in cols(df)] for _, r in df.iterrows()]

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
        return str(int(v)) if c in ints and v == v else fmt(v)
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
    if env.get("players_on"):  # hostside/players.py
        out.append(f"CPUs: host side (shim, stamper) on {env.get('shim_cpus') or 'any'}, "
                   f"guests on {env.get('guest_cpus') or 'any'} ({env.get('placement', '?')}"
                   f" placement); the players on other machines ({env['players_on']}, over "
                   "ssh), their times moved onto this host's clock (player_clock.csv)")
    else:
        out.append(f"CPUs: host side (shim, stamper, client) on {env.get('shim_cpus') or 'any'}"
                   f", guests on {env.get('guest_cpus') or 'any'} ({env.get('placement', '?')}"
                   " placement); the client stands for players on other machines")
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
                     fmt(r.get("ticks_share_worst")), fmt(r.get("tick_gap_p99_worst_ms")),
                     f"{fmt(r.get('tick_hz_received_mean'))} "
                     f"({fmt(r.get('tick_hz_received_min'))})",
                     fmt(r.get("tick_hz_achieved")), fmt(r.get("tick_gap_p99_ms")),
                     " / ".join("–" if x is None or x != x else f"{x:.1%}" for x in dis),
                     fmt(r.get("input_rate_achieved")), fmt(r.get("send_lateness_p99_us")),
                     fmt(r.get("encode_p99_us")),
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
                         fmt(f.get("availability")), fmt(r.get("availability_others_min")),
                         fmt(r.get("availability")), str(f.get("lost_fault", 0)),
                         str(int(r["inputs_lost"]) - int(r.get("inputs_lost_fault", 0))),
                         "–" if back is None else f"{back:.3f}", per_text])
    return rows

def wan_rows(df: pd.DataFrame) -> list[list[str]]:
    if "net_delay_mean_us" not in df:
        return []
    rows = []
    def n(r, k):
        v = r.get(k)
        return "–" if v is None or v != v else str(int(v))

    for _, r in df.sort_values(["mode", "guests", "repeat"]).iterrows():
        rows.append([r["mode"], str(r["guests"]), str(int(r.get("repeat", 0))),
                     fmt(r["net_delay_mean_us"]), fmt(r["net_delay_p95_us"]),
                     n(r, "inputs_lost_network"), fmt(r["stamp_error_mean_us"]),
                     fmt(r["stamp_error_p95_us"]), n(r, "inputs_lost_host"),
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


MACHINE_HEAD = ["mode", "guests", "repeat", "tries", "steal s (most of a CPU)",
                "throttled s", "client stalls: causes, longest, left out",
                "load-generator-bound: why"]
MACHINE_NOTE = ("What the machine took from each point's load (analysis/stalls.py): the "
                "most any CPU lost to the hypervisor's steal, the cgroups around gamebed's "
                "throttled time, and the client's stalls (runs of inputs sent more than "
                "200 µs late) by cause: steal, throttled, held (a probe above the client "
                "was late too), injected (--stalls), host busy, unknown. The machine's "
                "stalls are left out of the point's figures with a guard as long as each; "
                "a point with more than 20% left out, or with an unexplained stall of "
                "20 ms or more, is measured again (tries).")


def machine_rows(df: pd.DataFrame) -> list[list[str]]:
    """One row per point that recorded what the machine took (machine.csv)."""
    if "stall_causes" not in df or not df.get("steal_s", pd.Series(dtype=float)).notna().any():
        return []
    rows = []
    for _, r in df.sort_values(["guests", "repeat", "mode"]).iterrows():
        tries = r.get("tries")
        rows.append([r["mode"], str(r["guests"]), str(int(r.get("repeat", 0))),
                     "1" if tries is None or tries != tries else str(int(tries)),
                     fmt(r.get("steal_s")), fmt(r.get("throttled_s")),
                     str(r.get("stall_causes") or "–"),
                     str(r.get("load_bound_cause") or "–") if r.get("load_bound") else "–"])
    return rows

