"""The one per-point analysis: load, join, statistics (no privileges; reads only files).

`analyze_point` turns one point directory's raw records (docs/records.md) into
every figure of that point: the report's table row, the sweep's progress line
and summary.json's entry (`point_summary`, a rounded selection of the same row)
all come from it.  `play_summary` is `gamebed play`'s summary.json.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.availability import fault_figures
from analysis.figures import (
    DELAY,
    STAMP_ERROR,
    Figures,
    InputFigures,
    Paired,
    PathSplit,
    PointFigures,
    Spread,
)
from analysis.load import (
    LATENESS_LIMIT_US,
    client_figures,
    cpu_figures,
    host_side_counts,
    load_figures,
    pct,
)
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
from analysis.stalls import stall_figures
from analysis.stats import (
    Stat,
    batch_ids,
    batch_ratio_ci,
    ccdf_points,
    describe,
    describe_series,
)
from analysis.ticks import TickFigures
from fpsmodel.records import write_json


def _us(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x) / 1e3, 3)


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
        "rtt_p50_us": _us(pct(rtt, 50)),
        "rtt_p99_us": _us(pct(rtt, 99)),
        "schedule_lateness_p50_us": _us(pct(rec["client"]["lateness_ns"], 50)),
        "schedule_lateness_p99_us": _us(pct(rec["client"]["lateness_ns"], 99)),
        "dropped": _dropped(point_dir),
        "clock_offset_ns": sync0.get("offset_ns"),
        "clock_uncertainty_ns": sync0.get("uncertainty_ns"),
        "dispatch": dispatch,
        "duration_s": round(dur, 3),
        **_ticks(point_dir),
    }


def _ticks(point_dir: Path) -> dict:
    """The server's achieved tick rate and p99 gap between ticks (server_summary.json)."""
    s = load_json(Path(point_dir) / "server_summary.json", {}) or {}
    return {"tick_hz_achieved": s.get("tick_hz_achieved"),
            "tick_gap_p99_ms": s.get("tick_gap_p99_ms")}


def _mean(s: pd.Series) -> float:
    return float(s.astype("float64").mean()) if len(s) else float("nan")


def input_figures(j: pd.DataFrame, updates: pd.DataFrame | None = None
                  ) -> tuple[InputFigures, np.ndarray]:
    """What a point's joined, delayed inputs (and its updates) alone give, and the stamp
    errors (µs) for the CDF.  p99.9 is NaN where the point has fewer than MIN_N_P999
    delivered inputs (too few to say)."""
    d = j[j["delivered"]]
    # a point is a time series: intervals by batch means and sectioning, in the
    # order the inputs were sent (analysis/stats.py)
    sent = d["send_ns"].to_numpy(dtype="float64", na_value=np.nan)
    delay = describe_series(d["delay_ns"].to_numpy() / 1e3, sent)
    err = describe_series(d["stamp_error_ns"].to_numpy() / 1e3, sent)
    # the clock-sync uncertainty of the stamps used (0 for host-clock stamps)
    unc = float(np.nan_to_num(d["stamp_uncertainty_ns"].max())) / 1e3 if len(d) else 0.0
    exact = d["stamp_error_ns"] == 0  # integer difference: NaN (no host stamp) ≠ 0
    rtt = (updates["rtt_ns"].dropna().to_numpy(dtype="float64") / 1e3
           if updates is not None else np.array([]))
    loss = Stat((len(j) - len(d)) / len(j) if len(j) else np.nan)
    if len(j) >= 2:  # the loss ratio's CI by batch means over the send times
        lost = (~j["delivered"].to_numpy(bool)).astype("float64")
        loss = Stat(loss.value, *batch_ratio_ci(
            lost, batch_ids(j["send_ns"].to_numpy(dtype="float64", na_value=np.nan))))
    return InputFigures(
        len(j), len(d), len(j) - len(d), loss, unc,
        float(np.percentile(rtt, 50)) if len(rtt) else np.nan,
        float(np.percentile(rtt, 99)) if len(rtt) else np.nan,
        update_jitter_us(updates) if updates is not None else np.nan,
        _mean(d["app_delay_ns"]) / 1e3, _mean(d["app_stamp_error_ns"]) / 1e3,
        float(exact.mean()) if len(d) else np.nan, delay.get("batches"),
        # clock uncertainty (the largest of any guest's: the bars are the point's) widens
        # every delay statistic's bar, not the stamp error's
        Spread.of(delay, widen=unc), Spread.of(err), path_split(j),
    ), d["stamp_error_ns"].dropna().to_numpy() / 1e3


def path_split(j: pd.DataFrame) -> PathSplit | None:
    """Each input's path split at the host's arrival stamp (what --wan needs): the
    network's share (host stamp − client send; inputs the host never saw are the
    network's loss) and the host's (after the stamp: inputs the host saw that no server
    accepted; reordered ones, refused as stale, apart).  None without a host side."""
    if "host_ns" not in j or not j["host_ns"].notna().any():
        return None
    seen = j["host_ns"].notna().to_numpy(bool)
    left = "left_ns" if "left_ns" in j else "send_ns"
    net = describe((j.loc[seen, "host_ns"] - j.loc[seen, left]).astype("float64")
                   .to_numpy() / 1e3)
    gone = ~j["delivered"].to_numpy(bool)
    stale = j["stale"].to_numpy(bool) if "stale" in j else np.zeros(len(j), bool)
    return PathSplit(int(seen.sum()), int((~seen).sum()), int((seen & gone & ~stale).sum()),
                     int(stale.sum()), *(net.get(k, np.nan)
                                         for k in ("mean", "p50", "p95", "p99")))


def paired(pdir: Path, j: pd.DataFrame) -> Paired | None:
    """Both stamps of the same inputs (host mode, UML guests: docs/records.md pairs.csv).

    For each input whose host stamp the guest's decoder delivered, the decoder also
    logged the guest kernel's own receive stamp, which it overwrote.  Moved to the
    host's clock by the guest's measured offset, that stamp gives the guest-stamp
    error and delay on exactly the load the host stamps saw."""
    frames = []
    for f in sorted(Path(pdir).glob("guest*/pairs.csv")):
        df = pd.read_csv(f, dtype="int64")
        if len(df):
            frames.append(df.assign(guest=int(f.parent.name.removeprefix("guest"))))
    if not frames:
        return None
    pairs = pd.concat(frames, ignore_index=True).drop_duplicates(["guest", "host_ns"])
    d = j[(j["delivered"] & (j["server_ns"] == j["host_ns"])).fillna(False)]
    d = pd.DataFrame({"guest": d["guest"].astype("int64"),
                      "host_ns": d["host_ns"].astype("int64"),
                      "send_ns": d["send_ns"].astype("int64"),
                      "offset": d["clock_offset_ns"].fillna(0).astype("int64")})
    m = d.merge(pairs, on=["guest", "host_ns"], how="inner")
    m = m[m["guest_kernel_ns"] > 0]  # 0: the guest kernel had taken no stamp
    stamp = m["guest_kernel_ns"] - m["offset"]
    err = describe(((stamp - m["host_ns"]).astype("float64") / 1e3).to_numpy())
    delay = describe(((stamp - m["send_ns"]).astype("float64") / 1e3).to_numpy())
    return Paired(len(m), len(m) / len(d) if len(d) else np.nan,
                  *(err.get(k, np.nan) for k in ("mean", "p50", "p95", "p99")),
                  delay.get("mean", np.nan), delay.get("p95", np.nan))


def analyze_point(pdir: Path) -> tuple[dict, dict]:
    """One point's row (mode, count, setup and every figure: `point_figures`' record,
    flat under the stored names) and its distributions."""
    fig, dists = point_figures(pdir)
    return fig.row(), dists


def point_figures(pdir: Path) -> tuple[PointFigures, dict]:
    """One point's record and its distributions: `stamp_error` (every delivered
    input's, µs) and `delay_ccdf` (x µs, P(delay > x))."""
    meta = load_json(Path(pdir) / "point.json", {}) or {}
    env = meta.get("environment", {})
    rec = load_point(pdir, slim=True)
    # inputs the client never sent (its core stopped first): the load generator's, not
    # the guests' loss; their lateness counts (analysis/load.py)
    sent = rec["client"]["send_ns"].notna()
    unsent, rec["client"] = int((~sent).sum()), rec["client"][sent]
    j = join_inputs(rec, shared_clock=bool(env.get("shared_clock")),
                    clock_drifts=bool(env.get("clock_drifts", True)))
    updates = rec["updates"]
    # what the machine took (analysis/stalls.py): its stalls' windows are left out
    stalls = stall_figures(pdir, env, LATENESS_LIMIT_US)
    if stalls.windows:
        j = j[stalls.keep(j["send_ns"].fillna(0).to_numpy("int64"))]
    del rec  # the per-input tables are in `j` now; free them before the statistics
    jd = add_delays(j)
    fig, errors = guest_figures(PointInputs(pdir, meta, jd, updates, stalls.windows))
    profiles = None
    if (meta.get("spec") or {}).get("mix"):  # a mixed host: each profile's own figures
        profiles = profile_entries(PointInputs(pdir, meta, jd, updates, stalls.windows))
    tail = ccdf_points(j.loc[j["delivered"], "delay_ns"].to_numpy(dtype="float64") / 1e3)
    cpu = cpu_figures(pdir, env)
    machine = {**cpu, **host_side_counts(pdir), **stalls.row(), "inputs_unsent": unsent,
               **load_figures(pdir, meta, cpu.get("host_core_busy"), stalls, fig.ticks)}
    return PointFigures(meta.get("mode"), meta.get("guests"), env.get("placement", "?"),
                        env.get("backend", "?"), fig, profiles, paired(pdir, j), machine,
                        _dropped(pdir), client_figures(pdir)), \
        {"stamp_error": errors, "delay_ccdf": tail}


@dataclass(frozen=True)
class PointInputs:
    """A point's joined, delayed inputs and its updates, with where they came from."""

    pdir: Path
    meta: dict
    jd: pd.DataFrame
    updates: pd.DataFrame
    cut: tuple = ()  # the windows a stall left out (analysis/stalls.py)


def guest_figures(i: PointInputs, guests: list[int] | None = None
                  ) -> tuple[Figures, np.ndarray]:
    """The figures of `guests` (all where None) and their stamp errors: a point's record
    and each mixed profile's are this one record over fewer guests, so a loss or a
    ratio derived here reaches both alike."""
    jd, updates = i.jd, i.updates
    if guests is not None:
        jd = jd[jd["guest"].isin(guests)]
        updates = updates[updates["guest"].isin(guests)]
    inputs, errors = input_figures(jd, updates)
    faults = fault_figures(i.pdir, jd, updates, guests)
    host_loss = None
    if inputs.path is not None and inputs.path.host_logged:
        # after the host stamp: the host's loss (--wan's SLA), a fault's losses out
        host_loss = (max(0, inputs.path.lost_host - faults.inputs_lost_fault)
                     / inputs.path.host_logged)
    window, ticks = None, None
    if len(jd):  # when the load ran: its first and last input's send time
        window = (int(jd["send_ns"].min()), int(jd["send_ns"].max()))
        ticks = tick_figures(i, guests)
    return Figures(inputs, faults, host_loss, window, ticks), errors


def tick_figures(i: PointInputs, guests: list[int] | None = None) -> TickFigures | None:
    """The players' tick figures over the load window (analysis/ticks.py), of `guests`
    (default all); None where no update was recorded."""
    from analysis import ticks
    from analysis.mix import tick_hz_by_guest

    j = i.jd
    window = (int(j["send_ns"].min()), int(j["send_ns"].max()))
    rates = tick_hz_by_guest(i.meta)
    u = i.updates if guests is None else i.updates[i.updates["guest"].isin(guests)]
    jj = j if guests is None else j[j["guest"].isin(guests)]
    # a player joins when the host side has its first input (a server can send it
    # updates from then; with --wan that is the WAN's delay after it was sent)
    at = jj["host_ns"].fillna(jj["send_ns"]) if "host_ns" in jj else jj["send_ns"]
    first = at.groupby([jj["guest"], jj["player"]]).min()
    joined = {(int(g), int(p)): int(t) for (g, p), t in first.items()}
    pl = ticks.players(u, joined, window[1], rates, i.cut)
    offsets = {int(g): float(o) for g, o in j.groupby("guest")["clock_offset_ns"].first()
               .fillna(0).items()}
    walls = ticks.server_walls(i.pdir)
    if guests is not None:
        walls = {g: t for g, t in walls.items() if g in guests}
    hz = rates[guests[0]] if guests else next(iter(rates.values()), 20.0)
    check = ticks.cross_check(u, joined, window[1], walls, offsets)
    return ticks.figures(pl, check, window, hz)


def profile_entries(i: PointInputs) -> dict:
    """A mixed point's summary entry per profile: the point's figures over that
    profile's guests only (analysis/mix.py judges each under its own SLA)."""
    from analysis.mix import players_by_guest, profile_guests

    out = {}
    players = players_by_guest(i.meta)
    duration = float((i.meta.get("spec") or {}).get("duration", 0))
    for name, guests in profile_guests(i.meta["spec"], int(i.meta["guests"])).items():
        fig, _ = guest_figures(i, guests)
        want = sum(players[g] for g in guests) * duration
        fig = replace(fig, input_rate_achieved=(fig.inputs.sent / want if want
                                                else np.nan))
        out[name] = {"guest_indices": guests, **summary_entry(fig.row())}
    return out


# the figures of a point's row that summary.json keeps, by the row's own names
# (docs/records.md); the loss ratios, availability and CPU shares are added, rounded
SUMMARY_FIELDS = (
    "inputs_sent", "inputs_delivered", "inputs_lost",
    *DELAY.values(),
    "app_delay_mean_us", "stamp_error_mean_us", "stamp_error_p95_us",
    "app_stamp_error_mean_us", "clock_uncertainty_us", "rtt_p50_us", "rtt_p99_us",
    "update_jitter_us", "paired_stamp_error_mean_us", "paired_stamp_error_p95_us",
    "guest_cpu_s", "guest_throttled_s", "zero_stamp_inputs", "ring_drops",
    # the guests' run-queue wait over the load (cpu.json rq_*: gamebed/schedwait.py)
    "rq_wait_s", "rq_waits", "rq_wait_per_wake_us",
    # the path split at the host stamp (--wan): the network's share and the host's
    "inputs_host_logged", "inputs_lost_network", "inputs_lost_host", "inputs_reordered",
    "net_delay_mean_us", "net_delay_p50_us", "net_delay_p95_us", "net_delay_p99_us",
    # the CIs a search judges a count by (analysis/capacity.py)
    *DELAY.intervals(), *STAMP_ERROR.intervals(),
    "stamp_error_p99_us",
    # when the load ran (CLOCK_REALTIME ns): the time between loads (between_loads_s)
    "load_first_send_ns", "load_last_send_ns",
    # did the game run as its profile says, and was the client the bottleneck (load_figures)
    "tick_hz_achieved", "tick_gap_p99_ms", "input_rate_achieved", "send_lateness_p99_us",
    # what the players received of the ticks over the load window (analysis/ticks.py)
    "tick_hz", "window_s", "players",
    "tick_gap_p99_worst_ms", "tick_gap_p99_ci_lo_ms", "tick_gap_p99_ci_hi_ms",
    "tick_hz_received_mean", "tick_hz_received_min", "server_tick_hz_mean",
    "server_tick_gap_p99_max_ms", "delay_batches", "encode_p50_us", "encode_p99_us",
    # what the machine took over the load, and the client's stalls (analysis/stalls.py)
    "stalls", "stall_ms_max", "stalls_unknown", "steal_s", "throttled_s", "stalls_injected",
    "inputs_unsent",
)
RATIO_FIELDS = ("ticks_share_worst", "ticks_share_ci_lo", "ticks_share_ci_hi",
                "update_loss_worst", "tick_rate_disagreement", "tick_gap_disagreement",
                "loss_ci_lo", "loss_ci_hi", "excluded_share")


def _round(v, digits: int):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    return round(float(v), digits) if isinstance(v, float) else int(v)


def summary_entry(row: dict) -> dict:
    """summary.json's fields, taken from a point's row (µs to 3 decimals, ratios to 6)."""
    out = {k: _round(row.get(k), 3) for k in SUMMARY_FIELDS}
    out["loss_ratio"] = _round(row.get("loss_ratio"), 6)
    for k in RATIO_FIELDS:
        out[k] = _round(row.get(k), 6)
    out["availability"] = _round(row.get("availability"), 6)
    out["host_loss_ratio"] = _round(row.get("host_loss_ratio"), 6)
    out["inputs_lost_fault"] = _round(row.get("inputs_lost_fault"), 0)
    if row.get("faults"):  # only points of a --fault run carry these
        for k in ("faults", "availability_by_guest", "availability_others_min",
                  "fault_error"):
            if k in row:
                out[k] = row[k]
    out["host_stamp_exact_fraction"] = _round(row.get("host_stamp_exact_fraction"), 6)
    if row.get("load_bound") is not None:
        out["load_bound"] = bool(row["load_bound"])
        out["retry"] = bool(row.get("retry"))
    for k in ("load_bound_cause", "stall_causes", "steal_s_by_cpu"):
        if row.get(k) is not None:
            out[k] = row[k]
    if isinstance(row.get("profiles"), dict):
        out["profiles"] = row["profiles"]
    if row.get("clock_unsynced"):
        out["clock_unsynced"] = row["clock_unsynced"]
    for k in ("guest_cores_busy", "host_core_busy", "paired_coverage"):
        out[k] = _round(row.get(k), 4)
    return out


FIGURES = "figures.json"  # a point's row, unrounded, stored once: what every verdict reads


def _plain(v):
    """A row's value as JSON holds it: numpy's scalars as Python's (NaN stays NaN)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def point_summary(point_dir: Path) -> dict:
    """One (mode, guests) entry of a sweep's summary.json; the point's whole row,
    unrounded, goes to its figures.json, which the search and the report both judge."""
    row, _ = analyze_point(point_dir)
    write_json(Path(point_dir) / FIGURES, _plain(row))
    return {**summary_entry(row), "dropped": row["dropped"]}


def stored_figures(out: Path, points: list[dict]) -> list[dict]:
    """The rows the judge reads for these summary.json entries: each point's stored
    figures.json with its place in the run (repeat, order, tries), or, for a point of an
    older run that has none, its summary entry."""
    rows = []
    for p in points:
        f = Path(out) / str(p.get("dir", "")) / FIGURES
        row = load_json(f) if p.get("dir") and f.exists() else None
        rows.append(p if row is None else {**row, **{k: p[k] for k in
                                                      ("repeat", "order", "tries") if k in p}})
    return rows


def summarizer(capture: bool = False):
    """The sweep's per-point summary (gamebed/run.py Layers.summarize); with `capture`
    each point's uplink frames are written as capture.pcapng too."""
    if not capture:
        return point_summary

    def summarize(point_dir: Path) -> dict:
        from analysis.pcap import write_pcapng

        return {**point_summary(point_dir), "capture": write_pcapng(point_dir)}
    return summarize


