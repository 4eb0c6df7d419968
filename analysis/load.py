"""What a point's load cost and whether it ran as its game says (no privileges; reads
only a point's files): the guests' and the host side's CPU, the guests' run-queue
wait, the client's punctuality and encode time, the host side's counts, and, over a
run, the time between loads and the machine's speed.  analysis/point.py puts them in
a point's row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.records import load_json, read_csv
from analysis.stalls import EXCLUDED_LIMIT, HOST_BUSY_LIMIT, STALL_MIN_MS, StallFigures
from analysis.ticks import TickFigures
from fpsmodel.records import CLIENT_INPUT_FIELDS, CLIENT_INPUTS


def pct(s, q: float) -> float:
    """The q-th percentile of a series' values (NaN where it has none)."""
    s = s.dropna()
    return float(np.percentile(s.to_numpy(dtype="float64"), q)) if len(s) else float("nan")


def cpu_figures(pdir: Path, env: dict) -> dict:
    """What the load cost (cpu.json): the guests' cores' busy share, the host side's
    core, and the guests' CPU seconds and throttled time."""
    use = load_json(Path(pdir) / "cpu.json")
    if not use:
        return {}
    def busy(cpus) -> float:
        vals = [use["cores"].get(f"cpu{c}", {}).get("busy_fraction") for c in cpus]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else np.nan
    def cpus(key) -> list[int]:
        text = env.get(key) or ""
        return [int(x) for x in str(text).split(",") if x.strip().isdigit()]
    guests = use.get("guests", {}).values()
    return {"guest_cores_busy": busy(cpus("guest_cpus")),
            "host_core_busy": busy(cpus("shim_cpus")),
            "guest_cpu_s": float(sum(g.get("cpu_s", 0.0) for g in guests)),
            "guest_throttled_s": float(sum(g.get("throttled_s", 0.0) for g in guests)),
            "softirq_s": float(sum(c.get("softirq", 0.0) for c in use["cores"].values())),
            **run_queue_figures(guests)}

def run_queue_figures(guests) -> dict:
    """The guests' run-queue wait over the load (cpu.json `rq_*`, gamebed/schedwait.py):
    the total, the number of times a guest thread got a CPU, and the mean wait per
    wake-up over all guests' threads (NaN where the backend records none)."""
    have = [g for g in guests if "rq_waits" in g]
    if not have:
        return {"rq_wait_s": np.nan, "rq_waits": np.nan, "rq_wait_per_wake_us": np.nan}
    wait, n = sum(g["rq_wait_s"] for g in have), sum(g["rq_waits"] for g in have)
    return {"rq_wait_s": float(wait), "rq_waits": int(n),
            "rq_wait_per_wake_us": 1e6 * wait / n if n else np.nan}

def client_figures(pdir: Path) -> dict:
    """From client_summary.json: the time from an input's header stamp to its hand-over
    to the kernel (build and encryption: not part of the delay), and the guests whose
    clock the sync could not reach (their guest-clock stamps are not moved)."""
    c = load_json(Path(pdir) / "client_summary.json", {}) or {}
    enc = c.get("encode") or {}
    unsynced = sorted(int(g) for g, v in (c.get("clock_sync") or {}).items()
                      if v.get("offset_ns") is None)
    return {"encode_p50_us": enc.get("p50_us"), "encode_p99_us": enc.get("p99_us"),
            "clock_unsynced": unsynced}

LATENESS_LIMIT_US = 200.0  # the client's p99 send lateness beyond which it is the bottleneck

# HOST_BUSY_LIMIT (analysis/stalls.py): the host side's core share beyond which it is
def load_figures(pdir: Path, meta: dict, host_busy: float | None,
                 stalls: StallFigures | None = None, ticks: TickFigures | None = None
                 ) -> dict:
    """Did the game run as its profile says, and was the load generator the bottleneck?
    The servers' achieved tick rate (their mean) and largest p99 gap between ticks, the
    players' achieved input rate, the client's p99 send lateness, and `load_bound`: a
    point whose client was late by more than LATENESS_LIMIT_US at p99 or whose host core
    was more than HOST_BUSY_LIMIT busy measured the client as much as the guests: the
    judge counts it neither as a pass nor as a fail (analysis/capacity.py verdicts)."""
    pdir = Path(pdir)
    servers = [load_json(f, {}) or {} for f in sorted(pdir.glob("**/server_summary.json"))]
    rates = [t["tick_hz_achieved"] for t in servers if t.get("tick_hz_achieved")]
    gaps = [t["tick_gap_p99_ms"] for t in servers if t.get("tick_gap_p99_ms") is not None]
    late = read_csv(pdir / CLIENT_INPUTS, CLIENT_INPUT_FIELDS,
                    ("guest", "send_ns", "lateness_ns"))
    sent = len(late)
    if stalls is not None and stalls.windows:  # what the machine took is left out
        late = late[stalls.keep(late["send_ns"].fillna(0).to_numpy("int64"))]
    by_shard = shard_lateness_p99_us(late, pdir)
    late_p99 = max(by_shard) if by_shard else np.nan
    from analysis.mix import players_by_guest

    spec = meta.get("spec") or {}
    # player-seconds: in a mix each guest's players are its profile's
    want = sum(players_by_guest(meta).values()) * spec.get("duration", 0)
    # a point is load-generator-bound when any shard of its client is (one, unsharded)
    busy = host_busy is not None and np.isfinite(host_busy) and host_busy > HOST_BUSY_LIMIT
    bound = bool((np.isfinite(late_p99) and late_p99 > LATENESS_LIMIT_US) or busy)
    cause, retry = bound_cause(bound, busy, stalls)
    if ticks is not None and ticks.server_tick_hz_mean is not None:
        # the servers' own tick rate and gap over the load only (analysis/ticks.py), where
        # their tick times were recorded; else over their whole session
        rates, gaps = [ticks.server_tick_hz_mean], [ticks.server_tick_gap_p99_max_ms]
    return {"tick_hz_achieved": float(np.mean(rates)) if rates else np.nan,
            "tick_gap_p99_ms": max(gaps) if gaps else np.nan,
            "input_rate_achieved": sent / want if want else np.nan,
            "send_lateness_p99_us": late_p99, "load_bound": bound or cause == "stolen",
            "load_bound_cause": cause, "retry": retry,
            **({"send_lateness_p99_by_shard_us": by_shard} if len(by_shard) > 1 else {})}


def bound_cause(bound: bool, busy: bool, stalls: StallFigures | None
                ) -> tuple[str | None, bool]:
    """Why a point is load-generator-bound (None: it is not), and whether the sweep
    measures it again (analysis/stalls.py).  Measured again: a point with more of its
    load left out than EXCLUDED_LIMIT (`stolen`), and one with a stall of STALL_MIN_MS or
    more that no record explains, whether or not it made the point late (`unknown
    stall` where it did): its load was not the game's.  `host busy` and `client late`
    (late with no stall the machine explains) are the load generator's own limit."""
    unexplained = stalls is not None and any(s.cause == "unknown" and s.ms >= STALL_MIN_MS
                                             for s in stalls.stalls)
    if stalls is not None and stalls.excluded_share > EXCLUDED_LIMIT:
        return "stolen", True
    if not bound:
        return None, unexplained
    if unexplained:
        return "unknown stall", True
    return ("host busy" if busy else "client late"), False


def shard_lateness_p99_us(late: pd.DataFrame, pdir: Path) -> list[float]:
    """Each client shard's p99 send lateness (µs) over its own guests' inputs
    (client_summary.json `shards`, hostside/shards.py); one figure for an unsharded
    client; [] without inputs."""
    shards = (load_json(Path(pdir) / "client_summary.json", {}) or {}).get("shards") or []
    blocks = [range(*s["guests"]) for s in shards] or [None]
    out = []
    for guests in blocks:
        sel = late if guests is None else late[late["guest"].isin(guests)]
        v = sel["lateness_ns"].dropna().astype("float64")
        if len(v):
            out.append(pct(v, 99) / 1e3)
    return out

def host_side_counts(pdir: Path) -> dict:
    """From shim_summary.json: inputs that left the host with a zero stamp (receive
    stamps were off) and ground-truth records the stamper's full ring dropped; both
    must be 0 (docs/records.md)."""
    shim = load_json(Path(pdir) / "shim_summary.json", {}) or {}
    if not shim:
        return {}
    return {"zero_stamp_inputs": int(shim.get("zero_stamp_inputs", 0)),
            "ring_drops": int(shim.get("ring_drops", 0))}

def between_loads_s(points: list[dict]) -> list[float]:
    """Seconds from one point's last input to the next point's first, in the order the
    points were measured (summary.json's): what a sweep spends between its loads."""
    times = [(p["load_first_send_ns"], p["load_last_send_ns"]) for p in points
             if p.get("load_first_send_ns") and p.get("load_last_send_ns")]
    return [round((b[0] - a[1]) / 1e9, 2) for a, b in zip(times, times[1:], strict=False)]

def machine_speed(points: list[dict]) -> dict | None:
    """How fast this machine ran the guests, for comparing runs: the guests' CPU ms per
    1000 inputs at the run's lowest count (its points in both modes, repeats pooled),
    where the guests had CPU to spare and the figure is the cost of the work alone.
    `report A B` weighs capacity differences against it (analysis/compare.py)."""
    ok = [p for p in points if p.get("guest_cpu_s") and p.get("inputs_sent")]
    if not ok:
        return None
    low = min(int(p["guests"]) for p in ok)
    at = [p for p in ok if int(p["guests"]) == low]
    per = [1e6 * p["guest_cpu_s"] / p["inputs_sent"] for p in at]
    mean = float(np.mean(per))
    sd = float(np.std(per, ddof=1)) if len(per) > 1 else None
    steal = [float(p["steal_s"]) for p in points if p.get("steal_s") is not None]
    secs = sum((p.get("load_last_send_ns") or 0) - (p.get("load_first_send_ns") or 0)
               for p in points if p.get("steal_s") is not None) / 1e9
    return {"guest_cpu_ms_per_1000_inputs": round(mean, 3),
            "sd": None if sd is None else round(sd, 3), "at_guests": low, "points": len(at),
            # what the hypervisor took: the most any CPU lost to steal, summed over the
            # points' loads, and as a share of their time (None: a run that did not record it)
            "steal_s": round(sum(steal), 3) if steal else None,
            "steal_share": round(sum(steal) / secs, 5) if steal and secs > 0 else None,
            "what": "the guests' CPU ms per 1000 inputs at the lowest count"}
