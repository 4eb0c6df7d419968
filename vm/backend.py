"""The one small interface every backend's measurement point implements (no privileges).

A point is built on `__enter__` (guests, host stamper and shim, game servers up and
answering), measured by `run_load()` (the client plays for the spec's duration; the
guests' records end up in the point directory) and torn down on `__exit__`, whatever
happened.  `environment()` says what a report must state about the setup.

- `vm.netns.NetnsPoint`: guests are network namespaces (fast, one kernel).
- `vm.vmpoint.LibvirtPoint`: guests are libvirt VMs (KVM or TCG).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from vm.resources import Manifest
from vm.spec import ExperimentSpec
from vm.sysutil import Runner


class Point(Protocol):
    def __enter__(self) -> Point: ...

    def __exit__(self, *exc: object) -> None: ...

    def run_load(self, timeout_extra: float = 60.0) -> None: ...

    def environment(self) -> dict: ...


def make_point(spec: ExperimentSpec, guests: int, mode: str, point_dir: Path, runner: Runner,
               manifest: Manifest, progress) -> Point:
    """The point class for `spec.backend`."""
    if spec.backend == "libvirt":
        from vm.vmpoint import LibvirtPoint

        return LibvirtPoint(spec, guests, mode, point_dir, runner, manifest, progress)
    from vm.netns import NetnsPoint

    return NetnsPoint(spec, guests, mode, point_dir, runner, manifest)
