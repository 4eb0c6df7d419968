"""`gamebed run`: the sweep over guest counts and timestamp modes (root to run).

For each guest count it builds the testbed once (host side + guests), then for
each repeat and timestamp mode runs the clock sync and the game load on those
same guests and collects client, shim and server records into the point's
directory; then it tears the testbed down and moves on.  summary.json is
rewritten after every point, so an interrupted sweep keeps what it measured.

The counts are the spec's list, or, for `--guests auto`, chosen one at a time by
a search from the points so far.  The sweep knows neither backends nor statistics:
the CLI hands it a testbed factory (vm.make_testbed), the per-point analysis
(analysis.point.point_summary) and the search (analysis.capacity.search_step).
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

from fpsmodel.records import sync_tree, write_json
from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner, interrupt, require_net_admin
from gamebed.progress import Progress, say, status, sweep_work
from gamebed.spec import ExperimentSpec

TestbedFactory = Callable[..., object]  # (spec, n_guests, work_dir, runner, manifest, progress)
Summarize = Callable[[Path], dict]
Search = Callable[[list[dict], set[int]], "int | None"]  # (points so far, counts tried)


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
        # raised here, or once a teardown step under way has ended (gamebed/proc.py)
        interrupt(KeyboardInterrupt(f"signal {signum}"))

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
    e = entry.get
    return (f"      sent {e('inputs_sent')}, lost {e('inputs_lost')}, delay mean "
            f"{e('delay_mean_us')} us p95 {e('delay_p95_us')} us, stamp error mean "
            f"{e('stamp_error_mean_us')} us, exact {e('host_stamp_exact_fraction')}, "
            f"zero stamps {e('zero_stamp_inputs')}, ring drops {e('ring_drops')} "
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


def point_name(mode: str, n_guests: int, repeat: int = 0) -> str:
    """A point's directory under points/: guest-g008, and guest-g008-r1 for repeat 1."""
    return f"{mode}-g{n_guests:03d}" + (f"-r{repeat}" if repeat else "")


def count_points(spec: ExperimentSpec) -> list[tuple[int, str]]:
    """(repeat, mode) of one count, in run order: the modes alternate within a repeat."""
    return [(r, m) for r in range(spec.repeats) for m in spec.modes]


def measure_count(bed, summarize: Summarize, spec: ExperimentSpec, n_guests: int, out: Path,
                  runner: Runner, on_point: Callable[[dict], None], t0: float,
                  todo: list[tuple[int, str]] | None = None) -> None:
    """Every (repeat, mode) point (or the given ones) on one count's testbed (its guests
    are built once)."""
    for repeat, mode in todo if todo is not None else count_points(spec):
        pdir = out / "points" / point_name(mode, n_guests, repeat)
        if not runner.dry_run:
            shutil.rmtree(pdir, ignore_errors=True)  # what an interrupted run left of it
        again = f" (repeat {repeat})" if repeat else ""
        progress(f"      {mode} stamps{again}: {spec.duration:g} s of play ...")
        status(f"{n_guests} guests, {mode} stamps{again}: playing")
        with bed.mode(mode, pdir, repeat) as point:
            env = point.environment()
            # point.json's "guests" is the count (docs/records.md)
            write_json(pdir / "point.json", {"mode": mode, "guests": n_guests,
                                             "repeat": repeat, "seed": spec.seed + repeat,
                                             "spec": spec.to_dict(), "environment": env})
            point.run_load()
        entry = {"mode": mode, "guests": n_guests, "repeat": repeat}
        if not runner.dry_run:
            sync_tree(pdir)  # the point's raw files are on disk before it is listed
            entry.update(summarize(pdir))
        entry["dir"] = str(pdir.relative_to(out))
        on_point(entry)
        if not runner.dry_run:
            progress(_point_line(entry, t0))


def next_count(spec: ExperimentSpec, points: list[dict], search: Search | None = None
               ) -> int | None:
    """The next guest count to measure: a count the run began but did not finish, else
    the next of spec.counts, or for a search (--guests auto) `search`'s choice from the
    points so far; None when the sweep is done."""
    done = {(p["guests"], p.get("repeat", 0), p["mode"]) for p in points}
    started = list(dict.fromkeys(p["guests"] for p in points))
    for n in started:
        if any((n, r, m) not in done for r, m in count_points(spec)):
            return n
    if not spec.searching or search is None:  # dry run: the growth phase's counts
        return next((n for n in spec.counts if n not in started), None)
    return search(points, set(started))


def run_sweep(spec: ExperimentSpec, out: Path, make_testbed: TestbedFactory,
              summarize: Summarize, dry_run: bool = False, backend_reason: str = "",
              resume: bool = False, overwrite: bool = False,
              boot_s_per_guest: float = 1.0, check_privileges: bool = True,
              search: Search | None = None) -> dict:
    """The sweep; `boot_s_per_guest` only scales the progress bar's time estimate.
    A searching spec (--guests auto) needs `search`, which picks each next count."""
    if not dry_run and check_privileges:
        require_net_admin()
    if spec.backend == "auto" or (spec.guest_counts is None and not spec.searching):
        raise ValueError("run_sweep takes a resolved spec (vm.resolve_backend)")
    if spec.searching and search is None and not dry_run:
        raise ValueError("a searching spec (--guests auto) needs a search function")
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
        if "guest_kernel" in old:
            summary["guest_kernel"] = old["guest_kernel"]
        summary["resumed_from"] = [*old.get("resumed_from", []), old.get("prefix")]
    t0 = time.monotonic()

    def on_point(entry: dict) -> None:
        summary["points"].append(entry)
        if not dry_run:
            write_json(out / "summary.json", summary)

    per_count = len(count_points(spec))
    work_s = sweep_work(spec.counts, spec.modes, spec.duration, boot_s_per_guest)
    total = sum(b + per_count * m for b, m in work_s.values())
    with signals_unwind(), _closing(manifest), Progress(total, "sweep") as bar:
        for n, (b, m) in work_s.items():  # what a resumed run measured is done
            kept = sum(p["guests"] == n for p in summary["points"])
            bar.advance((b if kept == per_count else 0) + kept * m)
        k = 0
        while (n_guests := next_count(spec, summary["points"],
                                      None if dry_run else search)) is not None:
            k += 1
            if n_guests not in work_s:  # a count the estimate did not foresee (search)
                work_s.update(sweep_work((n_guests,), spec.modes, spec.duration,
                                         boot_s_per_guest))
                bar.grow(work_s[n_guests][0] + per_count * work_s[n_guests][1])
            _one_count(spec, n_guests, k, out, make_testbed, summarize, runner, manifest,
                       summary, on_point, bar, work_s[n_guests], t0)
    summary["complete"] = True
    summary["elapsed_s"] = round(time.monotonic() - t0, 1)
    if not dry_run:
        write_json(out / "summary.json", summary)
    return summary


KERNEL_KEYS = ("guest_kernel_digest", "uml_mode")  # what a run's points must share


def same_guest_kernel(summary: dict, bed, out: Path) -> None:
    """A run's points all ran on one guest kernel in one mode: the first count records
    them in the summary; a later one (a resumed run's) that differs is refused."""
    env = bed.environment() if callable(getattr(bed, "environment", None)) else {}
    now = {k: env.get(k) for k in KERNEL_KEYS if env.get(k) is not None}
    had = summary.get("guest_kernel")
    if had is None or not summary["points"]:
        summary["guest_kernel"] = now
    elif had != now:
        raise ValueError(f"--resume: the points in {out} ran on guest kernel {had}, these "
                         f"guests run {now}; resume with the same kernel and --uml-mode "
                         "(--uml-kernel PATH), or --overwrite")


def _one_count(spec: ExperimentSpec, n_guests: int, k: int, out: Path,
               make_testbed: TestbedFactory, summarize: Summarize, runner: Runner,
               manifest: Manifest, summary: dict, on_point: Callable[[dict], None], bar,
               work: tuple[float, float], t0: float) -> None:
    """Build one count's testbed and measure the points of it the summary lacks."""
    boot_s, point_s = work
    done = {(p.get("repeat", 0), p["mode"]) for p in summary["points"]
            if p["guests"] == n_guests}
    todo = [rm for rm in count_points(spec) if rm not in done]
    of = "" if spec.searching else f"/{len(spec.counts)}"
    progress(f"[{k}{of}] {n_guests} guest(s) on {spec.backend}: building ...")
    status(f"[{k}{of}] {n_guests} guests: building")
    work_dir = out / "points" / f"work-g{n_guests:03d}"
    tb = time.monotonic()
    with make_testbed(spec, n_guests, work_dir, runner, manifest, progress) as bed:
        summary.setdefault("build_s", {})[str(n_guests)] = round(time.monotonic() - tb, 1)
        if not runner.dry_run:
            same_guest_kernel(summary, bed, out)
        bar.advance(boot_s)

        def measured(entry: dict) -> None:
            on_point(entry)
            bar.advance(point_s)
            status(f"[{k}{of}] {n_guests} guests")

        measure_count(bed, summarize, spec, n_guests, out, runner, measured, t0, todo)
    if not runner.dry_run:
        shutil.rmtree(work_dir, ignore_errors=True)
