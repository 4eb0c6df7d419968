"""Namespace backend: N game "VMs" as network namespaces behind the host shim (root).

    client ns ──veth── host ns: shim (+ BPF stamper) ──veth── guest ns i: [decoder] server

Each guest namespace has its own address and game server process.  In `host`
mode the tc BPF decoder on the guest's NIC moves the host stamp into skb->tstamp;
in `guest` mode there is no decoder and the server sees the guest-side stamp.
Everything is a context manager on one ExitStack, listed in the run manifest.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from hostside import bpf
from vm.resources import CpuCgroup, Manifest, Netns, Veth, proc_start_time
from vm.spec import ExperimentSpec
from vm.sysutil import Process, Runner, python_cmd, wait_for

CLIENT_IP = "198.18.0.1"  # RFC 2544 benchmarking range, only inside our namespaces
CLIENT_MAC = "02:67:62:00:00:01"
GUEST_MTU = 1516  # 16 bytes of headroom for the trailer


def guest_ip(i: int) -> str:
    return f"198.18.{1 + i // 250}.{1 + i % 250}"


def guest_mac(i: int) -> str:
    return f"02:67:62:01:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"


@dataclass(frozen=True)
class GuestInfo:
    index: int
    netns: str
    host_port: str  # guest's port in the host namespace
    nic: str  # its NIC inside the guest namespace
    ip: str
    mac: str


class ManagedProcess(Process):
    """A Process that is listed in the run manifest while it lives."""

    def __init__(self, args, runner: Runner, manifest: Manifest, **kw) -> None:
        super().__init__(args, runner, **kw)
        self.manifest = manifest
        self._entry: dict | None = None

    def start(self) -> ManagedProcess:
        super().start()
        if self.pid:
            self._entry = self.manifest.add(kind="process", pid=self.pid, name=self.name,
                                            start_time=proc_start_time(self.pid))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._entry:
            self.manifest.remove(self._entry)


def in_netns(ns: str) -> list[str]:
    """Command prefix to run in namespace `ns` ('' = the root namespace: nothing)."""
    return ["ip", "netns", "exec", ns] if ns else []


def cpu_sets(placement: str) -> tuple[str | None, str | None]:
    """(shim CPUs, everyone else's CPUs) as taskset lists; None = float freely."""
    cpus = sorted(os.sched_getaffinity(0))
    if placement == "dynamic":
        return None, None
    if len(cpus) < 2:
        raise RuntimeError("restricted placement needs 2+ CPUs (shim on one, guests on the "
                           "rest); use --placement dynamic on this machine")
    return str(cpus[0]), ",".join(map(str, cpus[1:]))


class NetnsPoint:
    """The topology of one measurement point: build on enter, tear down on exit."""

    def __init__(self, spec: ExperimentSpec, guests: int, mode: str, point_dir: Path,
                 runner: Runner, manifest: Manifest) -> None:
        self.spec, self.n, self.mode, self.dir = spec, guests, mode, Path(point_dir)
        self.runner, self.manifest = runner, manifest
        p = manifest.prefix
        self.host_ns, self.client_ns, self.uplink, self.client_nic = (
            f"{p}-host", f"{p}-client", f"{p}u", f"{p}c")
        self.guests = [GuestInfo(i, f"{p}-g{i}", f"{p}g{i}", f"{p}e{i}", guest_ip(i),
                                 guest_mac(i)) for i in range(guests)]
        self.shim_cpus, self.guest_cpus = cpu_sets(spec.placement)
        self.stack = ExitStack()

    # -- building ---------------------------------------------------------------------------
    def __enter__(self) -> NetnsPoint:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build_network()
            self._start_shim()
            self._start_servers()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _ip(self, ns: str, *args: object) -> None:
        self.runner.run(["ip", "-n", ns, *map(str, args)])

    def _build_network(self) -> None:
        r, m, enter = self.runner, self.manifest, self.stack.enter_context
        enter(Netns(self.host_ns, r, m))
        enter(Netns(self.client_ns, r, m))
        enter(Veth((self.host_ns, self.uplink), (self.client_ns, self.client_nic), r, m))
        self._ip(self.client_ns, "link", "set", self.client_nic, "address", CLIENT_MAC, "up")
        self._ip(self.client_ns, "addr", "add", f"{CLIENT_IP}/16", "dev", self.client_nic)
        self._ip(self.host_ns, "link", "set", self.uplink, "up")
        for g in self.guests:
            enter(Netns(g.netns, r, m))
            enter(Veth((self.host_ns, g.host_port), (g.netns, g.nic), r, m, mtu=GUEST_MTU))
            self._ip(self.host_ns, "link", "set", g.host_port, "up")
            self._ip(g.netns, "link", "set", g.nic, "address", g.mac, "up")
            self._ip(g.netns, "addr", "add", f"{g.ip}/16", "dev", g.nic)
            # static neighbours: the load starts at once, no ARP round in the measurement
            self._ip(g.netns, "neigh", "replace", CLIENT_IP, "lladdr", CLIENT_MAC, "dev", g.nic,
                     "nud", "permanent")
            self._ip(self.client_ns, "neigh", "replace", g.ip, "lladdr", g.mac, "dev",
                     self.client_nic, "nud", "permanent")
            if self.mode == "host":
                bpf.attach_ingress(r, g.netns, g.nic, bpf.build("decoder", r))
        if self.spec.stamper == "bpf":
            self._attach_stamper()

    def _attach_stamper(self) -> None:
        table = [(g.ip, self._ifindex(self.host_ns, g.host_port)) for g in self.guests]
        inc = self.dir / "bpf"
        bpf.write_guest_table(inc, self.spec.game_port, table)
        obj = bpf.build("stamper", self.runner, extra_include=inc, out_dir=inc)
        bpf.attach_ingress(self.runner, self.host_ns, self.uplink, obj)

    def _ifindex(self, ns: str, dev: str) -> int:
        if self.runner.dry_run:
            return 0
        out = self.runner.run([*in_netns(ns), "cat", f"/sys/class/net/{dev}/ifindex"])
        return int(out.stdout)

    # -- processes --------------------------------------------------------------------------
    def _pinned(self, cpus: str | None, args: list[str]) -> list[str]:
        return ["taskset", "-c", cpus, *args] if cpus else args

    def _start_shim(self) -> None:
        ready = self.dir / "shim.ready"
        ready.unlink(missing_ok=True)
        args = python_cmd("hostside.shim", "--uplink", self.uplink, "--game-port",
                          self.spec.game_port, "--stamper", self.spec.stamper, "--out", self.dir,
                          "--ready-file", ready)
        for g in self.guests:
            args += ["--guest", f"{g.index},{g.host_port},{g.ip},{g.mac}"]
        cmd = [*in_netns(self.host_ns), *self._pinned(self.shim_cpus, args)]
        shim = self.stack.enter_context(
            ManagedProcess(cmd, self.runner, self.manifest, log_path=self.dir / "shim.log",
                           name="shim"))
        if not self.runner.dry_run:
            wait_for(lambda: ready.exists() or not shim.alive(), 20, "the shim")
            if not shim.alive():
                raise RuntimeError(f"the shim exited; see {self.dir / 'shim.log'}")

    def _start_servers(self) -> None:
        procs = []
        for g in self.guests:
            gdir = self.dir / f"guest{g.index}"
            gdir.mkdir(exist_ok=True)
            (gdir / "ready").unlink(missing_ok=True)
            args = python_cmd("fpsmodel", "server", "--host", g.ip, "--port",
                              self.spec.game_port, "--guest", g.index, "--dispatch",
                              self.spec.dispatch, "--out", gdir, "--ready-file", gdir / "ready")
            cmd = ["ip", "netns", "exec", g.netns, *self._pinned(self.guest_cpus, args)]
            cg = None
            if self.spec.cpu_cap:  # entered first so it is removed after its process
                cg = self.stack.enter_context(CpuCgroup(
                    f"{self.manifest.prefix}-g{g.index}", self.spec.cpu_cap, self.manifest,
                    self.runner))
            proc = self.stack.enter_context(ManagedProcess(
                cmd, self.runner, self.manifest, log_path=gdir / "server.log",
                name=f"server{g.index}"))
            if cg is not None and proc.pid:
                cg.add_pid(proc.pid)
            procs.append((gdir / "ready", proc))
        if self.runner.dry_run:
            return
        for ready, proc in procs:
            wait_for(lambda r=ready, p=proc: r.exists() or not p.alive(), 60, "game servers")
            if not proc.alive():
                raise RuntimeError(f"a game server exited; see {ready.parent / 'server.log'}")

    def run_load(self, timeout_extra: float = 60.0) -> None:
        """The client in its namespace for the spec's duration; raises if it fails."""
        s = self.spec
        args = python_cmd("fpsmodel", "client", "--players", s.players, "--duration",
                          s.duration, "--rate", s.rate, "--seed", s.seed, "--out", self.dir)
        for g in self.guests:
            args += ["--server", f"{g.ip}:{s.game_port}"]
        cmd = ["ip", "netns", "exec", self.client_ns, *self._pinned(self.guest_cpus, args)]
        with ManagedProcess(cmd, self.runner, self.manifest, log_path=self.dir / "client.log",
                            name="client") as client:
            if self.runner.dry_run:
                return
            try:
                rc = client.popen.wait(s.duration + timeout_extra)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"the client did not finish; see {self.dir}/client.log") \
                    from None
        if rc != 0:
            raise RuntimeError(f"the client failed (exit {rc}); see {self.dir}/client.log")

    def environment(self) -> dict:
        return {"backend": "netns", "shared_clock": True, "shim_cpus": self.shim_cpus,
                "guest_cpus": self.guest_cpus, "placement": self.spec.placement,
                "stamper": self.spec.stamper, "cpu_cap": self.spec.cpu_cap}
