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
    send = T0 + np.arange(n, dtype=np.int64) * 50_000  # one input every 50 µs
    host = send + np.round(host_delay_us * 1e3).astype(np.int64)
    kernel = send + np.round(delay_us * 1e3).astype(np.int64)
    keep = ~lost_mask
    _write(pdir / CLIENT_INPUTS, {"guest": g, "player": p, "seq": s, "sched_ns": send,
                                  "send_ns": send, "lateness_ns": np.zeros(n, np.int64)})
    _write(pdir / SHIM_INPUTS, {"guest": g[keep], "player": p[keep], "seq": s[keep],
                                "host_ns": host[keep], "forward_ns": np.zeros(keep.sum(),
                                                                              np.int64)})
    k = int(keep.sum())
    _write(pdir / SERVER_INPUTS, {
        "guest": g[keep], "player": p[keep], "seq": s[keep], "client_send_ns": send[keep],
        "kernel_ns": kernel[keep], "hw_ns": np.zeros(k, np.int64),
        "app_ns": kernel[keep] + 5_000, "size": np.full(k, 296, np.int64),
        "verdict": np.full(k, "ok")})
    ticks = np.arange(100, dtype=np.int64)
    _write(pdir / CLIENT_UPDATES, {
        "guest": np.zeros(100, np.int64), "player": np.zeros(100, np.int64), "tick": ticks,
        "recv_ns": T0 + ticks * 50_000_000, "server_send_ns": T0 + ticks * 50_000_000 - 20_000,
        "echo_seq": ticks, "echo_kernel_ns": T0 + ticks, "echo_app_ns": T0 + ticks,
        "rtt_ns": np.full(100, 200_000, np.int64)})
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
