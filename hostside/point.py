"""One measurement point: the shared host side plus a backend's guests (root).

On enter: the host side's client link, then the backend's guests (and their
ports), wait until every server answers, then the stamper and shim (they need
every port to exist).  `run_load()` plays for the spec's duration and has the
backend collect its guests' records.  On exit everything goes, in reverse order,
whatever happened.  The backend is handed in (gamebed/backend.py), so this module
knows no backend by name.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from gamebed.backend import GuestBackend, PointContext
from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec
from gamebed.topology import Placement, Topology
from hostside.host import HostSide

BackendFactory = Callable[[PointContext], GuestBackend]


class MeasurementPoint:
    def __init__(self, ctx: PointContext, backend: BackendFactory) -> None:
        self.ctx = ctx
        self.host = HostSide(ctx)
        self.backend = backend(ctx)
        self.stack = ExitStack()

    @property
    def topo(self) -> Topology:
        return self.ctx.topo

    def __enter__(self) -> MeasurementPoint:
        self.ctx.dir.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:  # on a failure half-way, what was built goes again
            stack.enter_context(self.host)
            stack.callback(self.backend.stop)
            self.backend.start()
            self.backend.ready()
            stack.callback(self.host.detach)  # the shim goes before the guests' ports
            self.host.attach()
            self.stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def run_load(self, timeout_extra: float = 60.0) -> None:
        self.host.run_client(timeout_extra)
        if not self.ctx.runner.dry_run:
            self.backend.collect()

    def environment(self) -> dict:
        return {**self.host.environment(), **self.backend.environment()}


def point_context(spec: ExperimentSpec, n_guests: int, mode: str, point_dir: Path,
                  runner: Runner, manifest: Manifest, progress: Callable[[str], None],
                  host_in_root_ns: bool) -> PointContext:
    topo = Topology.build(manifest.prefix, n_guests, spec.game_port, host_in_root_ns)
    return PointContext(spec, topo, mode, Path(point_dir), runner, manifest,
                        Placement.from_spec(spec.placement), progress)
