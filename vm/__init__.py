"""Guest backends: what realizes N game guests behind the host side (root to run).

- `netns` (vm/netns.py): network namespaces on the host's kernel, fast;
- `libvirt` (vm/libvirt_backend.py, vm/libvirt_vm.py, vm/accel.py, vm/image.py,
  vm/kmod.py, vm/guest/): VMs under QEMU, KVM where a guest boots with it, else TCG.

Each implements gamebed/backend.py's interface; `make_point` puts one behind the
shared host side (hostside/point.py).  `vm/launch.py` leaves guests running.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec


def backend_class(name: str):
    """The backend class for `name` (imported only when asked for)."""
    if name == "libvirt":
        from vm.libvirt_backend import LibvirtGuests

        return LibvirtGuests
    if name == "netns":
        from vm.netns import NetnsGuests

        return NetnsGuests
    raise ValueError(f"unknown backend {name!r}")


def make_point(spec: ExperimentSpec, n_guests: int, mode: str, point_dir: Path,
               runner: Runner, manifest: Manifest, progress: Callable[[str], None],
               backend: Callable | None = None):
    """A measurement point for `spec.backend` (or the given backend factory)."""
    from hostside.point import MeasurementPoint, point_context

    cls = backend_class(spec.backend)
    ctx = point_context(spec, n_guests, mode, point_dir, runner, manifest, progress,
                        cls.host_in_root_ns)
    return MeasurementPoint(ctx, backend or cls)
