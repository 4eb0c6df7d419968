"""Guest backends: what realizes N game guests behind the host side (root to run).

- `netns` (vm/netns.py): network namespaces on the host's kernel, fast;
- `uml` (vm/uml.py, vm/uml_image.py, vm/guest/uml-init, uml_agent.py): user-mode
  Linux kernels, each a host process that is the guest's "vCPU";
- `libvirt` (vm/libvirt_backend.py, vm/libvirt_vm.py, vm/accel.py, vm/image.py,
  vm/kmod.py, vm/guest/): VMs under QEMU, KVM where a guest boots with it, else TCG.

Each implements gamebed/backend.py's interface; `make_testbed` puts one behind the
shared host side (hostside/point.py).  `vm/launch.py` leaves guests running.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.spec import DEFAULT_COUNTS, ExperimentSpec


def backend_class(name: str):
    """The backend class for `name` (imported only when asked for)."""
    if name == "libvirt":
        from vm.libvirt_backend import LibvirtGuests

        return LibvirtGuests
    if name == "netns":
        from vm.netns import NetnsGuests

        return NetnsGuests
    if name == "uml":
        from vm.uml import UmlGuests

        return UmlGuests
    raise ValueError(f"unknown backend {name!r}")


def make_testbed(spec: ExperimentSpec, n_guests: int, work_dir: Path, runner: Runner,
                 manifest: Manifest, progress: Callable[[str], None],
                 backend: Callable | None = None):
    """The testbed of one guest count for `spec.backend` (or the given backend factory);
    `work_dir` holds what belongs to the count rather than to one mode's point."""
    from hostside.point import Testbed, point_context

    cls = backend_class(spec.backend)
    ctx = point_context(spec, n_guests, spec.modes[0], work_dir, runner, manifest, progress,
                        cls.host_in_root_ns)
    return Testbed(ctx, backend or cls)


def uml_usable() -> tuple[bool, str]:
    """Whether UML guests can run here, by trying the parts (starts no guest)."""
    from gamebed.resources import CGROUP_V1_CPU, CGROUP_V1_CPUACCT
    from vm import uml_image

    try:
        binary = uml_image.uml_binary()
        release = uml_image.kernel_release()
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, OSError, subprocess.TimeoutExpired) as e:
        return False, f"user-mode Linux is not usable: {e}"
    if r.returncode != 0 or not r.stdout.strip():
        return False, f"`{binary} --version` failed ({r.returncode}): {r.stderr.strip()[:200]}"
    for root in (CGROUP_V1_CPU, CGROUP_V1_CPUACCT):
        if not root.is_dir():
            return False, f"{root} is not mounted (UML guests are accounted in cgroups)"
    return True, f"user-mode Linux {r.stdout.strip()} (modules {release}) runs here"


def resolve_backend(spec: ExperimentSpec) -> tuple[ExperimentSpec, str]:
    """The spec with a concrete backend and guest counts, and why that backend.
    auto: UML where it runs (guests with their own kernel, waiting for their CPU),
    else network namespaces."""
    backend, why = spec.backend, f"backend {spec.backend} was asked for"
    if backend == "auto":
        ok, detail = uml_usable()
        backend = "uml" if ok else "netns"
        why = (f"auto: {detail}" if ok else
               f"auto: namespaces, because {detail} (scripts/setup.sh installs it)")
    if spec.searching:  # a search chooses its counts as it goes
        return spec.replace(backend=backend), why
    counts = spec.guest_counts or DEFAULT_COUNTS[backend]
    return spec.replace(backend=backend, guest_counts=counts), why
