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

import json
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from fpsmodel.records import write_json
from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner, require_net_admin
from gamebed.progress import Progress, say, status, sweep_work
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
    say(msg)


def _point_line(entry: dict, t0: float) -> str:
    return (f"      sent {entry['inputs_sent']}, lost {entry['inputs_lost']}, delay mean "
            f"{entry['delay_mean_us']} us p95 {entry['delay_p95_us']} us, stamp error mean "
            f"{entry['stamp_error_mean_us']} us, exact {entry['host_stamp_exact_fraction']} "
            f"({time.monotonic() - t0:.0f} s)")


RESULT_FILES = ("summary.json", "report.html", "report.md", "capacity.csv", "points.csv")


def _plain(d: dict) -> dict:
    return json.loads(json.dumps(d))  # tuples → lists, as read back from summary.json


def prepare_out(out: Path, spec: ExperimentSpec, resume: bool = False,
                overwrite: bool = False, dry_run: bool = False) -> dict | None:
    """Check the results directory before anything is created.  An empty or new one is
    used as is; one holding an earlier run is refused unless `overwrite` (its points
    and reports are removed first) or `resume` (same spec: returns its summary, whose
    points are kept and not measured again)."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    out = Path(out)
    if not (out.is_dir() and any(out.iterdir())):
        if resume:
            raise ValueError(f"--resume: {out} holds no earlier run to resume")
        return None
    old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() \
        else None
    if overwrite:
        for path in [out / "points", *(out / f for f in RESULT_FILES)]:
            if dry_run:
                if path.exists():
                    progress(f"would remove {path}")
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return None
    if not resume:
        n = len(old["points"]) if old else "no summary.json, but files"
        raise ValueError(f"{out} already holds results ({n} points of an earlier run); pass "
                         "--overwrite to replace them, --resume to measure only the points it "
                         "lacks (same spec), or another --out")
    if old is None:
        raise ValueError(f"--resume: {out} has no summary.json to resume from")
    want, had = _plain(spec.to_dict()), old.get("spec", {})
    differ = sorted(k for k in set(want) | set(had) if want.get(k) != had.get(k))
    if differ:
        raise ValueError(f"--resume: the spec differs from the run in {out} in "
                         f"{', '.join(differ)}; resume with the same options, or --overwrite")
    return old


def measure_count(bed, summarize: Summarize, spec: ExperimentSpec, n_guests: int, out: Path,
                  runner: Runner, on_point: Callable[[dict], None], t0: float,
                  modes: tuple[str, ...] | None = None) -> None:
    """Every mode (or the given ones) on one count's testbed (its guests are built once)."""
    for mode in modes or spec.modes:
        pdir = out / "points" / f"{mode}-g{n_guests:03d}"
        if not runner.dry_run:
            shutil.rmtree(pdir, ignore_errors=True)  # what an interrupted run left of it
        progress(f"      {mode} stamps: {spec.duration:g} s of play ...")
        status(f"{n_guests} guests, {mode} stamps: playing")
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
              summarize: Summarize, dry_run: bool = False, backend_reason: str = "",
              resume: bool = False, overwrite: bool = False,
              boot_s_per_guest: float = 1.0) -> dict:
    """The sweep; `boot_s_per_guest` only scales the progress bar's time estimate."""
    if not dry_run:
        require_net_admin()
    if spec.backend == "auto" or spec.guest_counts is None:
        raise ValueError("run_sweep takes a resolved spec (vm.resolve_backend)")
    out = Path(out)
    old = prepare_out(out, spec, resume, overwrite, dry_run)
    runner = Runner(dry_run=dry_run)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(new_prefix(), dry_run=dry_run)
    summary = {"spec": spec.to_dict(), "environment": environment(), "backend": spec.backend,
               "backend_reason": backend_reason, "prefix": manifest.prefix,
               "manifest": str(manifest.path), "points": [], "complete": False}
    if old:
        summary["points"] = list(old["points"])
        summary["build_s"] = dict(old.get("build_s", {}))
        summary["resumed_from"] = [*old.get("resumed_from", []), old.get("prefix")]
    done = {(p["mode"], p["guests"]) for p in summary["points"]}
    t0 = time.monotonic()

    def on_point(entry: dict) -> None:
        summary["points"].append(entry)
        if not dry_run:
            write_json(out / "summary.json", summary)

    work_s = sweep_work(spec.counts, spec.modes, spec.duration, boot_s_per_guest)
    total = sum(b + len(spec.modes) * m for b, m in work_s.values())
    with signals_unwind(), _closing(manifest), Progress(total, "sweep") as bar:
        for k, n_guests in enumerate(spec.counts, 1):
            boot_s, point_s = work_s[n_guests]
            todo = tuple(m for m in spec.modes if (m, n_guests) not in done)
            if not todo:
                progress(f"[{k}/{len(spec.counts)}] {n_guests} guest(s): measured by the "
                         "run resumed")
                bar.advance(boot_s + len(spec.modes) * point_s)
                continue
            progress(f"[{k}/{len(spec.counts)}] {n_guests} guest(s) on {spec.backend}: "
                     f"building ...")
            status(f"[{k}/{len(spec.counts)}] {n_guests} guests: building")
            work = out / "points" / f"work-g{n_guests:03d}"
            tb = time.monotonic()
            with make_testbed(spec, n_guests, work, runner, manifest, progress) as bed:
                summary.setdefault("build_s", {})[str(n_guests)] = round(time.monotonic() - tb, 1)
                bar.advance(boot_s + (len(spec.modes) - len(todo)) * point_s)

                def measured(entry: dict, _k=k, _n=n_guests, _p=point_s) -> None:
                    on_point(entry)
                    bar.advance(_p)
                    status(f"[{_k}/{len(spec.counts)}] {_n} guests")

                measure_count(bed, summarize, spec, n_guests, out, runner, measured, t0, todo)
            if not dry_run:
                shutil.rmtree(work, ignore_errors=True)
    summary["complete"] = True
    summary["elapsed_s"] = round(time.monotonic() - t0, 1)
    if not dry_run:
        write_json(out / "summary.json", summary)
    return summary
