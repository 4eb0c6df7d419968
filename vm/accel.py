"""Which accelerator the game VMs get: KVM where a guest really boots with it, else TCG.

No privileges to import; the probe itself starts a libvirt domain (root).

The decision never takes a run down.  In order:
1. `--accel kvm|tcg` decides outright (a user who knows better).
2. Cheap checks, nothing booted: no `/dev/kvm`; a `/dev/kvm` that does not open; a
   PVM-only `/dev/kvm` (module `kvm_pvm` loaded, no vmx/svm flag in /proc/cpuinfo).
   PVM runs a guest kernel's kernel-mode code through KVM's instruction emulator
   unless the kernel is built for PVM, which the gamebed image's is not: measured
   at about 1.5 M instructions/s, a 10-25 minute boot.
3. A decision cached for this host boot (`/run/gamebed-accel.json`, or
   `$GAMEBED_ACCEL_CACHE`), with its reason.
4. A probe guest with KVM: *any* failure to create, start or boot it before the
   deadline means TCG, and the first line of the error is the reason.

The reason ("TCG: /dev/kvm is PVM-only ...") goes into each point's environment
and the report, so a reader knows why the guests ran emulated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("/run/gamebed-accel.json")  # tmpfs: per host boot, whatever the state dir
PVM_NOTE = ("PVM runs an unmodified guest kernel's kernel mode through KVM's instruction "
            "emulator, about 1.5 M instructions/s: a 10-25 min boot")


@dataclass(frozen=True)
class Accel:
    """The accelerator chosen and why; `domain_type` is libvirt's word for it."""

    domain_type: str  # "kvm" or "qemu" (TCG)
    reason: str

    @property
    def name(self) -> str:
        return "kvm" if self.domain_type == "kvm" else "tcg"


@dataclass(frozen=True)
class HostKvm:
    """What the host says about KVM, read without starting anything."""

    dev: Path = Path("/dev/kvm")
    cpuinfo: Path = Path("/proc/cpuinfo")
    modules: Path = Path("/sys/module")

    def cheap_verdict(self) -> str | None:
        """A reason to use TCG that needs no guest, or None if only a probe can tell."""
        if not self.dev.exists():
            return f"TCG: no {self.dev} (KVM is not available on this host)"
        try:
            os.close(os.open(self.dev, os.O_RDWR))
        except OSError as e:
            return f"TCG: {self.dev} does not open ({e.strerror})"
        if not self._hw_virt() and (self.modules / "kvm_pvm").exists():
            return (f"TCG: {self.dev} is PVM-only (kvm_pvm loaded, no vmx/svm in "
                    f"{self.cpuinfo}); {PVM_NOTE}")
        return None

    def _hw_virt(self) -> bool:
        try:
            text = self.cpuinfo.read_text()
        except OSError:
            return True  # cannot tell: let the probe decide
        for line in text.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool(flags & {"vmx", "svm"})
        return True


def cache_path() -> Path:
    return Path(os.environ.get("GAMEBED_ACCEL_CACHE", DEFAULT_CACHE))


def boot_id() -> str:
    """This host boot's id: what the per-boot caches in /run are keyed by."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def read_cache(path: Path) -> Accel | None:
    """The decision cached for this boot, or None (missing, stale, unreadable, old format)."""
    try:
        known = json.loads(path.read_text())
        if known.get("boot_id") == boot_id() and known.get("reason"):
            return Accel(known["domain_type"], known["reason"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return None


def write_cache(path: Path, accel: Accel) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"boot_id": boot_id(), "domain_type": accel.domain_type,
                                   "reason": accel.reason}))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache we cannot write only costs the next run a probe


def first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def choose(accel: str, probe: Callable[[], None], progress: Callable[[str], None] = print,
           host: HostKvm | None = None, cache: Path | None = None,
           dry_run: bool = False) -> Accel:
    """Decide as the module docstring says.  `probe()` boots a KVM guest and returns once
    it runs user space; anything it raises (short of ^C) means TCG."""
    if accel == "kvm":
        return Accel("kvm", "KVM: forced by --accel kvm")
    if accel == "tcg":
        return Accel("qemu", "TCG: chosen by --accel tcg")
    verdict = (host or HostKvm()).cheap_verdict()
    if verdict:
        return Accel("qemu", verdict)
    if dry_run:
        return Accel("kvm", "KVM: /dev/kvm opens (dry run: no probe guest started)")
    cache = cache or cache_path()
    known = read_cache(cache)
    if known:
        return known
    progress("libvirt: /dev/kvm opens; trying a KVM guest")
    try:
        probe()
        result = Accel("kvm", "KVM: a probe guest booted to user space")
    except TimeoutError as e:
        result = Accel("qemu", f"TCG: KVM guest did not boot in time: {first_line(e)}")
    except Exception as e:  # noqa: BLE001 - whatever went wrong, TCG still works
        result = Accel("qemu", f"TCG: KVM guest failed to start: {first_line(e)}")
        progress(f"libvirt: {result.reason}; using TCG")
    write_cache(cache, result)
    return result
