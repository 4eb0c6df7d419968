"""Players on other machines: client shards over ssh (root here; ssh to the players).

`--players-on HOST[,HOST...]` runs the point's client shards on those machines, shard i
on HOST[i % n], through the ordinary `ssh` client (the user's keys and config, or
`--ssh-config`).  What it takes:

    player machine ──its link── this host's root ns ──gateway veth── client ns ──veth── uplink
      (route: guests' subnet      (forwards the guests'    (forwards and NATs the
       via this host)              subnet to the client ns) players to the client address)

so the guests, the stamper and the reply path see one client address, as with local
players.  Each shard's code is shipped to its machine (`RemoteDir`: fpsmodel/, listed
in the run manifest, removed at the end); its client measures its own clock against
this host's (`clockd`, fpsmodel/hostclock.py) before and after the load, takes the
start gate's instant in this host's time, and its records come back over ssh, where
`onto_host_clock` moves every player-clock time onto this host's clock (by that
exchange, following a drifting clock linearly).  The exchange itself is kept in the
point's PLAYER_CLOCK file, with the shard and the guests it played.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import socket
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fpsmodel.hostclock import FROM_SSH, HOST_CLOCK
from fpsmodel.records import (
    CLIENT_INPUTS,
    CLIENT_UPDATES,
    CLOCK_SYNC,
    PLAYER_CLOCK,
    PLAYER_CLOCK_FIELDS,
    write_json,
)
from gamebed.proc import (
    CommandError,
    in_netns,
    ip_cmd,
    pinned,
    python_cmd,
    shielding,
    shielding_enter,
    wait_for,
)
from gamebed.resources import ManagedProcess, Veth, remove_remote_dir

REPO = Path(__file__).resolve().parent.parent
REMOTE_ROOT = "/tmp/gamebed-players"  # each run's shards under <root>/<prefix>-s<i>
GATEWAY_NET = "198.19.255."  # the gateway veth: .1 this host's end, .2 the client ns's
PLAYERS_NET = "198.19.0.0/16"  # where player machines' addresses are NATed from
# the player-clock columns each record file has (the rest: durations, or the servers')
ON_PLAYER_CLOCK = {CLIENT_INPUTS: ("sched_ns", "send_ns", "left_ns"),
                   CLIENT_UPDATES: ("recv_ns", "arrive_ns")}


@dataclass(frozen=True)
class Ssh:
    """How to reach the player machines: `ssh [-F config] -o BatchMode=yes HOST CMD`."""

    config: str | None = None
    python: str = "python3"

    def cmd(self, host: str, *words: object) -> list[str]:
        cfg = ["-F", self.config] if self.config else []
        return ["ssh", *cfg, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", host,
                shlex.join(str(w) for w in words)]


class RemoteDir:
    """A shard's directory on its player machine with fpsmodel/ in it: listed in the run
    manifest (kind remote_dir) before it is made, removed on exit."""

    def __init__(self, ssh: Ssh, host: str, path: str, runner, manifest) -> None:
        self.ssh, self.host, self.path = ssh, host, path
        self.runner, self.manifest = runner, manifest
        self._entry: dict | None = None

    @shielding_enter
    def __enter__(self) -> RemoteDir:
        self._entry = self.manifest.add(kind="remote_dir", host=self.host, path=self.path,
                                        ssh=self.ssh.cmd(self.host, "true")[:-2])
        tar = self.runner.run(["tar", "-C", REPO, "--exclude=__pycache__", "-cf", "-",
                               "fpsmodel"], binary=True)
        self.runner.run(self.ssh.cmd(self.host, "sh", "-c", f"rm -rf {shlex.quote(self.path)}"
                                     f" && mkdir -p {shlex.quote(self.path)} && tar -xf - "
                                     f"-C {shlex.quote(self.path)}"),
                        input=tar.stdout or b"", binary=True)
        return self

    @shielding
    def __exit__(self, *exc: object) -> None:
        remove_remote_dir(self.runner, self._entry or {})
        if self._entry:
            self.manifest.remove(self._entry)

    def fetch(self, into: Path) -> None:
        """The shard's records (its out/) into `into`."""
        into.mkdir(parents=True, exist_ok=True)
        got = self.runner.run(self.ssh.cmd(self.host, "tar", "-C", f"{self.path}/out", "-cf",
                                           "-", "."), binary=True)
        self.runner.run(["tar", "-xf", "-", "-C", into], input=got.stdout, binary=True)


class Gateway:
    """The players' way in: a veth from this host's root namespace to the client ns,
    which forwards and NATs them to the client address; the guests' subnet routed to
    it here, and forwarding on for the devices the player machines come in by (each
    listed with its old value, like any setting a run changes)."""

    def __init__(self, ctx, machines: Sequence[str], stack: ExitStack) -> None:
        self.ctx, self.machines, self.stack = ctx, machines, stack

    def build(self) -> None:
        c, t, r = self.ctx, self.ctx.topo, self.ctx.runner
        root_end, ns_end = f"{t.prefix}w", f"{t.prefix}x"
        self.stack.enter_context(Veth(("", root_end), (t.client_ns, ns_end), r, c.manifest))
        r.ip("", "addr", "add", f"{GATEWAY_NET}1/30", "dev", root_end)
        r.ip("", "link", "set", root_end, "up")
        r.ip(t.client_ns, "addr", "add", f"{GATEWAY_NET}2/30", "dev", ns_end)
        r.ip(t.client_ns, "link", "set", ns_end, "up")
        r.run(ip_cmd(t.client_ns, "route", "add", "default", "via", f"{GATEWAY_NET}1"))
        r.run(ip_cmd("", "route", "add", _subnet(t.client.ip), "via", f"{GATEWAY_NET}2",
                     "dev", root_end))
        r.run([*in_netns(t.client_ns), "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        nat = [*in_netns(t.client_ns), "iptables", "-t", "nat", "-A", "POSTROUTING", "-s",
               PLAYERS_NET, "-o", t.client_nic, "-j", "MASQUERADE"]
        if r.run(nat, check=False).returncode != 0:
            raise CommandError("players on other machines need NAT in the client namespace: "
                               "install iptables (apt-get install iptables) and a kernel "
                               "with netfilter NAT")
        # the gateway veth is ours (it goes with its forwarding flag); a player machine's
        # device is the host's: its flag is listed and written back
        self._forward(root_end, listed=False)
        for dev in sorted({self._device_to(m) for m in self.machines}):
            self._forward(dev, listed=True)

    def _device_to(self, host: str) -> str:
        """The device this host reaches a player machine by (`ssh -G` names its address)."""
        r = self.ctx.runner
        if r.dry_run:
            return "DEV"
        conf = r.run(["ssh", *(["-F", self.ctx.spec.tuning.ssh_config]
                               if self.ctx.spec.tuning.ssh_config else []), "-G", host])
        name = next(line.split()[1] for line in conf.stdout.splitlines()
                    if line.startswith("hostname "))
        try:
            addr = socket.gethostbyname(name)
        except OSError as e:
            raise CommandError(f"--players-on {host}: cannot resolve {name} ({e}); give "
                               "an address or fix the ssh config") from None
        route = r.run(["ip", "-o", "route", "get", addr]).stdout.split()
        return route[route.index("dev") + 1]

    def _forward(self, dev: str, listed: bool) -> None:
        path = Path(f"/proc/sys/net/ipv4/conf/{dev}/forwarding")
        if self.ctx.runner.dry_run:
            self.ctx.runner.echo(f"echo 1 > {path}")
            return
        old = path.read_text().strip()
        if old == "1":
            return
        if listed:
            entry = self.ctx.manifest.add(kind="sysfs", path=str(path), value=old)
            self.stack.callback(_restore, self.ctx.manifest, entry)
        path.write_text("1")


def _restore(manifest, entry: dict) -> None:
    Path(entry["path"]).write_text(entry["value"])
    manifest.remove(entry)


def _subnet(ip: str) -> str:
    from gamebed.topology import PREFIX_LEN

    a, b, _c, _d = ip.split(".")
    return f"{a}.{b}.0.0/{PREFIX_LEN}"


def start_clockd(ctx, stack: ExitStack, where: Path) -> int:
    """This host's clock, answered to the player machines; returns its UDP port."""
    ready = where / "clockd.port"
    ready.unlink(missing_ok=True)
    cmd = pinned(ctx.placement.host_cpus, python_cmd("fpsmodel", "clockd", "--ready-file",
                                                     ready))
    proc = stack.enter_context(ManagedProcess(cmd, ctx.runner, ctx.manifest,
                                              log_path=where / "clockd.log", name="clockd"))
    if ctx.runner.dry_run:
        return 0
    wait_for(lambda: ready.exists() or not proc.alive(), 10, "the host clock (clockd)")
    if not proc.alive():
        raise RuntimeError(f"clockd exited; see {where / 'clockd.log'}")
    return int(ready.read_text())


def remote_client(ssh: Ssh, host: str, path: str, args: Sequence[object],
                  clock_port: int) -> list[str]:
    """The ssh command that runs one shard's client in its remote directory."""
    words = [ssh.python, "-m", "fpsmodel", *args, "--host-clock", f"{FROM_SSH}:{clock_port}"]
    line = f"cd {shlex.quote(path)} && exec {shlex.join(str(w) for w in words)}"
    return ssh.cmd(host, "sh", "-c", line)


# -- the records, onto this host's clock ------------------------------------------------

@dataclass(frozen=True)
class PlayerClock:
    """A player machine's clock against this host's: offset (host − player) at t1 (player
    clock) before the load, its drift per ns after, and the uncertainty (half the
    larger round trip of the chosen exchanges)."""

    offset_ns: int
    t1: int
    slope: float
    uncertainty_ns: int

    def at(self, t: int) -> int:
        return self.offset_ns + round(self.slope * (t - self.t1))

    @classmethod
    def read(cls, path: Path) -> PlayerClock:
        chosen = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["chosen"] == "1":
                    chosen[int(row["phase"])] = {k: int(row[k]) for k in
                                                 ("t1", "offset_ns", "delay_ns")}
        if 0 not in chosen:
            raise RuntimeError(f"{path}: no exchange with this host's clock before the load")
        a, b = chosen[0], chosen.get(1)
        slope = ((b["offset_ns"] - a["offset_ns"]) / (b["t1"] - a["t1"])
                 if b and b["t1"] > a["t1"] else 0.0)
        unc = max(a["delay_ns"], b["delay_ns"] if b else 0) // 2
        return cls(a["offset_ns"], a["t1"], slope, max(0, unc))


def onto_host_clock(d: Path) -> PlayerClock:
    """Move a remote shard's records in `d` onto this host's clock, in place."""
    clock = PlayerClock.read(d / HOST_CLOCK)
    for name, cols in ON_PLAYER_CLOCK.items():
        _shift_columns(d / name, cols, clock)
    _shift_sync(d / CLOCK_SYNC, clock)
    path = d / "client_summary.json"
    s = json.loads(path.read_text())
    s["start_ns"] += clock.at(s["start_ns"])
    s["end_ns"] += clock.at(s["end_ns"])
    for v in (s.get("clock_sync") or {}).values():
        if v.get("offset_ns") is not None:
            v["offset_ns"] -= clock.offset_ns
    path.write_text(json.dumps(s, sort_keys=True, indent=1))
    return clock


def _rewrite(path: Path, fix) -> None:
    tmp = path.with_suffix(".tmp")
    with open(path, newline="") as src, open(tmp, "w", newline="") as dst:
        rows = csv.reader(src)
        head = next(rows)
        w = csv.writer(dst)
        w.writerow(head)
        idx = {c: i for i, c in enumerate(head)}
        for row in rows:
            w.writerow(fix(idx, row))
    os.replace(tmp, path)


def _shift_columns(path: Path, cols: Sequence[str], clock: PlayerClock) -> None:
    def fix(idx, row):
        for c in cols:
            i = idx.get(c)
            if i is not None and row[i]:
                t = int(row[i])
                row[i] = str(t + clock.at(t))
        return row
    _rewrite(path, fix)


def _shift_sync(path: Path, clock: PlayerClock) -> None:
    """The servers' sync samples: the player's stamps (t1, t4) onto this host's clock,
    so each offset is the server's against this host's."""
    def fix(idx, row):
        if not row[idx["t1"]]:
            return row
        o = clock.at(int(row[idx["t1"]]))
        for c in ("t1", "t4"):
            if row[idx[c]]:
                row[idx[c]] = str(int(row[idx[c]]) + o)
        if row[idx["offset_ns"]]:
            row[idx["offset_ns"]] = str(int(row[idx["offset_ns"]]) - o)
        return row
    _rewrite(path, fix)


def write_player_clock(point_dir: Path, parts: Sequence[tuple]) -> None:
    """The point's PLAYER_CLOCK: each remote shard's exchanges with this host's clock
    (`parts`: (shard, machine, its shard dir) each), with the guests it played."""
    with open(point_dir / PLAYER_CLOCK, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PLAYER_CLOCK_FIELDS)
        for shard, machine, d in parts:
            with open(d / HOST_CLOCK, newline="") as src:
                for row in csv.DictReader(src):
                    w.writerow([shard.index, machine, shard.first, shard.count,
                                *(row[k] for k in PLAYER_CLOCK_FIELDS[4:])])


class RemotePlayers:
    """The player machines for a testbed's life: the gateway and clockd (built on
    `open`, on the host side's stack), and per point each remote shard's directory,
    client over ssh, records brought back and moved onto this host's clock."""

    def __init__(self, ctx, hosts: Sequence[str]) -> None:
        self.ctx, self.hosts = ctx, tuple(hosts)
        tune = ctx.spec.tuning
        self.ssh = Ssh(tune.ssh_config, tune.players_python)
        self.clock_port = 0

    def open(self, stack: ExitStack) -> None:
        Gateway(self.ctx, self.hosts, stack).build()
        self.ctx.work_dir.mkdir(parents=True, exist_ok=True)
        self.clock_port = start_clockd(self.ctx, stack, self.ctx.work_dir)

    def check(self, host: str) -> None:
        """Try the machine first: ssh without a password, and its python with the
        client's one library; else one line that says what to fix."""
        r = self.ctx.runner.run(self.ssh.cmd(host, self.ssh.python, "-c",
                                             "import cryptography"), check=False)
        if r.returncode == 0:
            return
        err = (r.stderr or "").strip().splitlines()
        why = err[-1] if err else f"exit {r.returncode}"
        hint = (f"check that `ssh{' -F ' + self.ssh.config if self.ssh.config else ''} "
                f"{host} true` works without a password" if r.returncode == 255 else
                "install python3 with cryptography there (apt-get install "
                "python3-cryptography) or give --players-python")
        raise CommandError(f"--players-on {host}: {why}; {hint}")

    def path_of(self, shard) -> str:
        """The shard's directory on its machine: the run's prefix and the shard's index."""
        return f"{REMOTE_ROOT}/{self.ctx.topo.prefix}-s{shard.index}"

    def host_of(self, shard) -> str:
        return self.hosts[shard.index % len(self.hosts)]

    def run(self, point, shards: Sequence, args: Sequence[list], timeout_extra: float,
            started_file: Path | None = None) -> dict | None:
        """Every shard (`args`: its client's arguments after `-m fpsmodel`, its records to
        `path_of(shard)`/out) on its machine
        through the start gate; their records back, onto this host's clock, merged."""
        from hostside.shards import run_sharded, shard_dir

        c = self.ctx
        with ExitStack() as stack:
            dirs = [stack.enter_context(RemoteDir(self.ssh, self.host_of(sh), self.path_of(sh),
                                                  c.runner, c.manifest)) for sh in shards]
            cmds = [remote_client(self.ssh, rd.host, rd.path, a, self.clock_port)
                    for rd, a in zip(dirs, args, strict=True)]

            def fetch(sh) -> None:
                d = shard_dir(point.dir, sh)
                dirs[sh.index].fetch(d)
                onto_host_clock(d)

            def started(start_ns: int) -> None:
                if started_file is not None:
                    Path(started_file).write_text(f"{start_ns}\n")

            summary = run_sharded(c, point, shards, cmds, timeout_extra,
                                  hooks=(started, fetch, self._record_clocks(point, shards)))
        if summary is not None:  # each shard's machine, beside its CPU
            for own, sh in zip(summary["shards"], shards, strict=True):
                own["machine"] = self.host_of(sh)
            write_json(point.dir / "client_summary.json", summary)
        return summary

    def _record_clocks(self, point, shards):
        """Before the merge: the point's PLAYER_CLOCK from every shard's exchanges."""
        from hostside.shards import shard_dir

        def write() -> None:
            write_player_clock(point.dir, [(sh, self.host_of(sh), shard_dir(point.dir, sh))
                                           for sh in shards])
        return write
