"""`gamebed run`: the sweep over guest counts and timestamp modes (root to run).

For each guest count it builds the testbed once (host side + guests), then for
each repeat and timestamp mode runs the clock sync and the game load on those
same guests and collects client, shim and server records into the point's
directory; then it tears the testbed down and moves on.  summary.json is
rewritten after every point, so an interrupted sweep keeps what it measured.

The counts are the spec's list, or, for `--guests auto`, chosen one at a time by
a search from the points so far.  The sweep knows neither backends nor statistics:
the run (gamebed/run.py) carries the testbed factory (vm.testbeds), the per-point
analysis (analysis.point.summarizer) and the search (analysis.capacity.search_step).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fpsmodel.records import sync_tree, write_json
from gamebed.budget import Eta, point_budget, sweep_budget
from gamebed.proc import require_net_admin, signals_unwind
from gamebed.run import Run
from gamebed.spec import ExperimentSpec


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
            "hostname": platform.node(), **provenance()}


def provenance() -> dict:
    """The commit gamebed ran from and whether its tree had changes (None outside a git
    checkout, e.g. an installed copy)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


@contextmanager
def _closing(run: Run):
    """The run's netlink sockets close and its manifest file goes once everything it
    listed is gone, whatever the exit."""
    try:
        yield run.manifest
    finally:
        run.runner.close()
        run.manifest.close()


def _point_line(entry: dict, t0: float) -> str:
    e = entry.get
    return (f"      sent {e('inputs_sent')}, lost {e('inputs_lost')}, delay mean "
            f"{e('delay_mean_us')} us p95 {e('delay_p95_us')} us, stamp error mean "
            f"{e('stamp_error_mean_us')} us, exact {e('host_stamp_exact_fraction')}, "
            f"zero stamps {e('zero_stamp_inputs')}, ring drops {e('ring_drops')}; "
            f"{e('stall_causes') or 'no stall'}, steal {e('steal_s')} s "
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
                    print(f"would remove {path}", file=sys.stderr)
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
    """(repeat, mode) of one count, in run order: the modes take turns within a repeat,
    in the spec's order in even repeats and the other way round in odd ones, so that
    with repeats neither mode is always the first on a count's guests (order never
    lines up with count: it is the same at every count).  Each entry records its
    `order` (0: the repeat's first point)."""
    return [(r, m) for r in range(spec.design.repeats)
            for m in (spec.design.modes if r % 2 == 0 else tuple(reversed(spec.design.modes)))]


def count_to_measure(spec: ExperimentSpec, points: list[dict], search=None,
                     out: Path | None = None) -> int | None:
    """The guest count the sweep builds next: a count the run began but did not finish,
    else the next of spec.counts, or for a search (--guests auto) `search`'s choice from
    the points so far; None when the sweep is done."""
    done = {(p["guests"], p.get("repeat", 0), p["mode"]) for p in points}
    started = list(dict.fromkeys(p["guests"] for p in points))
    for n in started:
        if any((n, r, m) not in done for r, m in count_points(spec)):
            return n
    if not spec.searching or search is None:  # dry run: the growth phase's counts
        return next((n for n in spec.counts if n not in started), None)
    return search(points, set(started), out)


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


def run_sweep(run: Run, resume: bool = False, overwrite: bool = False,
              check_privileges: bool = True) -> dict:
    """The sweep of `run`: every count's points, into run.out; returns summary.json's
    content.  A searching spec (--guests auto) needs run.layers.search."""
    spec, dry_run = run.spec, run.dry_run
    if not dry_run and check_privileges:
        require_net_admin()
    if spec.backend == "auto" or (spec.design.guest_counts is None and not spec.searching):
        raise ValueError("run_sweep takes a resolved spec (vm.resolve_backend)")
    if spec.searching and run.layers.search is None and not dry_run:
        raise ValueError("a searching spec (--guests auto) needs a search function")
    with _closing(run):
        if spec.tuning.guest_slice_ms is not None and not dry_run:  # tried before anything is built
            from gamebed.guestslice import check

            check(spec.tuning.guest_slice_ms)
        old = prepare_out(run.out, spec, resume, overwrite, dry_run)
        run.out.mkdir(parents=True, exist_ok=True)
        sweep = Sweep(run, old)
        with signals_unwind():
            sweep.measure_all()
    return sweep.finish()


class Sweep:
    """One sweep's state: the summary it writes and the progress bar's work."""

    def __init__(self, run: Run, old: dict | None) -> None:
        self.run, self.spec = run, run.spec
        m = run.manifest
        self.summary = {"spec": run.spec.to_dict(), "environment": environment(),
                        "backend": run.spec.backend, "backend_reason": run.reason,
                        "prefix": m.prefix, "manifest": str(m.path), "points": [],
                        "complete": False}
        if old:
            self._resumed(old)
        self.t0 = time.monotonic()
        self.per_count = len(count_points(self.spec))
        self.eta = Eta(self.spec.design.duration, run.layers.boot_s_per_guest)
        self.booted: list[tuple[int, float]] = []  # (guests booted, seconds) per count
        self.count_t0 = time.monotonic()  # when the count being measured began
        self.beds = ExitStack()
        self.bed = None  # with spec.design.reuse_guests: the testbed the next count resizes

    def _resumed(self, old: dict) -> None:
        s = self.summary
        s["points"] = list(old["points"])
        s["build_s"] = dict(old.get("build_s", {}))
        if "guest_kernel" in old:
            s["guest_kernel"] = old["guest_kernel"]
        s["resumed_from"] = [*old.get("resumed_from", []), old.get("prefix")]

    def _plan(self, current: int | None = None) -> list[tuple[int, int, int]]:
        """What is left, as (count, guests it boots, points): the current count's points
        not measured yet, then the counts foreseen and not begun (a search may add more)."""
        points = self.summary["points"]
        started = {p["guests"] for p in points} | ({current} if current else set())
        plan, last = [], self.bed.n_guests if self.bed is not None else 0
        if current is not None:
            done = sum(p["guests"] == current for p in points)
            plan.append((current, 0, self.per_count - done))
        for n in self.spec.counts:
            if n not in started:
                plan.append((n, n - last if self.spec.design.reuse_guests else n, self.per_count))
                last = n
        return plan

    def _estimate(self, current: int | None = None) -> float:
        """Seconds left; the bar shows the time spent and this."""
        left = self.eta.remaining(self._plan(current), self.summary["points"], self.booted)
        spent = time.monotonic() - self.t0
        self.run.progress.set(spent, spent + left)
        return left

    def measure_all(self) -> None:
        """Count after count until the spec's (or the search's) counts are measured."""
        p, spec = self.run.progress, self.spec
        with p.task(self._estimate_first(), "sweep"):
            k = 0
            search = None if self.run.dry_run else self.run.layers.search
            with self.beds:  # the testbed kept from count to count, if any
                while (n := count_to_measure(spec, self.summary["points"], search,
                                             self.run.out)) is not None:
                    k += 1
                    self.one_count(n, k)
                    self._count_done(n, k)

    def _estimate_first(self) -> float:
        return self.eta.remaining(self._plan(), self.summary["points"], self.booted)

    def _count_done(self, n: int, k: int) -> None:
        """The ETA after each count, on record (summary.json `eta`) and in the log."""
        took = time.monotonic() - self.count_t0
        known = self.summary.get("build_s", {}).get(str(n), 0.0) + sum(
            sum(p["budget_s"].values()) for p in self.summary["points"]
            if p["guests"] == n and p.get("budget_s"))
        self.eta.count_extra.append((n, max(0.0, took - known)))
        left, spent = self._estimate(), time.monotonic() - self.t0
        if not self._plan():  # the last count foreseen: nothing left to estimate
            return
        self.eta.log.append({"after_count": n, "counts_done": k, "elapsed_s": round(spent, 1),
                             "remaining_est_s": round(left, 1)})
        if not self.run.dry_run:
            self.run.progress(f"      {spent:.0f} s so far; about {left:.0f} s left")

    def finish(self) -> dict:
        s = self.summary
        s["complete"] = True
        s["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        for e in self.eta.log:  # each estimate beside what the rest really took
            e["remaining_actual_s"] = actual = round(s["elapsed_s"] - e["elapsed_s"], 1)
            e["error"] = round(e["remaining_est_s"] / actual - 1, 3) if actual > 0 else None
        s["eta"] = self.eta.log
        if self.run.layers.speed is not None and not self.run.dry_run:
            s["machine_speed"] = self.run.layers.speed(s["points"])
        self._save()
        return s

    def _save(self) -> None:
        self.summary["budget_s"] = sweep_budget(self.summary.get("build_s", {}),
                                                self.summary["points"])
        if not self.run.dry_run:
            write_json(self.run.out / "summary.json", self.summary)

    def one_count(self, n_guests: int, k: int) -> None:
        """Measure the points of one count the summary lacks, on a testbed of that many
        guests: the last count's, resized (spec.design.reuse_guests), else one built for it."""
        run, spec = self.run, self.spec
        done = {(p.get("repeat", 0), p["mode"]) for p in self.summary["points"]
                if p["guests"] == n_guests}
        todo = [rm for rm in count_points(spec) if rm not in done]
        self.label = f"[{k}{'' if spec.searching else f'/{len(spec.counts)}'}]"
        reuse = spec.design.reuse_guests and self.bed is not None
        how = f"from {self.bed.n_guests}" if reuse else "building"
        run.progress(f"{self.label} {n_guests} guest(s) on {spec.backend}: {how} ...")
        run.progress.status(f"{self.label} {n_guests} guests: {how}")
        tb, before = time.monotonic(), self.bed.n_guests if reuse else 0
        self.count_t0 = tb
        bed = self._testbed(n_guests, reuse)
        boot = round(time.monotonic() - tb, 1)
        self.summary.setdefault("build_s", {})[str(n_guests)] = boot
        if n_guests > before:  # a shrink stops guests: it boots none (Eta.boot_s)
            self.booted.append((n_guests - before, boot))
        if not run.dry_run:
            same_guest_kernel(self.summary, bed, run.out)
        if reuse and n_guests > before and todo and spec.design.warm_up_s > 0:
            run.progress(f"      warm-up: {spec.design.warm_up_s:g} s of play, not measured, "
                         "on the "
                         f"{n_guests - before} new guest(s) and the others")
            bed.warm_up(run.out / "points" / f"warmup-g{n_guests:03d}", spec.design.warm_up_s)
        self._estimate(n_guests)
        for repeat, mode in todo:
            self.measure(bed, n_guests, repeat, mode)
        if not spec.design.reuse_guests:
            self.beds.close()  # this count's testbed goes before the next is built

    def _testbed(self, n_guests: int, reuse: bool):
        """A testbed of n guests: the kept one, resized, or a new one (entered on
        self.beds; its work directory goes with it)."""
        if reuse:
            self.bed.resize(n_guests)
            return self.bed
        work_dir = self.run.out / "points" / f"work-g{n_guests:03d}"
        if not self.run.dry_run:
            self.beds.callback(shutil.rmtree, work_dir, ignore_errors=True)
        self.bed = self.beds.enter_context(self.run.testbed(n_guests, work_dir))
        return self.bed

    def measure(self, bed, n_guests: int, repeat: int, mode: str) -> None:
        """One point, measured again (up to spec.design.retries times) while the machine
        took it away (analysis/stalls.py): each earlier try's directory is kept as
        NAME-tryK and its entry in summary.json's `retried`."""
        name = point_name(mode, n_guests, repeat)
        for k in range(self.spec.design.retries + 1):
            entry = self._measure_once(bed, n_guests, repeat, mode)
            entry["tries"] = k + 1
            self._save()
            if not entry.get("retry") or k == self.spec.design.retries:
                return
            points = self.summary["points"]
            points.remove(entry)
            kept = self.run.out / "points" / f"{name}-try{k}"
            shutil.rmtree(kept, ignore_errors=True)
            (self.run.out / entry["dir"]).rename(kept)
            entry["dir"] = str(kept.relative_to(self.run.out))
            self.summary.setdefault("retried", []).append(entry)
            self.run.progress(f"      measured again ({k + 1} of {self.spec.design.retries}): "
                              f"{entry.get('load_bound_cause')}; {entry.get('stall_causes')}")

    def _measure_once(self, bed, n_guests: int, repeat: int, mode: str) -> dict:
        """One point: `mode`'s load on the testbed's guests, its records, its entry."""
        run, spec = self.run, self.spec
        pdir = run.out / "points" / point_name(mode, n_guests, repeat)
        if not run.dry_run:
            shutil.rmtree(pdir, ignore_errors=True)  # what an interrupted run left of it
        again = f" (repeat {repeat})" if repeat else ""
        run.progress(f"      {mode} stamps{again}: {spec.design.duration:g} s of play ...")
        run.progress.status(f"{n_guests} guests, {mode} stamps{again}: playing")
        with bed.mode(mode, pdir, repeat) as point:  # its phases: bed.phases
            # point.json's "guests" is the count (docs/records.md)
            write_json(pdir / "point.json", {"mode": mode, "guests": n_guests,
                                             "repeat": repeat, "seed": spec.design.seed + repeat,
                                             "spec": spec.to_dict(),
                                             "environment": point.environment()})
            point.run_load()
        order = [m for r, m in count_points(spec) if r == repeat].index(mode)
        entry, ta = ({"mode": mode, "guests": n_guests, "repeat": repeat, "order": order},
                     time.monotonic())
        if not run.dry_run:
            sync_tree(pdir)  # the point's raw files are on disk before it is listed
            entry.update(run.layers.summarize(pdir))
        entry["dir"] = str(pdir.relative_to(run.out))
        entry["budget_s"] = point_budget(bed.phases, time.monotonic() - ta)
        self.summary["points"].append(entry)
        self._save()
        self._estimate(n_guests)
        run.progress.status(f"{self.label} {n_guests} guests")
        if not run.dry_run:
            run.progress(_point_line(entry, self.t0))
        return entry
