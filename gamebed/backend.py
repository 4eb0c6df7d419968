"""The one small interface every guest backend implements (no privileges).

A testbed (vm/testbed.py) is the host side (hostside/host.py: client, uplink,
stamper, shim) plus N guests behind it.  The guests are built once and each
timestamp mode is measured on them in turn; between modes the testbed can grow or
shrink (add guests to the running ones, or stop some).  A backend only realizes the
guests, and each guest's host-side port, named by the `Topology`:

- `start(guests)`: what the guests share (images, daemon connections), then
  `add_guests(guests)`;
- `add_guests(gs)` / `remove_guests(gs)`: create or remove those guests and their
  ports, each with its own cgroup and work directory; only between points;
- `begin(point)`: set up `point.mode`'s receive path for `point.topo.guests`, start
  their game servers, return once every server answers;
- `end_load()`: the load is over (a guest may start on its records);
- `collect()`: after the load, bring the guests' records into the point's directory;
- `end()`: undo `begin()` (servers stopped), whatever happened;
- `stop()`: remove everything `start()` and `add_guests()` made, whatever happened;
- `cgroups`: each guest's cgroup by guest index (gamebed/resources.py GuestCgroups;
  empty where the guests are not in cgroups of ours): its `usage()` (cumulative CPU
  counters), `pids()` (the guest's host processes: whose run-queue wait is recorded,
  gamebed/schedwait.py, and whose scheduler slice --guest-slice-ms sets) and
  `memory()` (MiB of PSS now);
- `environment()`: what a report must state about these guests;
- `guest_info()`: per guest, how to reach it (console, process, name) for `launch`;
- `fault(f)` / `recover(f)`: break guest f.guest during the load (gamebed/fault.py:
  SIGKILL of its server or of the whole guest) and, where the backend can, bring
  it back; called from the fault schedule's thread while the client plays.

`ctx` is the testbed's, fixed for its life: its topology names the client, the host
side's namespace and the game port, but lists no guest (`ctx.topo.guests` is empty);
the guests come through `start`/`add_guests`/`remove_guests`, and a point's guests,
mode, directory and spec (the run's, with that repeat's seed) come with the `Point`
that `begin()` is handed: a backend keeps it until `end()`.  The backends (vm/, one registry:
vm.BACKENDS): `netns` (network namespaces on the host kernel), `uml` (user-mode
Linux kernels) and `libvirt` (VMs under QEMU/KVM or TCG).  No backend inherits from
another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gamebed.cgroups import CgroupTree
from gamebed.fault import Fault
from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec
from gamebed.topology import GuestAddr, Placement, Topology

if TYPE_CHECKING:
    from gamebed.resources import GuestCgroups

# a server stops this long after the last input, then writes its records; 0: it runs
# until its guest is destroyed (`gamebed launch`)
IDLE_EXIT_S = 3.0


@dataclass(frozen=True)
class TestbedContext:
    """What a testbed's parts share for its whole life (the host side, the backend)."""

    spec: ExperimentSpec  # the run's
    topo: Topology  # the testbed's names; no guests (a point's are point.topo.guests)
    work_dir: Path  # what belongs to the testbed rather than to a point
    runner: Runner
    manifest: Manifest
    placement: Placement
    progress: Callable[[str], None]  # a gamebed.progress.Progress (or any callable)
    # the testbed's cgroups (gamebed/cgroups/): every guest's group is made under its
    # `guests` parent (a --guest-cpus budget's, the UML guests' cpuset); None: no testbed
    cgroups: CgroupTree | None = None


@dataclass(frozen=True)
class Point:
    """One measurement point, handed to the parts that serve it: its timestamp mode, its
    directory, its spec (the run's, with the repeat's seed; a warm-up's length) and its
    guests (topo.guests: every guest the testbed runs now).  `idle_exit`: how long a
    server that stops by itself (libvirt's) lasts after its last input; 0: until its
    guest is destroyed (`gamebed launch`).  `warm_up`: an unmeasured load (Testbed.warm_up),
    whose client syncs the clocks with every server at once."""

    mode: str
    dir: Path
    spec: ExperimentSpec
    topo: Topology
    idle_exit: float = IDLE_EXIT_S
    warm_up: bool = False


class GuestBackend(Protocol):
    name: str
    host_in_root_ns: bool  # the guests' ports live in the root namespace (libvirt's taps)
    BOOT_S_PER_GUEST: float  # progress estimate only
    ctx: TestbedContext
    cgroups: GuestCgroups  # each guest's, by index; empty where not ours (libvirt)

    def start(self, guests: tuple[GuestAddr, ...]) -> None: ...

    def add_guests(self, guests: tuple[GuestAddr, ...]) -> None: ...

    def remove_guests(self, guests: tuple[GuestAddr, ...]) -> None: ...

    def begin(self, point: Point) -> None: ...

    def end_load(self) -> None: ...  # the load is over: guests may start on their records

    def collect(self) -> None: ...  # every guest's records in the point directory

    def end(self) -> None: ...

    def stop(self) -> None: ...

    def environment(self) -> dict: ...

    def guest_info(self) -> list[dict]: ...

    def fault(self, f: Fault) -> None: ...

    def recover(self, f: Fault) -> None: ...
