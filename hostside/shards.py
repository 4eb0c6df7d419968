"""The players split over several client processes, shards (root: the client's namespace).

Each shard owns a block of the point's guests (its servers, in order) and runs pinned
to its own CPU of the host side (`--client-cpus`; the host side's CPUs where none are
given).  Every shard syncs its own servers' clocks, then waits at a start gate: it
prints `fpsmodel client: synced` (fpsmodel/cli.py GATE_READY), which the host side reads
from its log, and starts its load at the instant the host side sends it on stdin, the
same for all, so the shards' loads are one load.  Their records then merge into the
point's usual files (client_inputs.csv, client_updates.csv, clock_sync.csv: the same
columns, rows shard by shard) and client_summary.json, whose `shards` keeps each one's
own summary with its guests and CPU: the analysis judges each shard's punctuality on
its own (analysis/load.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fpsmodel.cli import GATE_READY
from fpsmodel.records import CLIENT_INPUTS, CLIENT_UPDATES, CLOCK_SYNC, write_json
from gamebed.proc import How
from gamebed.resources import ManagedProcess

GO_AHEAD_S = 0.05  # the start is this far after the last shard is ready: every shard's
# `go` line reaches it before then
RECORDS = (CLIENT_INPUTS, CLIENT_UPDATES, CLOCK_SYNC)


@dataclass(frozen=True)
class Shard:
    """One client process: the point's guests [first, first + count), on `cpu`."""

    index: int
    first: int
    count: int
    cpu: str | None  # a taskset CPU list; None: not pinned

    @property
    def guests(self) -> range:
        return range(self.first, self.first + self.count)


def plan(n_guests: int, shards: int, cpus: Sequence[str] | None) -> list[Shard]:
    """`shards` client processes (at most one per guest) over `n_guests`, in blocks as
    even as they go, shard i on cpus[i % len(cpus)]."""
    k = max(1, min(shards, n_guests))
    base, extra = divmod(n_guests, k)
    out, first = [], 0
    for i in range(k):
        n = base + (i < extra)
        out.append(Shard(i, first, n, cpus[i % len(cpus)] if cpus else None))
        first += n
    return out


def shard_dir(point_dir: Path, shard: Shard) -> Path:
    """Where a shard writes its records until they are merged."""
    return point_dir / f"shard{shard.index}"


def run_sharded(ctx, point, shards: Sequence[Shard], cmds: Sequence[list],
                timeout_extra: float, hooks: tuple | None = None) -> dict | None:
    """Every shard's client (`cmds`, one per shard) through the start gate to its end,
    then their records merged into the point's (None in a dry run).  `hooks` (players on
    other machines, hostside/players.py): (started(start_ns), after each shard's end
    fetch(shard), before the merge ready()), each called as its moment comes."""
    started, fetch, ready = hooks or (None, None, None)
    logs = [point.dir / f"client-shard{sh.index}.log" for sh in shards]
    with ExitStack() as stack:
        procs = [stack.enter_context(ManagedProcess(
            cmd, ctx.runner, ctx.manifest, log_path=log, name=f"client-shard{sh.index}",
            how=How(stdin_pipe=True))) for sh, cmd, log in zip(shards, cmds, logs, strict=True)]
        if ctx.runner.dry_run:
            return None
        for sh in shards:
            shard_dir(point.dir, sh).mkdir(parents=True, exist_ok=True)
        start = gate(procs, logs, timeout_extra)
        if started is not None:
            started(start)
        deadline = time.monotonic() + point.spec.design.duration + timeout_extra
        for sh, p, log in zip(shards, procs, logs, strict=True):
            try:
                rc = p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"client shard {sh.index} did not finish; see "
                                   f"{log}") from None
            if rc != 0:
                raise RuntimeError(f"client shard {sh.index} failed (exit {rc}); see {log}")
            if fetch is not None:
                fetch(sh)
        if ready is not None:
            ready()
    return merge(point.dir, shards, [shard_dir(point.dir, sh) for sh in shards])


def gate(procs: Sequence[ManagedProcess], logs: Sequence[Path], timeout: float) -> int:
    """Wait until every shard says it is synced (its log has GATE_READY), then tell all
    when to start; returns that start (CLOCK_REALTIME ns).  A shard that ends first, or
    none that is ready in `timeout` s, raises with its log."""
    deadline = time.monotonic() + timeout
    waiting = dict(enumerate(logs))
    while waiting:
        for i, log in list(waiting.items()):
            if log.exists() and GATE_READY in log.read_text(errors="replace"):
                del waiting[i]
            elif not procs[i].alive():
                raise RuntimeError(f"client shard {i} ended before its load; see {log}")
        if waiting and time.monotonic() > deadline:
            i = min(waiting)
            raise RuntimeError(f"client shard {i} did not sync in {timeout:.0f} s; see "
                               f"{waiting[i]}")
        time.sleep(0.005)
    start = time.time_ns() + int(GO_AHEAD_S * 1e9)
    for p in procs:
        p.send(f"go {start}")
    return start


def merge(point_dir: Path, shards: Sequence[Shard], dirs: Sequence[Path]) -> dict:
    """The shards' records into the point's own files, and their summaries into one;
    each shard's directory goes once merged.  Returns the merged summary."""
    for name in RECORDS:
        with open(point_dir / name, "wb") as out:
            for k, d in enumerate(dirs):
                with open(d / name, "rb") as f:
                    head = f.readline()
                    if k == 0:
                        out.write(head)
                    shutil.copyfileobj(f, out)
    parts = [json.loads((d / "client_summary.json").read_text()) for d in dirs]
    summary = merged_summary(parts, shards)
    write_json(point_dir / "client_summary.json", summary)
    for d in dirs:
        shutil.rmtree(d)
    return summary


def merged_summary(parts: Sequence[dict], shards: Sequence[Shard]) -> dict:
    """One client summary of the shards': counts added, the load's span, every guest's
    clock sync, the slowest shard's encode figures; `shards` keeps each one's own."""
    def total(key: str) -> int:
        return sum(int(p.get(key) or 0) for p in parts)
    encode = max((p.get("encode") or {} for p in parts),
                 key=lambda e: e.get("p99_us") or 0.0, default={})
    own = [{"shard": s.index, "cpu": s.cpu, "guests": [s.first, s.first + s.count],
            **{k: p.get(k) for k in ("inputs_sent", "updates_received", "start_ns",
                                     "end_ns", "errors", "encode", "sched", "spin_us",
                                     "host_clock")}}
           for s, p in zip(shards, parts, strict=True)]
    return {"inputs_sent": total("inputs_sent"), "updates_received": total("updates_received"),
            "start_ns": min(p["start_ns"] for p in parts),
            "end_ns": max(p["end_ns"] for p in parts), "errors": total("errors"),
            "wan": _wan(parts),
            "clock_sync": {g: v for p in parts for g, v in (p.get("clock_sync") or {}).items()},
            "encode": encode, "sched": parts[0].get("sched"), "spin_us": parts[0].get("spin_us"),
            "shards": own}


def _wan(parts: Sequence[dict]) -> dict | None:
    """Each shard emulates its own players' WAN (the same model): what they dropped."""
    if not parts[0].get("wan"):
        return None
    return {**parts[0]["wan"], **{k: sum(p["wan"][k] for p in parts)
                                  for k in ("inputs_dropped", "updates_dropped")}}
