"""The one small interface every guest backend implements (no privileges).

A testbed for one guest count is the host side (hostside/host.py: client, uplink,
stamper, shim) plus N guests behind it.  The guests are built once per count and
each timestamp mode is measured on them in turn.  A backend only realizes the
guests, and each guest's host-side port, named by the point's `Topology`:

- `start()`: create the guests and their ports (what does not depend on the mode);
- `begin()`: set up `ctx.mode`'s receive path, start the game servers, return
  once every server answers;
- `collect()`: after the load, bring the guests' records into `ctx.dir`;
- `end()`: undo `begin()` (servers stopped), whatever happened;
- `stop()`: remove everything `start()` made, whatever happened;
- `cpu_usage()`: cumulative CPU counters per guest index (CpuCgroup.usage());
- `environment()`: what a report must state about these guests;
- `fault(f)` / `recover(f)`: break guest f.guest during the load (gamebed/fault.py:
  SIGKILL of its server or of the whole guest) and, where the backend can, bring
  it back; called from the fault schedule's thread while the client plays.

`ctx` is replaced before each mode's `begin()` (same topology, new mode and
directory).  Backends (vm/): `netns` (network namespaces on the host kernel),
`uml` (user-mode Linux kernels) and `libvirt` (VMs under QEMU/KVM or TCG).  No
backend inherits from another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gamebed.fault import Fault
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
    ctx: PointContext

    def start(self) -> None: ...

    def begin(self) -> None: ...

    def collect(self) -> None: ...

    def end(self) -> None: ...

    def stop(self) -> None: ...

    def cpu_usage(self) -> dict[int, dict]: ...

    def environment(self) -> dict: ...

    def fault(self, f: Fault) -> None: ...

    def recover(self, f: Fault) -> None: ...
