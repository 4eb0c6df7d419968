"""`gamebed run`: the sweep over guest counts and timestamp modes (root to run).

For each (n_guests, mode) point it builds the point (host side + guests), runs
the clock sync and the game load, collects client, shim and server records into
the point's directory, tears everything down and moves on.  summary.json is
rewritten after every point, so an interrupted sweep keeps what it measured.

The sweep knows neither backends nor statistics: the CLI hands it a point
factory (vm.make_point) and the per-point analysis (analysis.point.point_summary).
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from fpsmodel.records import write_json
from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner, require_net_admin
from gamebed.spec import ExperimentSpec

PointFactory = Callable[..., object]  # (spec, n_guests, mode, dir, runner, manifest, progress)
Summarize = Callable[[Path], dict]


def environment() -> dict:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"kernel": platform.release(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "cpu_model": cpu_model, "python": platform.python_version(),
            "hostname": platform.node()}


@contextmanager
def signals_unwind():
    """SIGTERM behaves like ^C: the with-blocks tear down.  A second signal while
    tearing down is ignored, so cleanup is not cut short."""
    state = {"hit": False}

    def handler(signum, _frame):
        if state["hit"]:
            return
        state["hit"] = True
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _closing(manifest: Manifest):
    """The manifest file goes once everything it listed is gone, whatever the exit."""
    try:
        yield manifest
    finally:
        manifest.close()


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_point(make_point: PointFactory, summarize: Summarize, spec: ExperimentSpec,
              n_guests: int, mode: str, point_dir: Path, runner: Runner,
              manifest: Manifest) -> dict:
    with make_point(spec, n_guests, mode, point_dir, runner, manifest, progress) as point:
        env = point.environment()
        # point.json's "guests" is the count (docs/records.md)
        write_json(point_dir / "point.json", {"mode": mode, "guests": n_guests,
                                              "spec": spec.to_dict(), "environment": env})
        point.run_load()
    if runner.dry_run:
        return {"mode": mode, "guests": n_guests}
    return {"mode": mode, "guests": n_guests, **summarize(point_dir)}


def run_sweep(spec: ExperimentSpec, out: Path, make_point: PointFactory, summarize: Summarize,
              dry_run: bool = False) -> dict:
    if not dry_run:
        require_net_admin()
    runner = Runner(dry_run=dry_run)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(new_prefix(), dry_run=dry_run)
    summary = {"spec": spec.to_dict(), "environment": environment(), "prefix": manifest.prefix,
               "manifest": str(manifest.path), "points": [], "complete": False}
    points = spec.points()
    t0 = time.monotonic()
    with signals_unwind(), _closing(manifest):
        for k, (n_guests, mode) in enumerate(points, 1):
            pdir = out / "points" / f"{mode}-g{n_guests:03d}"
            progress(f"[{k}/{len(points)}] {mode} stamps, {n_guests} guest(s): building, "
                     f"{spec.duration:.0f} s of play ...")
            entry = run_point(make_point, summarize, spec, n_guests, mode, pdir, runner,
                              manifest)
            entry["dir"] = str(pdir.relative_to(out))
            summary["points"].append(entry)
            if not dry_run:
                write_json(out / "summary.json", summary)
                progress(f"      sent {entry['inputs_sent']}, lost {entry['inputs_lost']}, "
                         f"delay mean {entry['delay_mean_us']} us p95 {entry['delay_p95_us']} "
                         f"us, stamp error mean {entry['stamp_error_mean_us']} us, exact "
                         f"{entry['host_stamp_exact_fraction']} ({time.monotonic() - t0:.0f} s)")
    summary["complete"] = True
    summary["elapsed_s"] = round(time.monotonic() - t0, 1)
    if not dry_run:
        write_json(out / "summary.json", summary)
    return summary
