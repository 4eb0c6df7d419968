"""libvirt backend: N game VMs, each on a tap in the root namespace (root).

    host (root ns): port i = tap i ── VM i: virtio_net → game server

Real guests: each VM boots the gamebed image (vm/image.py) and runs the
unmodified game server.  In `host` mode the guest loads the patched virtio_net
(host_tstamp=1), which moves the trailer's stamp into skb->tstamp; in `guest`
mode Debian's own driver, which ignores the trailer (gamebed/spec.py maps the
mode).  A guest's server stops a few seconds after the load ends, writes its
records to its results disk and powers off; they are unpacked into the point's
guest<i>/ directory.  Guest clocks are their own (TCG has no kvm-clock): the
client's clock-sync exchange measures each offset.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from gamebed.backend import Point, TestbedContext
from gamebed.fault import WHY_NOT, Fault
from gamebed.resources import GuestCgroups
from gamebed.spec import stamp_driver
from gamebed.topology import PREFIX_LEN, GuestAddr
from hostside.trailer import PORT_MTU
from vm import image as image_mod
from vm.accel import Accel
from vm.libvirt_vm import Daemon, GameVm, VmConfig, connect, domain_type
from vm.shared import once

READY_TIMEOUT_S = 120.0  # per point, plus 30 s per guest: concurrent TCG boots on one core
QEMU_OVERHEAD_MIB = 80  # measured: a TCG guest's QEMU RSS ≈ memory + 32 MiB tb-cache + ~35


def check_memory(n: int, memory_mib: int) -> None:
    """libvirt starts QEMU outside any cgroup limit of ours: refuse a point that cannot
    fit in the host's available memory instead of letting the OOM killer choose."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    avail = int(info["MemAvailable"].split()[0]) // 1024
    need = n * (memory_mib + QEMU_OVERHEAD_MIB)
    if need > avail:
        raise RuntimeError(f"{n} VMs of {memory_mib} MiB need about {need} MiB with QEMU's "
                           f"overhead; {avail} MiB are available (lower --guests or "
                           "--vm-memory)")


class LibvirtGuests:
    BOOT_S_PER_GUEST = 25.0  # progress estimate only (TCG: 16 VMs answered after 381 s)
    name = "libvirt"
    host_in_root_ns = True  # libvirt creates each VM's tap in the root namespace

    def __init__(self, ctx: TestbedContext) -> None:
        self.ctx = ctx
        self.point: Point | None = None  # the point begun (begin .. end)
        self.addrs: dict[int, GuestAddr] = {}  # the guests a point boots, by index
        # none of ours: QEMU runs under libvirtd's cgroups, its vCPU threads are
        # libvirtd's (benchmarks/bench_vms.py weighs QEMU's RSS)
        self.cgroups = GuestCgroups()
        self.vms: list[GameVm] = []
        self.accel: Accel | None = None
        self.image: image_mod.Image | None = None
        self.conn = None
        self.stack = ExitStack()  # daemon connection: the count's
        self.mode_stack = ExitStack()  # the VMs: one mode's (its driver is a boot choice)

    def _cmdline(self, g: GuestAddr, point: Point) -> str:
        t = self.ctx.topo
        return (f"gamebed.role=server gamebed.nic={stamp_driver(point.mode).virtio_net} "
                f"gamebed.guest={g.index} gamebed.ip={g.nic.ip}/{PREFIX_LEN} "
                f"gamebed.peer={t.client.ip},{t.client.mac} gamebed.port={t.game_port} "
                f"gamebed.idle_exit={point.idle_exit:g}")

    def start(self, guests: tuple[GuestAddr, ...]) -> None:
        """The daemon, the image and the accelerator: VMs boot per mode (begin), since
        the mode is the NIC driver their kernel loads at boot."""
        c, s = self.ctx, self.ctx.spec
        conn = None
        if c.runner.dry_run:  # no daemon, no image build: show what would be started
            d = image_mod.CACHE / "image-<digest>"
            self.image = image_mod.Image(d, d / "vmlinuz", d / "initrd.gz", d / "base.qcow2",
                                         "<release>", {})
            c.runner.echo("gamebed image build   # (cached by input digest)")
        else:
            conn = connect(s.libvirt.libvirt_uri, c.runner, c.progress)
            self.stack.callback(conn.close)
            self.image = once("libvirt-image", lambda: image_mod.build(c.runner, c.progress))
        self.conn = conn
        self.accel = domain_type(Daemon(conn, s.libvirt.libvirt_uri), self.image, c.runner,
                                 c.manifest, c.progress, s.libvirt.accel)
        c.progress(f"      accelerator: {self.accel.reason}")
        self.add_guests(guests)

    def add_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        """A VM boots per mode (begin): here only the check that the count fits."""
        check_memory(len(self.addrs) + len(guests), self.ctx.spec.vm_memory_mib)
        self.addrs.update((g.index, g) for g in guests)

    def remove_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        """Nothing runs between modes: the next begin() boots its point's guests only."""
        for g in guests:
            self.addrs.pop(g.index, None)

    def begin(self, point: Point) -> None:
        c, s, self.point = self.ctx, self.ctx.spec, point
        self.vms = []
        for g in point.topo.guests:
            cfg = VmConfig(f"{c.manifest.prefix}-vm{g.index}", g.host_port, g.nic.mac,
                           self._cmdline(g, point), s.vm_memory_mib,
                           c.placement.guest_cpus)
            vm = self.mode_stack.enter_context(GameVm(cfg, self.image,
                                                      Daemon(self.conn, s.libvirt.libvirt_uri),
                                                      self.accel.domain_type,
                                                      c.runner, c.manifest))
            vm.keep_console = point.dir / f"guest{g.index}" / "console.log"
            self.vms.append(vm)
            # headroom for the trailer on the host side of the tap
            c.runner.ip("", "link", "set", g.host_port, "mtu", PORT_MTU)
        self._ready()

    def _ready(self) -> None:
        if self.ctx.runner.dry_run:
            return
        timeout = READY_TIMEOUT_S + 30.0 * len(self.vms)
        for vm in self.vms:
            vm.wait_console("GAMEBED-READY", timeout, "its game server")
        self.ctx.progress(f"      {len(self.vms)} VM(s) ({self.accel.name}) up")

    def end_load(self) -> None:
        """Nothing to ask yet: collect() ends each VM's point and fetches its records."""

    def collect(self) -> None:
        for g, vm in zip(self.point.topo.guests, self.vms, strict=True):
            vm.collect(self.point.dir / f"guest{g.index}",
                       self.point.idle_exit + 60.0 + 5.0 * len(self.vms))

    def end(self) -> None:
        self.mode_stack.close()

    def stop(self) -> None:
        self.mode_stack.close()
        self.stack.close()

    def fault(self, f: Fault) -> None:
        raise RuntimeError(f"--fault on libvirt: {WHY_NOT['libvirt']}")

    recover = fault

    def guest_info(self) -> list[dict]:
        return [{"name": vm.cfg.name, "console": str(vm.console)} for vm in self.vms]

    def environment(self) -> dict:
        s, a, img = self.ctx.spec, self.accel, self.image
        return {"backend": self.name, "shared_clock": False,
                "domain_type": a.domain_type if a else None, "accel": a.name if a else None,
                "accel_reason": a.reason if a else None, "libvirt_uri": s.libvirt.libvirt_uri,
                "vm_memory_mib": s.vm_memory_mib,
                "guest_nic": "host mode: patched virtio_net (host_tstamp=1); "
                             "guest mode: Debian's virtio_net",
                "image": img.info.get("digest") if img else None,
                "guest_kernel": img.release if img else None,
                "cost_model": "a guest is a QEMU process with one vCPU; under TCG every "
                              "guest instruction is translated, so counts hold for TCG on "
                              "this host only"}
