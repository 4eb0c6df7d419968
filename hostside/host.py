"""The host side of a measurement point, shared by every guest backend (root).

    client ns ──veth── uplink (host ns, or the root ns for libvirt's taps)
                       ├─ tc BPF stamper (--stamper bpf): inputs → trailer → guest port
                       ├─ tc BPF reply program on each guest port (--stamper bpf): the
                       │  guests' IPv4 frames to the client → uplink
                       └─ AF_PACKET shim: ground truth, everything else both ways

`HostSide` builds the client's namespace and link (on enter), attaches the
stamper and starts the shim once the guests' ports exist (`attach(point)`), runs the
game client for the point's duration (`run_client(point)`).  `detach()` stops the shim
and stamper, which must go before the guests' ports do; exit removes the rest.
Names and addresses come from the point's Topology; everything is listed in the
run manifest.
"""

from __future__ import annotations

import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from fpsmodel.clientconfig import Game
from fpsmodel.records import SHIM_INPUTS
from fpsmodel.wan import WanModel
from gamebed import wan
from gamebed.backend import Point, TestbedContext
from gamebed.proc import in_netns, pinned, python_cmd, wait_for
from gamebed.resources import IdlePoll, ManagedProcess, Netns, Veth
from gamebed.topology import PREFIX_LEN, GuestAddr
from hostside import bpf
from hostside.players import RemotePlayers
from hostside.shards import plan, run_sharded, shard_dir

# a warm-up's clock sync (every server at once): its samples are only carried to the
# count's points, which check them with their own tries
WARM_UP_SYNC_SAMPLES = 16


def guest_game(spec, guest: int) -> str:
    """A mixed host's guest plays its own game: the --server suffix that says which."""
    if not spec.game.mix:
        return ""
    g = spec.guest_spec(guest).game
    return Game(g.players, g.rate, g.input_process, g.input_jitter, g.input_bytes).text()


class HostSide:
    def __init__(self, ctx: TestbedContext, guests: tuple[GuestAddr, ...] = ()) -> None:
        self.ctx = ctx
        self.first_guests = guests  # the testbed's guests when it is built
        self.stack = ExitStack()  # the client's namespace and link
        self.attached = ExitStack()  # stamper and shim, on the guests' ports
        self.shim: ManagedProcess | None = None
        self.wan_via: str | None = None  # --wan: "netem" or the client's emulator
        self.marks: dict[str, int] = {}  # a point's phases on this side (phases.json)
        self.idle = "halt (host_idle_poll off)"  # how the host side's CPUs idle
        hosts = ctx.spec.tuning.players_on
        # players on other machines (hostside/players.py), or None: here
        self.remote = RemotePlayers(ctx, hosts.split(",")) if hosts else None

    def __enter__(self) -> HostSide:
        with ExitStack() as stack:  # on a failure half-way, what was built goes again
            self._build(stack)
            self.stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.attached.close()
        self.stack.close()

    def _build(self, stack: ExitStack) -> None:
        c, t = self.ctx, self.ctx.topo
        r, m, enter = c.runner, c.manifest, stack.enter_context
        for host in self.remote.hosts if self.remote else ():
            self.remote.check(host)  # each player machine tried before anything is built
        if t.host_ns:
            enter(Netns(t.host_ns, r, m))
        enter(Netns(t.client_ns, r, m))
        enter(Veth((t.host_ns, t.uplink), (t.client_ns, t.client_nic), r, m))
        r.ip(t.client_ns, "link", "set", t.client_nic, "address", t.client.mac, "up")
        r.ip(t.client_ns, "addr", "add", f"{t.client.ip}/{PREFIX_LEN}", "dev",
             t.client_nic)
        r.ip(t.host_ns, "link", "set", t.uplink, "up")
        if c.spec.design.wan:
            self.wan_via = self._apply_wan()
        self.add_guests(self.first_guests)
        if self.remote is not None:
            self.remote.open(stack)
        if c.placement.host_cpus is None:
            self.idle = "halt (dynamic placement: the guests share every CPU)"
        elif c.spec.tuning.host_idle_poll:
            cpus = tuple(int(x) for x in c.placement.host_cpus.split(","))
            self.idle = enter(IdlePoll(cpus, m, r)).result

    def add_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        """Static neighbours for these guests: the load starts at once, with no ARP round
        in the measurement."""
        t = self.ctx.topo
        for g in guests:
            self.ctx.runner.ip(t.client_ns, "neigh", "replace", g.nic.ip, "lladdr",
                               g.nic.mac, "dev", t.client_nic, "nud", "permanent")

    def remove_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        t = self.ctx.topo
        for g in guests:
            self.ctx.runner.ip(t.client_ns, "neigh", "del", g.nic.ip, "dev",
                               t.client_nic, check=False)

    def _apply_wan(self) -> str:
        """The players' network, both ways, clock sync exempt: the kernel's netem where
        it has one (tried on the client's NIC), else the client's own emulator."""
        c, t, r = self.ctx, self.ctx.topo, self.ctx.runner
        netem = wan.netem_args(c.spec.design.wan)
        up = wan.client_side(t.client_ns, t.client_nic, netem)
        if not all(r.run(cmd, check=False).returncode == 0 for cmd in up[:2]):
            r.run(wan.remove_root(t.client_ns, t.client_nic), check=False)
            WanModel.parse(netem)  # what the emulator cannot do is refused here, clearly
            c.progress("      --wan: this kernel has no prio/netem qdisc; the client "
                       "emulates the WAN (fpsmodel/wan.py)")
            return "client emulator (no netem in this kernel)"
        for cmd in up[2:] + wan.host_side(t.host_ns, t.uplink, netem):
            r.run(cmd)
        return "netem"

    def attach(self, point: Point, stamper: str | None = None, truth: str = "ring",
               rx_ring: bool = True) -> None:
        """Stamper and shim, once every guest's host-side port exists (`stamper`: the
        spec's, unless a benchmark compares both; `truth`: where the shim takes the BPF
        stamper's ground truth, its ring buffer or, to compare, its packet socket)."""
        stamper = stamper or self.ctx.spec.tuning.stamper
        prog_id = self._attach_stamper(point) if stamper == "bpf" else None
        # with the kernel's stamper, the kernel's reply path too (the Python shim's path,
        # --stamper afpacket, stays whole: benchmarks/bench_paths.py compares the two)
        replies = self._attach_replies(point) if stamper == "bpf" else None
        self.marks["stamper_attached"] = time.time_ns()
        self._start_shim(point, stamper, None if truth == "packet" else prog_id,
                         (rx_ring, replies))

    def detach(self) -> None:
        """Stop the shim (it writes its ground truth) and detach the stamper."""
        self.attached.close()

    def _attach_stamper(self, point: Point) -> int | None:
        c, t = self.ctx, self.ctx.topo
        table = [(g.nic.ip, self._ifindex(g.host_port)) for g in point.topo.guests]
        inc = point.dir / "bpf"
        bpf.write_guest_table(inc, t.game_port, table)
        # the object is cached by its inputs (the guest table too): built once per count
        obj = bpf.build("stamper", c.runner, extra_include=inc)
        bpf.attach_ingress(c.runner, t.host_ns, t.uplink, obj)
        self.attached.callback(bpf.detach, c.runner, t.host_ns, t.uplink)
        return bpf.ingress_prog_id(c.runner, t.host_ns, t.uplink)

    def _attach_replies(self, point: Point) -> str:
        """The guests' frames to the client go to the uplink in the kernel (tc reply
        program on every guest's port): a state update no longer wakes the shim, which
        cost the host core 17-21% at two br30 guests.  Returns the client's MAC, which
        the shim then leaves to the program."""
        c, t = self.ctx, self.ctx.topo
        mac = t.client.mac
        defines = (f"GB_UPLINK_IFINDEX={self._ifindex(t.uplink)}",
                   *(f"GB_CLIENT_MAC{i}=0x{b}" for i, b in enumerate(mac.split(":"))))
        obj = bpf.build("reply", c.runner, defines=defines)
        ports = [g.host_port for g in point.topo.guests]
        bpf.attach_ingress_many(c.runner, t.host_ns, ports, obj)
        self.attached.callback(bpf.detach_many, c.runner, t.host_ns, ports)
        return mac

    def _ifindex(self, dev: str) -> int:
        if self.ctx.runner.dry_run:
            return 0
        out = self.ctx.runner.run([*in_netns(self.ctx.topo.host_ns), "cat",
                                   f"/sys/class/net/{dev}/ifindex"])
        return int(out.stdout)

    def _start_shim(self, point: Point, stamper: str, prog_id: int | None,
                    ring_replies: tuple[bool, str | None]) -> None:
        """The shim for this point; `ring_replies`: whether it reads through an rx ring,
        and the client MAC whose frames the kernel's reply program forwards (None: the
        shim does)."""
        c, t, d = self.ctx, self.ctx.topo, point.dir
        rx_ring, replies = ring_replies
        ready = d / "shim.ready"
        ready.unlink(missing_ok=True)
        args = python_cmd("hostside.shim", "--uplink", t.uplink, "--game-port", t.game_port,
                          "--stamper", stamper, "--out", d, "--ready-file", ready)
        if prog_id is not None:
            args += ["--truth-prog-id", prog_id]
        for g in point.topo.guests:
            args += ["--guest", f"{g.index},{g.host_port},{g.nic.ip},{g.nic.mac}"]
        if point.spec.design.capture:
            args += ["--capture", d / "uplink.cap"]
        if not rx_ring:
            args.append("--no-rx-ring")
        if replies:
            args += ["--replies-in-kernel", replies]
        cmd = [*in_netns(t.host_ns), *pinned(c.placement.host_cpus, args)]
        self.shim = shim = self.attached.enter_context(ManagedProcess(
            cmd, c.runner, c.manifest, log_path=d / "shim.log", name="shim"))
        # on stop the shim writes the ground truth it spooled: no kill while it does
        self.attached.callback(shim.stop_while_writing, d / SHIM_INPUTS,
                               progress=c.progress)
        if not c.runner.dry_run:
            wait_for(lambda: ready.exists() or not shim.alive(), 20, "the shim")
            if not shim.alive():
                raise RuntimeError(f"the shim exited; see {d / 'shim.log'}")

    def run_client(self, point: Point, timeout_extra: float = 60.0,
                   started_file: Path | None = None, end_sync: bool = True,
                   sync_carry: Path | None = None) -> None:
        """The client in its namespace for the spec's duration; raises if it fails.
        `started_file` gets the load's start time when the load starts; `end_sync`: a
        clock sync after the load too (guest clocks that may drift); `sync_carry`: the
        guests' best clock-sync samples of earlier points (clocks that cannot drift).
        With client_shards > 1 the players are split over that many clients
        (hostside/shards.py), each on its own CPU where client_cpus lists them."""
        if self.remote is not None:
            self._remote_clients(point, timeout_extra, started_file, end_sync)
            return
        shards = plan(len(point.topo.guests), point.spec.tuning.client_shards,
                      self.client_cpus())
        if len(shards) == 1:
            args = self._client_args(point, point.dir, end_sync, sync_carry)
            if started_file is not None:
                args += ["--started-file", started_file]
            self._one_client(point, args, timeout_extra)
            return
        cmds = []
        for sh in shards:
            args = self._client_args(point, shard_dir(point.dir, sh), end_sync, sync_carry)
            if started_file is not None and sh.index == 0:  # every shard starts then
                args += ["--started-file", started_file]
            args += ["--gate", "--guest-base", point.topo.guests[sh.first].index,
                     *self._servers(point, sh.guests)]
            cmds.append([*in_netns(point.topo.client_ns), *pinned(sh.cpu, args)])
        run_sharded(self.ctx, point, shards, cmds, timeout_extra)

    def _remote_clients(self, point: Point, timeout_extra: float, started_file: Path | None,
                        end_sync: bool) -> None:
        """The shards on the player machines: one per machine at least, in turn."""
        remote = self.remote
        assert remote is not None
        shards = plan(len(point.topo.guests),
                      max(point.spec.tuning.client_shards, len(remote.hosts)), None)
        args = [[*self._client_words(point, end_sync, None, f"{remote.path_of(sh)}/out"),
                 "--gate", "--guest-base",
                 point.topo.guests[sh.first].index, *self._servers(point, sh.guests)]
                for sh in shards]
        remote.run(point, shards, args, timeout_extra, started_file)

    def client_cpus(self) -> list[str] | None:
        """The CPUs the client shards run on, in turn: client_cpus, else the host side's."""
        given = self.ctx.spec.tuning.client_cpus
        if given:
            return given.split(",")
        return [self.ctx.placement.host_cpus] if self.ctx.placement.host_cpus else None

    def _client_args(self, point: Point, out: Path, end_sync: bool,
                     sync_carry: Path | None) -> list:
        """The client's command but its servers and what marks a shard."""
        return python_cmd("fpsmodel", *self._client_words(point, end_sync, sync_carry, out))

    def _client_words(self, point: Point, end_sync: bool, sync_carry: Path | None,
                      out: Path | str) -> list:
        """`fpsmodel client` and its arguments but its servers and what marks a shard:
        the same wherever the players run (`out`: where it writes, on its machine)."""
        s, tune = point.spec, point.spec.tuning
        args: list = ["client", "--players", s.game.players, "--duration",
                      s.design.duration, "--rate", s.game.rate, "--seed", s.design.seed,
                      "--out", out]
        if not end_sync:
            args += ["--end-sync", 0]
        if tune.client_spin_us:
            args += ["--spin-us", tune.client_spin_us, "--spin-share", tune.client_spin_share]
        if tune.client_priority:
            args += ["--realtime", tune.client_priority]
        if sync_carry is not None:
            args += ["--sync-carry", sync_carry]
        if point.warm_up:
            args += ["--sync-all", "--sync-samples", WARM_UP_SYNC_SAMPLES]
        args += s.game.client_flags()
        return args

    def _servers(self, point: Point, guests: range | None = None) -> list:
        s, t = point.spec, point.topo
        out: list = []
        if self.wan_via and self.wan_via != "netem":
            out += ["--wan", s.design.wan]
        pairs = list(zip(t.guests, t.server_targets(), strict=True))
        for g, target in (pairs if guests is None else pairs[guests.start:guests.stop]):
            out += ["--server", target + guest_game(s, g.index)]
        return out

    def _one_client(self, point: Point, args: list, timeout_extra: float) -> None:
        c, s, t = self.ctx, point.spec, point.topo
        # the client stands for players on other machines (the paper's did): it must not
        # take the guests' CPUs, so it runs with the host side
        cmd = [*in_netns(t.client_ns), *pinned(c.placement.host_cpus,
                                                args + self._servers(point))]
        log = point.dir / "client.log"
        with ManagedProcess(cmd, c.runner, c.manifest, log_path=log, name="client") as client:
            if c.runner.dry_run:
                return
            try:
                rc = client.popen.wait(s.design.duration + timeout_extra)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"the client did not finish; see {log}") from None
        if rc != 0:
            raise RuntimeError(f"the client failed (exit {rc}); see {log}")

    def environment(self) -> dict:
        p = self.ctx.placement
        cpus = self.client_cpus()
        return {"shim_cpus": p.host_cpus, "client_cpus": ",".join(cpus) if cpus else None,
                "client_shards": self.ctx.spec.tuning.client_shards,
                "guest_cpus": p.guest_cpus, "placement": p.name,
                "stamper": self.ctx.spec.tuning.stamper, "wan": self.ctx.spec.design.wan,
                "host_cpu_idle": self.idle, "client_spin_us": self.ctx.spec.tuning.client_spin_us,
                "client_spin_share": self.ctx.spec.tuning.client_spin_share,
                "wan_via": self.wan_via,
                "players_on": ",".join(self.remote.hosts) if self.remote else None}
