"""A testbed, the run's orchestrator: the shared host side plus a backend's guests
(root).  It lives in vm/ beside the backends it drives; hostside/ keeps the host's
networking.

On enter: the host side's client link, then the backend's guests (and their
ports), built once.  Each timestamp mode is then measured on the same guests
(`mode()`): the backend sets up the mode's receive path and starts the servers,
the stamper and shim attach (they need every port to exist), `run_load()` plays
for the spec's duration inside one load window (`LoadWindow`: the guests' CPUs
settle, a budget's hogs run, the counters are read on both sides), records CPU use
(cpu.json) and has the backend collect
the guests' records.  Leaving a mode detaches the host side and stops the
servers.  Between modes `resize(n)` grows the testbed (new guests boot beside the
running ones) or shrinks it (the last guests stop), so a point at count n runs
exactly n guests.  Leaving the testbed removes everything, in reverse order,
whatever happened; `keep_running()` instead leaves it all up (`gamebed launch`:
the manifest remembers it).  The backend is handed in (gamebed/backend.py), so
this module knows no backend by name.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fpsmodel.records import CLOCK_SYNC, SYNC_CARRY_FIELDS, write_json
from gamebed import cpustat, guestslice, memory, schedwait
from gamebed.backend import IDLE_EXIT_S, GuestBackend, Point, TestbedContext
from gamebed.cgroups import CgroupTree
from gamebed.fault import FaultSchedule, parse_faults
from gamebed.guestcpu import GuestCpus
from gamebed.machinewatch import (
    INJECTED,
    MACHINE,
    PROBE,
    CpuProbe,
    MachineWatch,
    StallInjector,
    StallPlan,
    descendants,
)
from gamebed.spec import ExperimentSpec
from gamebed.topology import Placement, Topology
from hostside.host import HostSide

if TYPE_CHECKING:
    from gamebed.run import Run

BackendFactory = Callable[[TestbedContext], GuestBackend]
SYNC_CARRY = "sync_carry.csv"  # the client's --sync-carry file, kept in the point


class SyncCarry:
    """Each guest's best clock-sync sample so far, where guest clocks cannot drift (UML
    reads the host's clock; a namespace is on it): a later point's client checks that
    sample with a few tries instead of taking 32 (docs/records.md, sync_carry.csv).
    A guest that stops is forgotten, so a guest booted again starts afresh."""

    def __init__(self) -> None:
        self.best: dict[int, tuple[int, list[str]]] = {}  # guest -> (delay, t1..t4)

    def learn(self, sync_csv: Path) -> None:
        if not sync_csv.exists():
            return
        with open(sync_csv) as f:
            for row in csv.DictReader(f):
                if row["phase"] == "1" or not row["delay_ns"]:
                    continue  # after the load: servers busy with their backlogs
                g, delay = int(row["guest"]), int(row["delay_ns"])
                if g not in self.best or delay < self.best[g][0]:
                    self.best[g] = (delay, [row[k] for k in SYNC_CARRY_FIELDS[1:]])

    def forget(self, guests: list) -> None:
        for g in guests:
            self.best.pop(g.index, None)

    def write(self, path: Path, guests: list) -> Path | None:
        """The carry file for these guests, or None where none has a sample yet."""
        rows = [[str(g.index), *self.best[g.index][1]] for g in guests if g.index in self.best]
        if not rows:
            return None
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(SYNC_CARRY_FIELDS)
            w.writerows(rows)
        return path


class Testbed:
    def __init__(self, ctx: TestbedContext, backend: BackendFactory, n_guests: int) -> None:
        # the testbed's cgroups (made as its parts ask, on enter), removed after every guest
        self.ctx = dataclasses.replace(ctx, cgroups=CgroupTree(
            ctx.manifest.prefix, ctx.manifest, ctx.runner))
        self.spec = ctx.spec  # the run's; a repeat plays its own seed (enter_mode)
        t = ctx.topo  # the guests it runs now: a point's (Point.topo)
        self.topo = dataclasses.replace(t, guests=Topology.build(
            t.prefix, n_guests, t.game_port).guests)
        self.point: Point | None = None  # the point being measured (enter_mode .. left)
        self.phases: dict[str, int] = {}  # one point's phases: CLOCK_REALTIME ns
        self.slice: dict | None = None  # --guest-slice-ms as set and read back
        # per guest: when it joined the testbed (ns) and how many loads it has played
        self.added: dict[int, int] = {}
        self.loads: dict[int, int] = {}
        self.sync_carry = SyncCarry()
        self.host = HostSide(self.ctx, self.topo.guests)
        self.backend = backend(self.ctx)
        self.stack = ExitStack()
        self.mode_stack = ExitStack()
        self.settle = self._new_settle()  # its baseline is this count's
        self.budget: GuestCpus | None = None  # --guest-cpus (made on enter)

    def _new_settle(self) -> cpustat.Settle:
        return cpustat.Settle(self.ctx.placement.guest_cpu_list())

    def __enter__(self) -> Testbed:
        with ExitStack() as stack:  # on a failure half-way, what was built goes again
            s, c = self.ctx.spec, self.ctx
            tree = stack.enter_context(c.cgroups)
            if s.tuning.guest_cpus is not None:  # the guests' parent group, before any guest
                self.budget = stack.enter_context(GuestCpus(
                    s.tuning.guest_cpus, s.tuning.guest_cpus_by,
                    self.ctx.placement.guest_cpu_list(), tree))
            self._fits(len(self.topo.guests))  # before anything is booted
            stack.enter_context(self.host)
            stack.callback(self.backend.stop)
            self.backend.start(self.topo.guests)
            self._joined(self.topo.guests)
            self.stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove everything, in reverse order (again: nothing more)."""
        self.mode_stack.close()
        self.stack.close()

    @property
    def n_guests(self) -> int:
        return len(self.topo.guests)

    def resize(self, n_guests: int) -> None:
        """Grow to `n_guests` (the new guests join the running ones) or shrink to it (the
        guests with the highest indices stop); between modes only."""
        self.mode_stack.close()
        old = self.topo.guests
        topo = self.topo = dataclasses.replace(self.topo, guests=Topology.build(
            self.topo.prefix, n_guests, self.topo.game_port).guests)
        self.settle = self._new_settle()
        # every count syncs its clocks afresh: a sample taken with fewer guests running
        # is not carried to a count whose guests wait longer for their CPU
        self.sync_carry = SyncCarry()
        if n_guests < len(old):
            gone = old[n_guests:]
            self.backend.remove_guests(gone)
            self.host.remove_guests(gone)
            for g in gone:
                self.added.pop(g.index, None)
                self.loads.pop(g.index, None)
        if n_guests > len(old):
            new = topo.guests[len(old):]
            self._fits(len(new))
            self.host.add_guests(new)
            self.backend.add_guests(new)
            self._joined(new)

    def _fits(self, new: int) -> None:
        """Refuse `new` guests that the host's memory would not hold (gamebed/memory.py)."""
        s = self.ctx.spec
        if not self.ctx.runner.dry_run:
            memory.check(new, self.backend.cgroups.memory(), s.backend, s.vm_memory_mib)

    def _joined(self, guests) -> None:
        now = time.time_ns()
        for g in guests:
            self.added[g.index], self.loads[g.index] = now, 0

    def keep_running(self) -> None:
        """Leave every guest, server and host-side part running past this object (their
        manifest lists them; `gamebed clean` or `launch --destroy` removes them)."""
        self.mode_stack.pop_all()
        self.stack.pop_all()

    def enter_mode(self, mode: str, point_dir: Path, repeat: int = 0,
                   spec: ExperimentSpec | None = None, idle_exit: float = IDLE_EXIT_S,
                   warm_up: bool = False) -> Point:
        """Measure `mode` next, into `point_dir`: receive path, servers, stamper, shim.
        Repeat r of a point plays the schedules of seed + r (in every mode alike); `spec`:
        another than the run's (a warm-up's); `idle_exit` 0: servers that stop by
        themselves never do (launch); `warm_up`: an unmeasured load (Point.warm_up)."""
        self.mode_stack.close()
        self.phases = {"enter": time.time_ns()}
        spec = spec or self.spec
        point = self.point = Point(mode, Path(point_dir),
                                   spec.with_values(seed=spec.design.seed + repeat), self.topo,
                                   idle_exit, warm_up)
        point.dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            stack.callback(self.backend.end)
            self.backend.begin(point)
            self._mark("servers_ready")
            self.slice = self._set_slice()
            stack.callback(self._mark, "detached")
            stack.callback(self.host.detach)  # the shim goes before the servers
            self.host.marks = {}
            self.host.attach(point)
            self.phases.update(self.host.marks)
            self._mark("attached")
            self.mode_stack = stack.pop_all()
        return point

    def _set_slice(self) -> dict | None:
        """--guest-slice-ms on every thread of every guest, once its servers run (their
        forks inherit it), each read back: point.json's `guest_slice`."""
        ms = self.spec.tuning.guest_slice_ms
        if ms is None:
            return None
        if self.ctx.runner.dry_run:
            self.ctx.runner.echo(f"# sched_setattr sched_runtime={ms:g} ms: every thread "
                                 f"of every {self.backend.name} guest")
            return None
        pids = [p for ps in self.backend.cgroups.pids().values() for p in ps]
        return dataclasses.asdict(guestslice.apply(pids, ms))

    def _mark(self, phase: str) -> None:
        self.phases[phase] = time.time_ns()

    @contextmanager
    def mode(self, mode: str, point_dir: Path, repeat: int = 0,
             spec: ExperimentSpec | None = None, warm_up: bool = False) -> Iterator[Testbed]:
        point = self.enter_mode(mode, point_dir, repeat, spec, warm_up=warm_up)
        try:
            yield self
        finally:
            self.mode_stack.close()
            self._mark("left")
            if not self.ctx.runner.dry_run:  # where a point's time went (docs/records.md)
                write_json(point.dir / "phases.json", self.phases)

    def warm_up(self, work_dir: Path, seconds: float) -> None:
        """An unmeasured load of `seconds` on every guest, into `work_dir` (removed after):
        a count's new guests pay for their first load (measured: the first point after
        growing from 24 to 32 guests used 6% more guest CPU than the points after it),
        and without this the sweep's first mode would always be the one to pay."""
        import shutil

        spec = self.spec.with_values(duration=seconds, faults=())
        try:
            with self.mode(spec.design.modes[0], work_dir, spec=spec, warm_up=True):
                self.run_load()
        finally:
            if not self.ctx.runner.dry_run:
                shutil.rmtree(work_dir, ignore_errors=True)

    def run_load(self, timeout_extra: float = 60.0) -> None:
        """The point's load (enter_mode's), measured in its load window."""
        point = self.point
        assert point is not None, "run_load is for a point entered (enter_mode)"
        with LoadWindow(self, point.dir) as window:
            self._mark("client_start")
            self._play(point, timeout_extra)
            self._mark("client_done")
        use = window.use
        if use is None:  # a dry run
            return
        # the guests write their records while the host side stops the shim (which
        # writes its own): the load is over, nothing is measured now.  Memory is read
        # once the guests are done: read beside their work it takes 5-10x as long.
        self.backend.end_load()
        write_json(point.dir / "cpu.json", use)
        self.host.detach()
        self._mark("shim_stopped")
        self.backend.collect()
        self._mark("collected")
        self._write_guests(point, self.backend.cgroups.memory())
        self._mark("weighed")

    def testbed_pids(self) -> list[int]:
        """Every process of the testbed: gamebed's descendants (client, shim, servers,
        guest kernels) and what the guests' cgroups hold (libvirt's QEMU is not ours)."""
        own = descendants(os.getpid())
        return own + [p for ps in self.backend.cgroups.pids().values() for p in ps
                      if p not in own]

    def run_queue(self) -> dict[int, schedwait.Snapshot]:
        """Each guest's threads' run-queue wait so far (gamebed/schedwait.py)."""
        return {g: schedwait.snapshot(p) for g, p in self.backend.cgroups.pids().items()}

    def _write_guests(self, point: Point, memory: dict[int, float]) -> None:
        """guests.json: each guest's age at the load's start, the loads it played before
        this one (0: newly booted), and its memory at the load's end (MiB PSS)."""
        start = self.phases["client_start"]
        write_json(point.dir / "guests.json", {
            str(g.index): {"age_s": round((start - self.added[g.index]) / 1e9, 1),
                           "loads_before": self.loads[g.index],
                           "pss_mib": memory.get(g.index)}
            for g in point.topo.guests})
        for g in point.topo.guests:
            self.loads[g.index] += 1

    def _play(self, point: Point, timeout_extra: float) -> None:
        """The client's load, with the spec's faults carried out on time meanwhile."""
        faults = parse_faults(point.spec.design.faults)
        env = self.backend.environment()
        # a second clock sync after the load follows a drifting guest clock; a guest on
        # the host's clock (netns) or on a clock read from it (UML) needs none
        end_sync = not env.get("shared_clock") and env.get("clock_drifts", True)
        carry = None
        if not end_sync and not faults and not self.ctx.runner.dry_run:
            carry = self.sync_carry.write(point.dir / SYNC_CARRY, point.topo.guests)
        if not faults or self.ctx.runner.dry_run:
            for f in faults:
                self.ctx.runner.echo(f"# fault {f.text()}: {self.backend.name} guest {f.guest}")
            self.host.run_client(point, timeout_extra, end_sync=end_sync, sync_carry=carry)
        else:
            started = point.dir / "load.started"
            started.unlink(missing_ok=True)
            with FaultSchedule(faults, started, point.dir, self.backend.fault,
                               self.backend.recover):
                self.host.run_client(point, timeout_extra, started_file=started,
                                     end_sync=end_sync)
            self.ctx.progress("      faults: " + ", ".join(f.text() for f in faults)
                              + " carried out (faults.json)")
        if not end_sync and not faults:
            self.sync_carry.learn(point.dir / CLOCK_SYNC)

    def environment(self) -> dict:
        cgroups = self.ctx.cgroups.describe() if self.ctx.cgroups else None
        out = {**self.host.environment(), **self.backend.environment(), "cgroups": cgroups}
        if self.spec.tuning.guest_slice_ms is not None:
            out["guest_slice"] = self.slice
        return out


class LoadWindow:
    """One load's window, as one context manager.  Entering it: the guests' CPUs settle
    (nothing left of the last point or of booting on them; settle.json), a --guest-cpus
    budget's hogs start, and every counter the load is measured by is read (the cores,
    the guests' CPU and run-queue wait, the budget's).  Leaving it: they are read again
    and the hogs stop.  `use` is then cpu.json's content (None in a dry run, or where
    the load failed)."""

    def __init__(self, bed: Testbed, point_dir: Path) -> None:
        self.bed, self.use, self.dir = bed, None, point_dir
        self.hogs = ExitStack()
        self.dry = bed.ctx.runner.dry_run
        self.start: tuple = ()

    def __enter__(self) -> LoadWindow:
        bed = self.bed
        if not self.dry:
            settle = bed.settle.wait()
            write_json(self.dir / "settle.json", settle)
            if settle["settled"] is False:
                bed.ctx.progress(f"      the guests' CPUs did not settle within "
                                 f"{bed.settle.timeout_s:g} s (settle.json); playing anyway")
        if bed.budget:  # the hogs run for the load only
            self.hogs.enter_context(bed.budget.hogs())
        plan = bed.point.spec.design.stalls if bed.point else None
        if self.dry and plan and bed.n_guests >= StallPlan.parse(plan).from_guests:
            bed.ctx.runner.echo(f"# --stalls {plan}: every testbed process frozen through "
                                f"the v1 freezer group {bed.ctx.manifest.prefix}-stalls "
                                "(freezer.state FROZEN, then THAWED) during the load")
        if not self.dry:  # what the machine takes from the load, and our own stalls
            cpus = bed.host.client_cpus() or []
            probe = sorted({int(c) for text in cpus for c in text.split(",") if c.isdigit()})
            self.hogs.enter_context(MachineWatch(self.dir / MACHINE, probe or None))
            # above the client: what holds the probe held the client too (GAMEBED_PROBE=off
            # leaves it out, to measure what it changes: docs/records.md)
            if probe and os.environ.get("GAMEBED_PROBE") != "off":
                self.hogs.enter_context(CpuProbe(self.dir / PROBE, probe,
                                                 bed.spec.tuning.client_priority + 1))
            if plan and bed.n_guests >= StallPlan.parse(plan).from_guests:
                self.hogs.enter_context(StallInjector(
                    StallPlan.parse(plan), self.dir / INJECTED, bed.ctx.manifest,
                    bed.testbed_pids))
        if not self.dry:
            self.start = (cpustat.core_times(), bed.backend.cgroups.usage(), time.monotonic(),
                          bed.budget.usage() if bed.budget else {}, bed.run_queue())
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        try:
            if exc_type is None and not self.dry:
                self.use = self._use()
        finally:
            self.hogs.close()

    def _use(self) -> dict:
        """cpu.json: the counters' differences over the window, read before the hogs
        stop."""
        bed = self.bed
        cores0, guests0, t0, budget0, rq0 = self.start
        rq1 = bed.run_queue()
        use = cpustat.window(cores0, cpustat.core_times(), guests0, bed.backend.cgroups.usage(),
                             time.monotonic() - t0)
        cpustat.add_run_queue(use, rq0, rq1)
        if bed.budget:
            use["budget"] = bed.budget.record(
                budget0, bed.budget.usage(),
                sum(g.get("cpu_s", 0.0) for g in use["guests"].values()), use["window_s"])
        return use


def testbed_context(run: Run, work_dir: Path, host_in_root_ns: bool) -> TestbedContext:
    """The context of a run's testbed: its names (a topology of no guests), `work_dir`
    (what belongs to the testbed, not to a point) and the run's door and progress."""
    spec = run.spec
    topo = Topology.build(run.manifest.prefix, 0, spec.game.game_port, host_in_root_ns)
    return TestbedContext(spec, topo, Path(work_dir), run.runner, run.manifest,
                          Placement.from_spec(spec.tuning.placement), run.progress)
