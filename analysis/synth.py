"""Synthetic results directories with known answers (no privileges).

Writes the same raw files as `gamebed run` (docs/records.md) from numpy arrays,
so the analyzer can be tested against figures fixed in advance and timed on
millions of records without the testbed.  Used by tests/unit and
benchmarks/bench_analyzer.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from fpsmodel.records import (
    CLIENT_INPUTS,
    CLIENT_UPDATES,
    CLOCK_SYNC,
    SERVER_INPUTS,
    SHIM_INPUTS,
)

T0 = 1_700_000_000_000_000_000  # an arbitrary CLOCK_REALTIME origin (ns)


@dataclass(frozen=True)
class PointTruth:
    """What one synthetic point was built to contain."""

    delay_us: np.ndarray  # per delivered input, client send → server stamp
    host_delay_us: np.ndarray  # client send → host arrival stamp
    lost: int


def _write(path: Path, cols: dict[str, np.ndarray]) -> None:
    pacsv.write_csv(pa.table(cols), path)


def _keys(n_guests: int, players: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n inputs spread round-robin over guests × players, seq counting per player."""
    idx = np.arange(n, dtype=np.int64)
    slot = idx % (n_guests * players)
    return slot // players, slot % players, idx // (n_guests * players)


@dataclass(frozen=True)
class SynthPoint:
    """One point to write: `delay_us`, `host_delay_us` and `lost_mask` have length n."""

    mode: str
    n_guests: int
    delay_us: np.ndarray
    host_delay_us: np.ndarray
    lost_mask: np.ndarray
    repeat: int = 0


def write_point(pdir: Path, pt: SynthPoint, players: int = 2,
                env: dict | None = None) -> None:
    """One point's raw files."""
    pdir.mkdir(parents=True, exist_ok=True)
    mode, n_guests, n, repeat = pt.mode, pt.n_guests, len(pt.delay_us), pt.repeat
    delay_us, host_delay_us, lost_mask = pt.delay_us, pt.host_delay_us, pt.lost_mask
    g, p, s = _keys(n_guests, players, n)
    # spread over 10 s (a point's default), one input every 50 µs at the least: the tick
    # terms need a window of seconds to tell 99% of the ticks
    step = max(50_000, 10_000_000_000 // max(n, 1))
    send = T0 + np.arange(n, dtype=np.int64) * step
    host = send + np.round(host_delay_us * 1e3).astype(np.int64)
    kernel = send + np.round(delay_us * 1e3).astype(np.int64)
    keep = ~lost_mask
    _write(pdir / CLIENT_INPUTS, {"guest": g, "player": p, "seq": s, "sched_ns": send,
                                  "send_ns": send, "lateness_ns": np.zeros(n, np.int64),
                                  "left_ns": send})
    _write(pdir / SHIM_INPUTS, {"guest": g[keep], "player": p[keep], "seq": s[keep],
                                "host_ns": host[keep], "forward_ns": np.zeros(keep.sum(),
                                                                              np.int64)})
    k = int(keep.sum())
    _write(pdir / SERVER_INPUTS, {
        "guest": g[keep], "player": p[keep], "seq": s[keep], "client_send_ns": send[keep],
        "kernel_ns": kernel[keep], "hw_ns": np.zeros(k, np.int64),
        "app_ns": kernel[keep] + 5_000, "size": np.full(k, 296, np.int64),
        "verdict": np.full(k, "ok")})
    # every player gets every tick of the load window, evenly (20 Hz; the tick terms
    # pass): a synthetic point's delays and losses are what it is made to vary
    n_ticks = int((send[-1] - send[0]) // 50_000_000) + 2
    gp = np.unique(np.stack([g, p], axis=1), axis=0)
    ticks = np.tile(np.arange(n_ticks, dtype=np.int64), len(gp))
    recv = send[0] + 25_000_000 * (len(send) > 1) + ticks * 50_000_000 - 50_000_000
    _write(pdir / CLIENT_UPDATES, {
        "guest": np.repeat(gp[:, 0], n_ticks), "player": np.repeat(gp[:, 1], n_ticks),
        "tick": ticks, "recv_ns": recv, "server_send_ns": recv - 20_000,
        "echo_seq": ticks, "echo_kernel_ns": T0 + ticks, "echo_app_ns": T0 + ticks,
        "rtt_ns": np.full(len(ticks), 200_000, np.int64), "arrive_ns": recv})
    _write(pdir / CLOCK_SYNC, {
        "guest": np.arange(n_guests, dtype=np.int64), "sample": np.zeros(n_guests, np.int64),
        **{t: np.full(n_guests, T0, np.int64) for t in ("t1", "t2", "t3", "t4")},
        "offset_ns": np.zeros(n_guests, np.int64), "delay_ns": np.full(n_guests, 2_000, np.int64),
        "chosen": np.ones(n_guests, np.int64)})
    meta = {"mode": mode, "guests": n_guests, "repeat": repeat, "spec": {"name": "synthetic"},
            "environment": {"backend": "synthetic", "placement": "restricted",
                            "shared_clock": True, **(env or {})}}
    (pdir / "point.json").write_text(json.dumps(meta))


Shape = Callable[[str, int, np.random.Generator, int], tuple[np.ndarray, np.ndarray, float]]


@dataclass(frozen=True)
class SynthRun:
    """A synthetic run's shape: modes × counts × repeats points of n inputs each."""

    modes: Sequence[str] = ("guest", "host")
    guest_counts: Sequence[int] = (1, 2, 4, 8)
    inputs_per_point: int = 1000
    seed: int = 1
    repeats: int = 1


def write_run(out: Path, shape: Shape, run: SynthRun = SynthRun(),
              progress: Callable[[str], None] | None = None
              ) -> dict[tuple[str, int], PointTruth]:
    """A whole synthetic run.  `shape(mode, guests, rng, n)` returns (delay_us,
    host_delay_us, loss_ratio) for that point; losses are the first ⌊n·ratio⌋ inputs
    after a random shuffle.  With `run.repeats` K each point is drawn K times (directories
    as `--repeat`'s).  Returns the truth per point (repeat 0) for checking."""
    rng = np.random.default_rng(run.seed)
    truth = {}
    for mode in run.modes:
        for gcount in run.guest_counts:
            for r in range(run.repeats):
                n = run.inputs_per_point
                delay, host_delay, loss = shape(mode, gcount, rng, n)
                lost = np.zeros(n, bool)
                lost[rng.permutation(n)[: int(n * loss)]] = True
                name = f"{mode}-g{gcount:03d}" + (f"-r{r}" if r else "")
                write_point(out / "points" / name,
                            SynthPoint(mode, gcount, delay, host_delay, lost, r))
                if r == 0:
                    truth[(mode, gcount)] = PointTruth(delay[~lost], host_delay[~lost],
                                                       int(lost.sum()))
                if progress:
                    progress(f"wrote {name} ({n} inputs)")
    (out / "summary.json").write_text(json.dumps({"spec": {"name": "synthetic"},
                                                  "environment": {"kernel": "synthetic"}}))
    return truth


# -- runs for the capacity model (analysis/model.py): only the files it reads ------------

@dataclass(frozen=True)
class CostTruth:
    """A synthetic host's true costs and scheduling: the capacity model's own form, so a
    run drawn from it has a capacity known in advance (`true_capacity`)."""

    d0: float = 0.028  # cores per guest at full tick ...
    d1: float = 0.0002  # ... + this per guest on the host
    c_tick: float = 0.0011  # cores·s per tick a server skips
    x_star: float = 1.0  # loss once N·d_min/C passes this
    y0: float = 110.0  # µs: mean delay with guest stamps, idle host
    b: float = 40.0  # µs: times the queueing term ρ^alpha/(1 − ρ) ...
    alpha: float = 2.0
    v: float = 3.0  # ... times 1 + v·(1 − k)/k beside a competing process
    tick_hz: float = 20.0
    players: int = 4
    rate_hz: float = 20.0
    host_delay_us: float = 25.0
    sla_delay_us: float = 1000.0

    def demand(self, n: int) -> float:
        return self.d0 + self.d1 * n

    def floor(self, n: int) -> float:
        return max(self.demand(n) - self.c_tick * self.tick_hz, 0.05 * self.demand(n))

    def breaks(self, mode: str, n: int, supply: float, k: float) -> bool:
        lost = n * self.floor(n) / supply > self.x_star
        if mode == "host":
            return lost
        rho = n * self.demand(n) / supply
        return lost or rho >= 1 or self.delay(rho, k) > self.sla_delay_us

    def delay(self, rho: float, k: float) -> float:
        if rho >= 1:
            return 5000.0 + 1000.0 * rho
        return self.y0 + self.b * rho ** self.alpha / (1 - rho) * (1 + self.v * (1 - k) / k)

    def true_capacity(self, mode: str, supply: float, k: float, top: int = 250) -> int:
        for n in range(1, top + 1):
            if self.breaks(mode, n, supply, k):
                return n - 1
        return top


def write_model_run(out: Path, truth: CostTruth, counts: Sequence[int], k: float = 1.0,
                    repeats: int = 3, seed: int = 1) -> Path:
    """A finished run of `counts` × both modes × `repeats` on one guest CPU with share k
    (a --guest-cpus k budget below 1): summary.json and each point's point.json, cpu.json
    and guests.json, with ±2% noise on cost and delay."""
    rng = np.random.default_rng(seed)
    points = []
    for mode in ("guest", "host"):
        for n in counts:
            for r in range(repeats):
                name = f"{mode}-g{n:03d}" + (f"-r{r}" if r else "")
                points.append(_model_point(out, name, truth, (mode, n, r), k, rng))
    spec = {"profile": "synthetic", "tick_hz": truth.tick_hz, "players": truth.players,
            "rate": truth.rate_hz, "sla_delay_ms": truth.sla_delay_us / 1e3,
            "sla_loss": 0.01, "sla_stat": "mean", "placement": "restricted",
            "guest_cpus": k if k < 1 else None, "mix": []}
    (out / "summary.json").write_text(json.dumps({"spec": spec, "points": points}))
    return out


def _model_point(out: Path, name: str, t: CostTruth, at: tuple[str, int, int], k: float,
                 rng: np.random.Generator) -> dict:
    mode, n, repeat = at
    noise = lambda: float(rng.normal(1.0, 0.02))  # noqa: E731
    want = n * t.demand(n) * noise()
    used = min(want, k)  # cores the guests got
    tick = t.tick_hz if want <= k else max(1.0, t.tick_hz - (want - k) / (n * t.c_tick))
    lost = n * t.floor(n) / k > t.x_star
    sent = int(n * t.players * t.rate_hz * 10)
    loss = 0.05 + 0.1 * rng.random() if lost else 0.0
    delay = (t.delay(n * t.demand(n) / k, k) * noise() if mode == "guest"
             else t.host_delay_us * noise())
    pdir = out / "points" / name
    pdir.mkdir(parents=True, exist_ok=True)
    budget = ({"guest_cpus": k, "by": "weight", "cpus": [1], "per_cpu": k,
               "share": round(k * noise(), 4), "cores_used": used} if k < 1 else None)
    cpu = {"window_s": 10.0, "guests": {str(i): {"cpu_s": used * 10 / n} for i in range(n)},
           **({"budget": budget} if budget else {})}
    (pdir / "cpu.json").write_text(json.dumps(cpu))
    (pdir / "guests.json").write_text(json.dumps({str(i): {"pss_mib": 55.0}
                                                  for i in range(n)}))
    (pdir / "point.json").write_text(json.dumps({"mode": mode, "guests": n, "repeat": repeat,
                                                 "environment": {"guest_cpus": "1",
                                                                 "placement": "restricted"}}))
    return {"mode": mode, "guests": n, "repeat": repeat, "dir": f"points/{name}",
            "guest_cpu_s": used * 10, "budget_s": {"load": 10.0}, "tick_hz_achieved": tick,
            "delay_mean_us": delay, "loss_ratio": loss, "inputs_sent": sent,
            "inputs_lost": int(loss * sent), "load_bound": False,
            "host_core_busy": 0.05 + 2e-5 * n * t.players * t.rate_hz,
            "input_rate_achieved": t.rate_hz}
