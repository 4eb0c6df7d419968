"""Game VMs through libvirt: daemon, accelerator probe, domain XML, one VM (root).

Each VM is a transient libvirt domain: 1 vCPU, small memory, direct kernel boot
of the gamebed image (vm/image.py) from a per-VM copy-on-write overlay, a
virtio-net NIC on a tap that libvirt creates and deletes itself, a raw results
disk the guest writes its records to as a tar stream before it powers off, and
the serial console in a file.  Domain type `kvm` where a guest really boots with
KVM, else `qemu` (TCG): vm/accel.py decides, and never lets the probe fail a run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from gamebed.backendconfig import LibvirtConfig
from gamebed.manifest import VM_DIR, Manifest
from gamebed.proc import Runner, log, shielding, shielding_enter, wait_for
from vm.accel import Accel, choose
from vm.image import Image

DEFAULT_URI = LibvirtConfig().libvirt_uri  # the backend's config owns it
PROBE_DEADLINE_S = 25.0
LIBVIRT_HINT = ("libvirt-python is missing: run `bash scripts/setup.sh` (Debian: "
                "libvirt-daemon-system libvirt-dev pkg-config; pip: libvirt-python)")


def _libvirt():
    try:
        import libvirt
    except ImportError as e:
        raise RuntimeError(LIBVIRT_HINT) from e
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions
    return libvirt


@dataclass(frozen=True)
class Daemon:
    """An open libvirt connection and the URI it was opened with (None: a dry run)."""

    conn: object
    uri: str


def connect(uri: str, runner: Runner, progress: Callable[[str], None] = print):
    """Open `uri`; for the local system URI, start libvirtd where none runs (no systemd
    here: `virtlogd -d` and `libvirtd -d`, left running like a system service)."""
    libvirt = _libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as first:
        if uri != DEFAULT_URI or os.geteuid() != 0 or not shutil.which("libvirtd"):
            raise RuntimeError(f"cannot connect to libvirt at {uri}: {first}") from None
    progress("libvirt: no daemon answered; starting `virtlogd -d` and `libvirtd -d` "
             "(they keep running; stop them with `pkill libvirtd virtlogd`)")
    runner.run(["virtlogd", "-d"], check=False)
    runner.run(["libvirtd", "-d"])
    conn = None

    def opened() -> bool:
        nonlocal conn
        try:
            conn = libvirt.open(uri)
            return True
        except libvirt.libvirtError:
            return False

    wait_for(opened, 30, "libvirtd to accept connections")
    return conn


@dataclass(frozen=True)
class VmConfig:
    """What differs between guests of one point."""

    name: str
    tap: str
    mac: str
    cmdline: str  # gamebed.* arguments for the guest init
    memory_mib: int = 160
    cpuset: str | None = None  # host CPUs for the vCPU and QEMU's own threads


def domain_xml(cfg: VmConfig, image: Image, overlay: Path, results: Path, console: Path,
               domain_type: str) -> str:
    # a nested host may refuse MSRs that host-passthrough exposes (measured: "failed to set
    # MSR 0x10a", IA32_ARCH_CAPABILITIES, aborts QEMU): keep that one out
    cpu = ("<cpu mode='host-passthrough' check='none'>"
           "<feature policy='disable' name='arch-capabilities'/></cpu>" if domain_type == "kvm"
           else "<cpu mode='custom' match='exact'><model>qemu64</model></cpu>")
    pin = f" cpuset='{cfg.cpuset}'" if cfg.cpuset else ""
    tune = (f"<cputune><emulatorpin cpuset='{cfg.cpuset}'/></cputune>" if cfg.cpuset else "")
    # a bounded TCG translation cache: the default lets each qemu grow past 1 GB
    tcg = "<tcg><tb-cache unit='MiB'>32</tb-cache></tcg>" if domain_type == "qemu" else ""
    cmdline = ("console=ttyS0 root=/dev/vda rw ipv6.disable=1 quiet panic=-1 "
               "modprobe.blacklist=virtio_net " + cfg.cmdline)
    if domain_type == "qemu":
        # TCG's TSC follows the host clock; without this, a starved guest's clocksource
        # watchdog may switch it to a wrapping counter and lose time
        cmdline += " tsc=reliable"
    return f"""<domain type='{domain_type}'>
  <name>{escape(cfg.name)}</name>
  <memory unit='MiB'>{cfg.memory_mib}</memory>
  <vcpu placement='static'{pin}>1</vcpu>
  {tune}
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel><initrd>{escape(str(image.initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline></os>
  <features><acpi/>{tcg}</features>
  {cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{escape(str(overlay))}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{escape(str(results))}'/><target dev='vdb' bus='virtio'/></disk>
    <interface type='ethernet'><mac address='{cfg.mac}'/>
      <target dev='{escape(cfg.tap)}' managed='yes'/><model type='virtio'/></interface>
    <serial type='file'><source path='{escape(str(console))}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


class GameVm:
    """One transient domain with its overlay and results disk: start on enter; on exit
    destroy it if it still runs and delete its files.  All listed in the manifest."""

    def __init__(self, cfg: VmConfig, image: Image, daemon: Daemon, domain_type: str,
                 runner: Runner, manifest: Manifest) -> None:
        self.cfg, self.image, self.conn, self.uri = cfg, image, daemon.conn, daemon.uri
        self.domain_type, self.runner, self.manifest = domain_type, runner, manifest
        self.dir = VM_DIR / manifest.prefix / cfg.name
        self.overlay, self.results = self.dir / "overlay.qcow2", self.dir / "results.img"
        self.console = self.dir / "console.log"
        self.dom = None
        self.keep_console: Path | None = None  # where the console log survives teardown
        self._entries: list[dict] = []

    @shielding_enter  # listed, created and handed over, or undone
    def __enter__(self) -> GameVm:
        m = self.manifest
        self._entries.append(m.add(kind="dir", path=str(self.dir)))
        self._entries.append(m.add(kind="domain", name=self.cfg.name, uri=self.uri,
                                   tap=self.cfg.tap))
        if self.runner.dry_run:
            self.runner.echo(f"qemu-img create -f qcow2 -b {self.image.base} -F qcow2 "
                             f"{self.overlay}")
            self.runner.echo(f"virsh -c {self.uri} create {self.dir}/domain.xml   "
                             f"# {self.domain_type}, tap {self.cfg.tap}: {self.cfg.cmdline}")
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # QEMU may run as libvirt-qemu
        self.runner.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.image.base,
                         "-F", "qcow2", self.overlay])
        with open(self.results, "wb") as f:
            f.truncate(64 * 2**20)  # sparse; the guest writes a tar stream from offset 0
        xml = domain_xml(self.cfg, self.image, self.overlay, self.results, self.console,
                         self.domain_type)
        (self.dir / "domain.xml").write_text(xml)
        self.dom = self.conn.createXML(xml, 0)
        return self

    def running(self) -> bool:
        if self.dom is None:
            return False
        try:
            return bool(self.dom.isActive())
        except Exception:  # a transient domain that powered off is gone: not running
            return False

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def wait_console(self, marker: str, timeout: float, what: str) -> str:
        """Wait for a console line starting with `marker`; returns that line."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [ln for ln in self.console_text().splitlines() if ln.startswith(marker)]
            if not found and not self.running():
                raise RuntimeError(f"{self.cfg.name} stopped before {what}; console: "
                                   f"{self.console}\n{self.console_text()[-2000:]}")
            return bool(found)

        wait_for(seen, timeout, f"{self.cfg.name}: {what}")
        return found[0]

    def collect(self, dest: Path, timeout: float) -> None:
        """Wait for the guest to power off, then unpack its results disk into dest."""
        wait_for(lambda: not self.running(), timeout, f"{self.cfg.name} to finish and power off")
        dest.mkdir(parents=True, exist_ok=True)
        self.runner.run(["tar", "-xf", self.results, "-C", dest])
        shutil.copy2(self.console, dest / "console.log")

    @shielding  # destroyed and struck off, or neither
    def __exit__(self, *exc: object) -> None:
        if not self.runner.dry_run:
            if self.dom is None:  # a signal may land after createXML but before the store
                try:
                    self.dom = self.conn.lookupByName(self.cfg.name)
                except Exception:
                    self.dom = None
            if self.running():
                try:
                    self.dom.destroy()
                except Exception as e:  # already gone between the check and the call
                    log.debug("destroy %s: %s", self.cfg.name, e)
            wait_tap_gone(self.cfg.tap)
            if self.keep_console and self.console.exists():
                self.keep_console.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.console, self.keep_console)
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.dir.parent.rmdir()  # the run's directory, once its last VM is gone
        except OSError:
            pass
        for e in reversed(self._entries):
            self.manifest.remove(e)
        self._entries.clear()


def wait_tap_gone(tap: str, timeout: float = 10.0) -> None:
    """libvirt deletes the tap once QEMU exits; wait so the next point can reuse names."""
    deadline = time.monotonic() + timeout
    while Path("/sys/class/net", tap).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


# -- accelerator ----------------------------------------------------------------------------

def boot_probe(daemon: Daemon, image: Image, runner: Runner, manifest: Manifest,
               deadline_s: float = PROBE_DEADLINE_S) -> None:
    """Boot a small KVM guest to user space; raises on any failure (vm/accel.py decides)."""
    cfg = VmConfig(f"{manifest.prefix}-probe", f"{manifest.prefix}p", "02:67:62:ff:00:01",
                   "gamebed.role=probe", memory_mib=96)
    with GameVm(cfg, image, daemon, "kvm", runner, manifest) as vm:
        vm.wait_console("GAMEBED-PROBE-OK", deadline_s, "the KVM probe guest")


def domain_type(daemon: Daemon, image: Image, runner: Runner, manifest: Manifest,
                progress: Callable[[str], None] = print, accel: str = "auto") -> Accel:
    """KVM where a guest really boots with it, else TCG, with the reason (vm/accel.py)."""
    return choose(accel, lambda: boot_probe(daemon, image, runner, manifest), progress,
                  dry_run=runner.dry_run)
