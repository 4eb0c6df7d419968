"""Guest backends: what realizes N game guests behind the host side (root to run).

- `netns` (vm/netns.py): network namespaces on the host's kernel, fast;
- `uml` (vm/uml.py, vm/uml_image.py, vm/guest/uml-init, uml_agent.py): user-mode
  Linux kernels, each a host process that is the guest's "vCPU";
- `libvirt` (vm/libvirt_backend.py, vm/libvirt_vm.py, vm/accel.py, vm/image.py,
  vm/kmod.py, vm/guest/): VMs under QEMU, KVM where a guest boots with it, else TCG.

Each implements gamebed/backend.py's interface; `BACKENDS` is their one registry and
`testbeds` puts one behind the shared host side (vm/testbed.py).  What the
backends share has one home: vm/shared.py (a guest's namespace and veth, the
per-process image builds).  `vm/launch.py` leaves guests running.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from gamebed.run import Run
from gamebed.spec import ExperimentSpec

# the one registry of backends: name → (module, class), imported only when asked for
BACKENDS = {"netns": ("vm.netns", "NetnsGuests"), "uml": ("vm.uml", "UmlGuests"),
            "libvirt": ("vm.libvirt_backend", "LibvirtGuests")}


def backend_class(name: str):
    """The backend class for `name`."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def testbeds(run: Run, n_guests: int, work_dir: Path, backend: Callable | None = None):
    """A testbed of `n_guests` for run.spec.backend (or the given backend factory), not
    yet entered; `work_dir` holds what belongs to the testbed rather than to a point."""
    from vm.testbed import Testbed, testbed_context

    cls = backend_class(run.spec.backend)
    ctx = testbed_context(run, work_dir, cls.host_in_root_ns)
    return Testbed(ctx, backend or cls, n_guests)


def boot_s_per_guest(name: str) -> float:
    """The backend's boot estimate per guest, for progress bars only."""
    return backend_class(name).BOOT_S_PER_GUEST


def uml_prerequisites() -> str | None:
    """What UML guests lack here without starting anything (None: nothing): cgroups for
    their accounting, and what gamebed's kernel needs to be built or found."""
    from gamebed import cgroups
    from vm import uml_kernel

    layout = cgroups.detect()
    missing = layout.missing(("cpu", "cpuacct", "cpuset"))
    if missing:
        return (f"no cgroup hierarchy holds {', '.join(missing)} ({layout.kind} host; UML "
                "guests are accounted in cgroups and kept to their CPUs by a cpuset): "
                "mount cgroup2 at /sys/fs/cgroup")
    if uml_kernel.cached(uml_kernel.Recipe()) is None:
        missing = [t for t in uml_kernel.BUILD_TOOLS if not shutil.which(t)]
        if missing:
            return (f"gamebed's UML kernel is not built and {', '.join(missing)} "
                    f"(to build it) is missing")
    return None


def uml_usable(spec: ExperimentSpec | None = None, progress: Callable[[str], None] = print,
               dry_run: bool = False) -> tuple[bool, str]:
    """Whether UML guests run here, by trying: one real guest boots and its agent answers
    (vm/uml.py probe; the kernel and image are built first if they are not cached).
    A dry run boots and builds nothing: its prerequisites decide."""
    problem = uml_prerequisites()
    if problem:
        return False, problem
    if dry_run:
        return True, "dry run: UML's prerequisites are here (no probe guest booted)"
    from vm import uml_probe

    try:
        return True, uml_probe.probe(spec or ExperimentSpec(), progress)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
        from vm.accel import first_line

        return False, first_line(e)


def resolve_backend(spec: ExperimentSpec, dry_run: bool = False
                    ) -> tuple[ExperimentSpec, str]:
    """The spec with a concrete backend and guest counts, and why that backend.
    auto: UML where it runs (guests with their own kernel, waiting for their CPU),
    else network namespaces."""
    backend, why = spec.backend, f"backend {spec.backend} was asked for"
    if backend == "auto":
        ok, detail = uml_usable(spec, dry_run=dry_run)
        backend = "uml" if ok else "netns"
        if not ok:  # the UML kernel asked for did not run: namespaces have none
            spec = spec.with_values(uml_kernel=None)
        why = (f"auto: {detail}" if ok else
               f"auto: namespaces, because no UML guest ran here: {detail} (see "
               "`gamebed run --backend uml` for the whole error)")
    if spec.searching:  # a search chooses its counts as it goes
        return spec.replace(backend=backend), why
    counts = spec.design.guest_counts or spec.default_counts(backend)
    return spec.replace(backend=backend, guest_counts=counts), why
