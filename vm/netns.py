"""Namespace backend: N game "VMs" as network namespaces on the host's kernel (root).

    host ns: port i ──veth── guest ns i: NIC [tc BPF decoder] → game server

Each guest is a namespace with its own address and game server process.  In
`host` mode the tc BPF decoder on the guest's NIC moves the host stamp into
skb->tstamp; in `guest` mode there is no decoder and the server sees the stamp
the host kernel takes when it hands the frame over (no guest CPU to wait for: see
the README).  Everything is a context manager on an ExitStack (each guest's own,
so a testbed can grow and shrink), listed in the run manifest.
"""

from __future__ import annotations

import signal
from contextlib import ExitStack
from pathlib import Path

from gamebed.backend import Point, TestbedContext
from gamebed.fault import Fault
from gamebed.proc import How, in_netns, pinned, python_cmd, wait_for
from gamebed.resources import GuestCgroups, ManagedProcess, guest_cgroup
from gamebed.spec import stamp_driver
from gamebed.topology import PREFIX_LEN, GuestAddr
from hostside import bpf
from vm.shared import guest_link


class NetnsGuests:
    BOOT_S_PER_GUEST = 0.2  # progress estimate only (namespaces and veths)
    name = "netns"
    host_in_root_ns = False

    def __init__(self, ctx: TestbedContext) -> None:
        self.ctx = ctx
        self.point: Point | None = None  # the point begun (begin .. end)
        self.addrs: dict[int, GuestAddr] = {}  # the guests it runs, by index
        self.guests: dict[int, ExitStack] = {}  # per guest: namespace, link, cgroup
        self.mode_stack = ExitStack()  # decoders and servers: one mode's
        self.cgroups = GuestCgroups()
        self.servers: dict = {}

    def start(self, guests: tuple[GuestAddr, ...]) -> None:
        self.add_guests(guests)

    def add_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        c, s = self.ctx, self.ctx.spec
        for g in guests:
            with ExitStack() as stack:
                self.guest_network(stack, g)
                self.cgroups[g.index] = stack.enter_context(guest_cgroup(
                    c.cgroups, f"{c.manifest.prefix}-g{g.index}", s.tuning.cpu_cap,
                    s.tuning.cpu_weight))
                self.guests[g.index] = stack.pop_all()
                self.addrs[g.index] = g

    def remove_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        for g in reversed(guests):
            self.cgroups.pop(g.index, None)
            self.addrs.pop(g.index, None)
            self.guests.pop(g.index).close()

    def guest_network(self, stack: ExitStack, g: GuestAddr) -> None:
        """The guest's namespace, its link to the host side, its address."""
        c, t, r = self.ctx, self.ctx.topo, self.ctx.runner
        guest_link(stack, c, g)
        r.ip(g.netns, "link", "set", g.nic_name, "address", g.nic.mac, "up")
        r.ip(g.netns, "addr", "add", f"{g.nic.ip}/{PREFIX_LEN}", "dev", g.nic_name)
        r.ip(g.netns, "neigh", "replace", t.client.ip, "lladdr", t.client.mac, "dev",
             g.nic_name, "nud", "permanent")

    def begin(self, point: Point) -> None:
        c, self.point = self.ctx, point
        if stamp_driver(point.mode).decoder:
            obj = bpf.build("decoder", c.runner)
            for g in point.topo.guests:
                bpf.attach_ingress(c.runner, g.netns, g.nic_name, obj)
                self.mode_stack.callback(bpf.detach, c.runner, g.netns, g.nic_name)
        self._start_servers()
        self._wait_ready()

    def _start_servers(self) -> None:
        p = self.point
        self.servers = {g.index: self._start_server(g.index, p.dir / f"guest{g.index}")
                        for g in p.topo.guests}

    def _start_server(self, i: int, gdir: Path) -> tuple[Path, ManagedProcess]:
        """Guest i's game server, writing its records into gdir."""
        c, s, g, cg = self.ctx, self.ctx.spec, self.addrs[i], self.cgroups[i]
        gdir.mkdir(parents=True, exist_ok=True)
        (gdir / "ready").unlink(missing_ok=True)
        args = python_cmd("fpsmodel", "server", "--host", g.nic.ip, "--port",
                          c.topo.game_port, "--guest", g.index, "--out", gdir,
                          "--ready-file", gdir / "ready", *s.server_args(g.index))
        cmd = [*in_netns(g.netns), *pinned(c.placement.guest_cpus, args)]
        proc = self.mode_stack.enter_context(ManagedProcess(
            cmd, c.runner, c.manifest, log_path=gdir / "server.log",
            name=f"server{g.index}",
            how=How(cgroups=() if c.runner.dry_run else tuple(cg.procs_files))))
        return gdir / "ready", proc

    def fault(self, f: Fault) -> None:
        """A namespace guest is its server: either kind kills it (SIGKILL, a crash: what
        it had not flushed is lost with it, as with a real one)."""
        self.servers[f.guest][1].stop(signal.SIGKILL)

    def recover(self, f: Fault) -> None:
        """A new server for the guest, with its records apart (guestN/restart/), ready
        when this returns."""
        gdir = self.point.dir / f"guest{f.guest}" / "restart"
        self.servers[f.guest] = self._start_server(f.guest, gdir)
        ready, proc = self.servers[f.guest]
        wait_for(lambda: ready.exists() or not proc.alive(), 30, "the restarted game server")
        if not proc.alive():
            raise RuntimeError(f"the restarted game server exited; see {gdir / 'server.log'}")

    def _wait_ready(self) -> None:
        if self.ctx.runner.dry_run:
            return
        for ready, proc in self.servers.values():
            wait_for(lambda r=ready, p=proc: r.exists() or not p.alive(), 60, "game servers")
            if not proc.alive():
                raise RuntimeError(f"a game server exited; see {ready.parent / 'server.log'}")

    def end_load(self) -> None:
        """Nothing to ask: the servers write into the point directory themselves."""

    def collect(self) -> None:
        """Servers write into the point directory themselves; they flush on stop (end)."""

    def end(self) -> None:
        self.mode_stack.close()

    def guest_info(self) -> list[dict]:
        return [{"netns": g.netns} for _, g in sorted(self.addrs.items())]

    def stop(self) -> None:
        self.mode_stack.close()
        self.remove_guests(tuple(g for _, g in sorted(self.addrs.items())))

    def environment(self) -> dict:
        s = self.ctx.spec
        return {"backend": self.name, "shared_clock": True, "cpu_cap": s.tuning.cpu_cap,
                "cpu_weight": s.tuning.cpu_weight, "server_work_us": s.game.server_work_us,
                "cost_model": "a guest is a namespace and one server process on the host "
                              "kernel: no guest kernel, so its 'guest' stamp never waits "
                              "for a guest CPU"}
