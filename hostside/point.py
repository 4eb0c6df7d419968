"""A testbed for one guest count: the shared host side plus a backend's guests (root).

On enter: the host side's client link, then the backend's guests (and their
ports), built once.  Each timestamp mode is then measured on the same guests
(`mode()`): the backend sets up the mode's receive path and starts the servers,
the stamper and shim attach (they need every port to exist), `run_load()` plays
for the spec's duration, records CPU use (cpu.json) and has the backend collect
the guests' records.  Leaving a mode detaches the host side and stops the
servers; leaving the testbed removes everything, in reverse order, whatever
happened.  The backend is handed in (gamebed/backend.py), so this module knows no
backend by name.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from fpsmodel.records import write_json
from gamebed import cpustat
from gamebed.backend import GuestBackend, PointContext
from gamebed.fault import FaultSchedule, parse_faults
from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec
from gamebed.topology import Placement, Topology
from hostside.host import HostSide

BackendFactory = Callable[[PointContext], GuestBackend]


class Testbed:
    def __init__(self, ctx: PointContext, backend: BackendFactory) -> None:
        self.ctx = ctx
        self.spec = ctx.spec  # the run's; a repeat plays its own seed (enter_mode)
        self.host = HostSide(ctx)
        self.backend = backend(ctx)
        self.stack = ExitStack()
        self.mode_stack = ExitStack()

    @property
    def topo(self) -> Topology:
        return self.ctx.topo

    def __enter__(self) -> Testbed:
        with ExitStack() as stack:  # on a failure half-way, what was built goes again
            stack.enter_context(self.host)
            stack.callback(self.backend.stop)
            self.backend.start()
            self.stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode_stack.close()
        self.stack.close()

    def enter_mode(self, mode: str, point_dir: Path, repeat: int = 0) -> None:
        """Measure `mode` next, into `point_dir`: receive path, servers, stamper, shim.
        Repeat r of a point plays the schedules of seed + r (in every mode alike)."""
        self.mode_stack.close()
        spec = dataclasses.replace(self.spec, seed=self.spec.seed + repeat)
        self.ctx = dataclasses.replace(self.ctx, mode=mode, dir=Path(point_dir), spec=spec)
        self.host.ctx = self.backend.ctx = self.ctx
        self.ctx.dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            stack.callback(self.backend.end)
            self.backend.begin()
            stack.callback(self.host.detach)  # the shim goes before the servers
            self.host.attach()
            self.mode_stack = stack.pop_all()

    @contextmanager
    def mode(self, mode: str, point_dir: Path, repeat: int = 0) -> Iterator[Testbed]:
        self.enter_mode(mode, point_dir, repeat)
        try:
            yield self
        finally:
            self.mode_stack.close()

    def run_load(self, timeout_extra: float = 60.0) -> None:
        dry = self.ctx.runner.dry_run
        if not dry:
            cores0, guests0, t0 = cpustat.core_times(), self.backend.cpu_usage(), time.monotonic()
        self._play(timeout_extra)
        if dry:
            return
        use = cpustat.window(cores0, cpustat.core_times(), guests0, self.backend.cpu_usage(),
                             time.monotonic() - t0)
        write_json(self.ctx.dir / "cpu.json", use)
        self.backend.collect()

    def _play(self, timeout_extra: float) -> None:
        """The client's load, with the spec's faults carried out on time meanwhile."""
        faults = parse_faults(self.spec.faults)
        if not faults or self.ctx.runner.dry_run:
            for f in faults:
                self.ctx.runner.echo(f"# fault {f.text()}: {self.backend.name} guest {f.guest}")
            self.host.run_client(timeout_extra)
            return
        started = self.ctx.dir / "load.started"
        started.unlink(missing_ok=True)
        with FaultSchedule(faults, started, self.ctx.dir, self.backend.fault,
                           self.backend.recover):
            self.host.run_client(timeout_extra, started_file=started)
        self.ctx.progress("      faults: " + ", ".join(f.text() for f in faults)
                          + " carried out (faults.json)")

    def environment(self) -> dict:
        return {**self.host.environment(), **self.backend.environment()}


def point_context(spec: ExperimentSpec, n_guests: int, mode: str, point_dir: Path,
                  runner: Runner, manifest: Manifest, progress: Callable[[str], None],
                  host_in_root_ns: bool) -> PointContext:
    topo = Topology.build(manifest.prefix, n_guests, spec.game_port, host_in_root_ns)
    return PointContext(spec, topo, mode, Path(point_dir), runner, manifest,
                        Placement.from_spec(spec.placement), progress)
