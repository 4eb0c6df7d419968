"""The one small interface every guest backend implements (no privileges).

A measurement point is the host side (hostside/host.py: client, uplink, stamper,
shim) plus N guests behind it.  A backend only realizes the guests, and each
guest's host-side port, named by the point's `Topology`:

- `start()`: create the guests and their ports, start their game servers;
- `ready()`: return once every server answers;
- `collect()`: after the load, bring the guests' records into the point directory;
- `stop()`: remove everything `start()` made, whatever happened;
- `environment()`: what a report must state about these guests.

Backends (vm/): `netns` (network namespaces on the host kernel) and `libvirt`
(VMs under QEMU/KVM or TCG).  No backend inherits from another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec
from gamebed.topology import Placement, Topology


@dataclass(frozen=True)
class PointContext:
    """Everything one point's parts share."""

    spec: ExperimentSpec
    topo: Topology
    mode: str
    dir: Path
    runner: Runner
    manifest: Manifest
    placement: Placement
    progress: Callable[[str], None]


class GuestBackend(Protocol):
    name: str
    host_in_root_ns: bool  # the guests' ports live in the root namespace (libvirt's taps)

    def start(self) -> None: ...

    def ready(self) -> None: ...

    def collect(self) -> None: ...

    def stop(self) -> None: ...

    def environment(self) -> dict: ...
