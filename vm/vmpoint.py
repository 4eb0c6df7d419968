"""libvirt backend: N game VMs behind the host's stamper and shim (root).

    client ns ──veth── host (root ns): BPF stamper + shim ──tap i── VM i: virtio_net, server

The same measurement as the namespace backend (vm/netns.py), with real guests:
each VM runs the unmodified game server, booted from the gamebed image.  In
`host` mode the guest loads the patched virtio_net (host_tstamp=1), which moves
the trailer's stamp into skb->tstamp; in `guest` mode it loads the stock driver,
which ignores the trailer.  A guest's server stops a few seconds after the load
ends, writes its records to its results disk and powers off; they are unpacked
into the point's guest<i>/ directory.  Guest clocks are their own (TCG has no
kvm-clock): the client's clock-sync exchange measures each offset.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from hostside import bpf
from vm import image as image_mod
from vm.libvirt_vm import GameVm, VmConfig, connect, domain_type
from vm.netns import CLIENT_IP, CLIENT_MAC, GUEST_MTU, GuestInfo, NetnsPoint, guest_ip, guest_mac
from vm.resources import Manifest, Netns, Veth
from vm.spec import ExperimentSpec
from vm.sysutil import Runner

IDLE_EXIT_S = 3.0  # a server stops this long after the last input, then ships its records
READY_TIMEOUT_S = 120.0  # per point, plus 30 s per guest: concurrent TCG boots on one core


QEMU_OVERHEAD_MIB = 80  # measured: a TCG guest's QEMU RSS ≈ memory + 32 MiB tb-cache + ~35


def _check_memory(n: int, memory_mib: int) -> None:
    """libvirt starts QEMU outside any cgroup limit of ours: refuse a point that cannot
    fit in the host's available memory instead of letting the OOM killer choose."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    avail = int(info["MemAvailable"].split()[0]) // 1024
    need = n * (memory_mib + QEMU_OVERHEAD_MIB)
    if need > avail:
        raise RuntimeError(f"{n} VMs of {memory_mib} MiB need about {need} MiB with QEMU's "
                           f"overhead; {avail} MiB are available (lower --guests or "
                           "--vm-memory)")


_IMAGES: list[image_mod.Image] = []


def _image(runner: Runner, progress) -> image_mod.Image:
    """The image, built once per process: every point of a run boots the same one, even
    if a source changes mid-run (the next run rebuilds)."""
    if not _IMAGES:
        _IMAGES.append(image_mod.build(runner, progress))
    return _IMAGES[0]


class LibvirtPoint(NetnsPoint):
    """One measurement point on VMs; the client, stamper and shim are the netns ones."""

    def __init__(self, spec: ExperimentSpec, guests: int, mode: str, point_dir: Path,
                 runner: Runner, manifest: Manifest, progress=print,
                 idle_exit: float = IDLE_EXIT_S) -> None:
        super().__init__(spec, guests, mode, point_dir, runner, manifest)
        self.idle_exit = idle_exit  # 0: servers run until their VM is destroyed
        p = manifest.prefix
        self.host_ns = ""  # the host is the root namespace, where libvirt puts the taps
        self.guests = [GuestInfo(i, "", f"{p}t{i}", "eth0", guest_ip(i), guest_mac(i))
                       for i in range(guests)]
        self.progress = progress
        self.vms: list[GameVm] = []
        self.domain_type = "?"
        self.image: image_mod.Image | None = None
        self.stack = ExitStack()

    def __enter__(self) -> LibvirtPoint:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build_network()
            self._start_vms()
            self._wait_ready()  # before the stamper: it needs every VM's tap to exist
            if self.spec.stamper == "bpf":
                self._attach_stamper()
            self._start_shim()
        except BaseException:
            self.stack.close()
            raise
        return self

    def _build_network(self) -> None:
        r, m, enter = self.runner, self.manifest, self.stack.enter_context
        enter(Netns(self.client_ns, r, m))
        enter(Veth(("", self.uplink), (self.client_ns, self.client_nic), r, m))
        self._ip(self.client_ns, "link", "set", self.client_nic, "address", CLIENT_MAC, "up")
        self._ip(self.client_ns, "addr", "add", f"{CLIENT_IP}/16", "dev", self.client_nic)
        r.run(["ip", "link", "set", self.uplink, "up"])
        for g in self.guests:
            self._ip(self.client_ns, "neigh", "replace", g.ip, "lladdr", g.mac, "dev",
                     self.client_nic, "nud", "permanent")

    def _cmdline(self, g: GuestInfo) -> str:
        nic = "patched" if self.mode == "host" else "stock"
        return (f"gamebed.role=server gamebed.nic={nic} gamebed.guest={g.index} "
                f"gamebed.ip={g.ip}/16 gamebed.peer={CLIENT_IP},{CLIENT_MAC} "
                f"gamebed.port={self.spec.game_port} gamebed.idle_exit={self.idle_exit:g}")

    def _start_vms(self) -> None:
        s = self.spec
        if self.runner.dry_run:  # no daemon, no image build: show what would be started
            conn, self.domain_type = None, {"kvm": "kvm"}.get(s.accel, "qemu")
            d = image_mod.CACHE / "image-<digest>"
            self.image = image_mod.Image(d, d / "vmlinuz", d / "initrd.gz", d / "base.qcow2",
                                         "<release>", {})
            self.runner.echo("gamebed image build   # (cached by input digest)")
        else:
            conn = connect(s.libvirt_uri, self.runner, self.progress)
            self.stack.callback(conn.close)
            self.image = _image(self.runner, self.progress)
            self.domain_type = domain_type(conn, s.libvirt_uri, self.image, self.runner,
                                           self.manifest, self.progress, s.accel)
        _check_memory(len(self.guests), s.vm_memory_mib)
        for g in self.guests:
            cfg = VmConfig(f"{self.manifest.prefix}-vm{g.index}", g.host_port, g.mac,
                           self._cmdline(g), s.vm_memory_mib, self.guest_cpus)
            vm = self.stack.enter_context(GameVm(cfg, self.image, conn, s.libvirt_uri,
                                                 self.domain_type, self.runner, self.manifest))
            vm.keep_console = self.dir / f"guest{g.index}" / "console.log"
            self.vms.append(vm)
            # headroom for the trailer on the host side of the tap
            self.runner.run(["ip", "link", "set", g.host_port, "mtu", GUEST_MTU])

    def _attach_stamper(self) -> None:
        super()._attach_stamper()
        self.stack.callback(bpf.detach, self.runner, "", self.uplink)

    def _wait_ready(self) -> None:
        if self.runner.dry_run:
            return
        timeout = READY_TIMEOUT_S + 30.0 * len(self.vms)
        for vm in self.vms:
            vm.wait_console("GAMEBED-READY", timeout, "its game server")
        self.progress(f"      {len(self.vms)} VM(s) ({self.domain_type}) up")

    def run_load(self, timeout_extra: float = 60.0) -> None:
        super().run_load(timeout_extra)
        if self.runner.dry_run:
            return
        for g, vm in zip(self.guests, self.vms, strict=True):
            vm.collect(self.dir / f"guest{g.index}", IDLE_EXIT_S + 60.0 + 5.0 * len(self.vms))

    def environment(self) -> dict:
        env = super().environment()
        env.update(backend="libvirt", shared_clock=False, domain_type=self.domain_type,
                   accel="kvm" if self.domain_type == "kvm" else "tcg",
                   libvirt_uri=self.spec.libvirt_uri, vm_memory_mib=self.spec.vm_memory_mib,
                   guest_nic="host mode: patched virtio_net (host_tstamp=1); "
                             "guest mode: Debian's virtio_net",
                   image=(self.image.info.get("digest") if self.image else None),
                   guest_kernel=(self.image.release if self.image else None))
        return env
