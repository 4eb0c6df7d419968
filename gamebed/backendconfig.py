"""The backends' own settings (no privileges): one record per backend with a setting no
other backend reads.  A spec holds one of each (gamebed/spec.py) and only that backend
reads it (UmlConfig: vm/uml.py, vm/uml_probe.py; LibvirtConfig: vm/libvirt_backend.py,
vm/libvirt_vm.py).  They live in the core, not beside their backends, because the core
does not import vm/ (docs/architecture.md).  The TOML keys are these fields' names.
"""

from __future__ import annotations

from dataclasses import dataclass

# how a UML guest's kernel catches its processes' syscalls; auto: seccomp where the kernel
# has it (>= 6.16), else ptrace
UML_MODES = ("auto", "seccomp", "ptrace")


@dataclass(frozen=True)
class UmlConfig:
    """What `--backend uml` reads and no other backend does."""

    # ptrace (every guest syscall stops the guest process for its kernel) or seccomp (a
    # filter turns it into a signal handled in the process; trusted guests only, ours
    # are; kernels >= 6.16); auto: seccomp where the kernel has it, measured faster and
    # as stable (README); every point records the mode it ran
    uml_mode: str = "auto"
    uml_kernel: str | None = None  # another UML binary instead of gamebed's (vm/uml_kernel.py)

    def problems(self, backend: str) -> list[str]:
        out = []
        if self.uml_mode not in UML_MODES:
            out.append(f"uml_mode must be one of {UML_MODES}")
        if self.uml_kernel is not None and backend not in ("auto", "uml"):
            out.append("uml_kernel is a UML guest kernel: it needs backend uml")
        return out

ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class LibvirtConfig:
    """What `--backend libvirt` reads and no other backend does."""

    libvirt_uri: str = "qemu:///system"
    accel: str = "auto"  # kvm where a guest boots with it, else tcg (vm/accel.py)

    def problems(self) -> list[str]:
        return [] if self.accel in ACCELS else [f"accel must be one of {ACCELS}"]
