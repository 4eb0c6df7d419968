"""`gamebed run`: the sweep over guest counts and timestamp modes (root to run).

For each guest count it builds the testbed once (host side + guests), then for
each timestamp mode runs the clock sync and the game load on those same guests
and collects client, shim and server records into the point's directory; then
it tears the testbed down and moves on.  summary.json is rewritten after every
point, so an interrupted sweep keeps what it measured.

The sweep knows neither backends nor statistics: the CLI hands it a testbed
factory (vm.make_testbed) and the per-point analysis (analysis.point.point_summary).
"""

from __future__ import annotations

import os
import platform
import shutil
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

TestbedFactory = Callable[..., object]  # (spec, n_guests, work_dir, runner, manifest, progress)
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


def _point_line(entry: dict, t0: float) -> str:
    return (f"      sent {entry['inputs_sent']}, lost {entry['inputs_lost']}, delay mean "
            f"{entry['delay_mean_us']} us p95 {entry['delay_p95_us']} us, stamp error mean "
            f"{entry['stamp_error_mean_us']} us, exact {entry['host_stamp_exact_fraction']} "
            f"({time.monotonic() - t0:.0f} s)")


def measure_count(bed, summarize: Summarize, spec: ExperimentSpec, n_guests: int, out: Path,
                  runner: Runner, on_point: Callable[[dict], None], t0: float) -> None:
    """Every mode on one count's testbed (its guests are built once)."""
    for mode in spec.modes:
        pdir = out / "points" / f"{mode}-g{n_guests:03d}"
        progress(f"      {mode} stamps: {spec.duration:g} s of play ...")
        with bed.mode(mode, pdir) as point:
            env = point.environment()
            # point.json's "guests" is the count (docs/records.md)
            write_json(pdir / "point.json", {"mode": mode, "guests": n_guests,
                                             "spec": spec.to_dict(), "environment": env})
            point.run_load()
        entry = {"mode": mode, "guests": n_guests}
        if not runner.dry_run:
            entry.update(summarize(pdir))
        entry["dir"] = str(pdir.relative_to(out))
        on_point(entry)
        if not runner.dry_run:
            progress(_point_line(entry, t0))


def run_sweep(spec: ExperimentSpec, out: Path, make_testbed: TestbedFactory,
              summarize: Summarize, dry_run: bool = False, backend_reason: str = "") -> dict:
    if not dry_run:
        require_net_admin()
    if spec.backend == "auto" or spec.guest_counts is None:
        raise ValueError("run_sweep takes a resolved spec (vm.resolve_backend)")
    runner = Runner(dry_run=dry_run)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(new_prefix(), dry_run=dry_run)
    summary = {"spec": spec.to_dict(), "environment": environment(), "backend": spec.backend,
               "backend_reason": backend_reason, "prefix": manifest.prefix,
               "manifest": str(manifest.path), "points": [], "complete": False}
    t0 = time.monotonic()

    def on_point(entry: dict) -> None:
        summary["points"].append(entry)
        if not dry_run:
            write_json(out / "summary.json", summary)

    with signals_unwind(), _closing(manifest):
        for k, n_guests in enumerate(spec.counts, 1):
            progress(f"[{k}/{len(spec.counts)}] {n_guests} guest(s) on {spec.backend}: "
                     f"building ...")
            work = out / "points" / f"work-g{n_guests:03d}"
            tb = time.monotonic()
            with make_testbed(spec, n_guests, work, runner, manifest, progress) as bed:
                summary.setdefault("build_s", {})[str(n_guests)] = round(time.monotonic() - tb, 1)
                measure_count(bed, summarize, spec, n_guests, out, runner, on_point, t0)
            if not dry_run:
                shutil.rmtree(work, ignore_errors=True)
    summary["complete"] = True
    summary["elapsed_s"] = round(time.monotonic() - t0, 1)
    if not dry_run:
        write_json(out / "summary.json", summary)
    return summary
