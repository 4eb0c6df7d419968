"""The kernel objects and processes a run creates, each a context manager (root).

Each object is listed in the run manifest (gamebed/manifest.py) before it is
created and struck off once it is gone.  The removal functions here serve both
teardown and `gamebed clean` after a killed run.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from gamebed.cgroups import CgroupTree, Group, xen_weight
from gamebed.manifest import Manifest
from gamebed.proc import How, Process, Runner, log, shielding, shielding_enter

CFS_PERIOD_US = 100_000  # a per-guest cap's period (--cpu-cap): the kernel's default
GUEST_CONTROLLERS = ("cpu", "cpuacct", "memory")  # a guest's group: weight, cap, usage


class ManagedProcess(Process):
    """A Process that is listed in the run manifest while it lives."""

    def __init__(self, args: Sequence[str], runner: Runner, manifest: Manifest,
                 log_path: Path | None = None, name: str = "", how: How | None = None) -> None:
        super().__init__(args, runner, log_path, name, how or How())
        self.manifest = manifest
        self._entry: dict | None = None

    @shielding  # started and listed, or neither
    def start(self) -> ManagedProcess:
        super().start()
        if self.pid:
            self._entry = self.manifest.add(kind="process", pid=self.pid, name=self.name,
                                            start_time=proc_start_time(self.pid),
                                            group=self.group)
        return self

    @shielding_enter  # started and listed and handed to the with-statement, or undone
    def __enter__(self) -> ManagedProcess:
        return self.start()

    @shielding  # stopped and struck off, or neither
    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._entry:
            self.manifest.remove(self._entry)


class Netns:
    """`ip netns add` / `ip netns del`."""

    def __init__(self, name: str, runner: Runner, manifest: Manifest) -> None:
        self.name, self.runner, self.manifest = name, runner, manifest
        self._entry: dict | None = None

    @shielding_enter
    def __enter__(self) -> Netns:
        self._entry = self.manifest.add(kind="netns", name=self.name)
        self.runner.ip("", "netns", "add", self.name)
        self.runner.ip(self.name, "link", "set", "lo", "up")
        return self

    @shielding
    def __exit__(self, *exc: object) -> None:
        remove_netns(self.runner, self.name)
        self.manifest.remove(self._entry)


class Veth:
    """A veth pair created straight into two namespaces.  An empty namespace name means
    the root namespace: the VM backend's host side, where libvirt's taps live."""

    def __init__(self, a: tuple[str, str], b: tuple[str, str], runner: Runner,
                 manifest: Manifest, mtu: int = 1500) -> None:
        (self.ns_a, self.name_a), (self.ns_b, self.name_b) = a, b
        self.runner, self.manifest, self.mtu = runner, manifest, mtu
        self._entry: dict | None = None

    @shielding_enter
    def __enter__(self) -> Veth:
        self._entry = self.manifest.add(kind="veth", netns=self.ns_a, name=self.name_a)
        where_a = ["netns", self.ns_a] if self.ns_a else []
        self.runner.ip("", "link", "add", self.name_a, *where_a, "mtu", self.mtu,
                       "type", "veth", "peer", "name", self.name_b, "netns", self.ns_b,
                       "mtu", self.mtu)
        return self

    @shielding
    def __exit__(self, *exc: object) -> None:
        remove_link(self.runner, self.ns_a, self.name_a)
        self.manifest.remove(self._entry)


def pss_mib(pids: list[int]) -> float:
    """Proportional set size of these processes (a group's): their memory, with the
    pages they share counted once."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass  # gone meanwhile
    return total / 1024


class Cpuset:
    """The guests' CPUs, for every task of theirs now and later (the guests' parent
    group's cpuset; a taskset would fix them at start): every CPU while they boot
    (nothing is measured then), `narrow()`ed to the guests' CPUs before a load."""

    def __init__(self, tree: CgroupTree) -> None:
        self.tree = tree
        self.cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))

    def __enter__(self) -> Cpuset:
        self.tree.guests.ensure(("cpuset",))
        self.widen()
        return self

    def __exit__(self, *exc: object) -> None:
        pass  # the guests' parent is the tree's: it goes with the testbed

    def widen(self) -> None:
        """Every CPU this run may use (while guests boot)."""
        self.tree.guests.set_cpus(self.cpus)

    def narrow(self, cpus: str) -> None:
        """Only `cpus` (a taskset list), for every task in it now and later."""
        self.tree.guests.set_cpus(cpus)


CPU_SYSFS = Path("/sys/devices/system/cpu")


class IdlePoll:
    """The host side's CPUs poll when idle instead of halting, for the run: each one's
    PM QoS resume latency set to 'n/a' (no wake-up latency allowed), which the cpuidle
    governor answers with its polling state.  A halted vCPU here wakes a sleeping
    client 30-60 µs late at the median and 300 µs-1 ms at the 99th percentile
    (docs/workloads.md); the guests' CPUs are left as they are.  Listed in the manifest
    with the value it replaced, which leaving (or `gamebed clean`) writes back.
    Where a CPU has no such file or refuses the value, nothing is changed and
    `result` says why (the client is then as punctual as the CPU lets it be)."""

    def __init__(self, cpus: tuple[int, ...], manifest: Manifest, runner: Runner) -> None:
        self.cpus, self.manifest, self.runner = cpus, manifest, runner
        self._entries: list[dict] = []
        self.result = "not tried"

    @staticmethod
    def path(cpu: int) -> Path:
        return CPU_SYSFS / f"cpu{cpu}" / "power" / "pm_qos_resume_latency_us"

    @shielding_enter
    def __enter__(self) -> IdlePoll:
        for cpu in self.cpus:
            path = self.path(cpu)
            if self.runner.dry_run:
                self.runner.echo(f"echo n/a > {path}")
                continue
            try:
                old = path.read_text().strip()
                entry = self.manifest.add(kind="sysfs", path=str(path), value=old)
                self._entries.append(entry)
                path.write_text("n/a")
            except OSError as e:
                self.result = f"idle CPUs halt: {path}: {e.strerror or e}"
                return self
        self.result = "poll (PM QoS resume latency n/a on CPU " + \
            ",".join(map(str, self.cpus)) + ")"
        return self

    @shielding
    def __exit__(self, *exc: object) -> None:
        for entry in reversed(self._entries):
            restore_sysfs(entry["path"], entry["value"])
            self.manifest.remove(entry)
        self._entries = []


def restore_sysfs(path: str, value: str) -> bool:
    """Write back a sysfs value a run changed ('0' reads back as '0' and means none)."""
    try:
        Path(path).write_text(value)
        return True
    except OSError:
        return False


class GuestCgroups(dict):
    """Each guest's cgroup (a gamebed.cgroups.Group), by guest index: what the backends
    that use them report."""

    def usage(self) -> dict[int, dict]:
        out = {}
        for i, g in self.items():
            u = g.usage()
            out[i] = dataclasses.asdict(u) if u else {}
        return out

    def memory(self) -> dict[int, float]:
        return {i: round(pss_mib(g.pids()), 1) for i, g in self.items()}

    def pids(self) -> dict[int, list[int]]:
        """Each guest's processes (its cgroup's)."""
        return {i: g.pids() for i, g in self.items()}

    def charged_mib(self) -> dict[int, float]:
        """What the memory controller charges each guest (MiB)."""
        out = {}
        for i, g in self.items():
            m = g.memory()
            if m is not None:
                out[i] = round(m.current / 2**20, 1)
        return out


class guest_cgroup:  # noqa: N801 -- used like a function: `with guest_cgroup(...) as g`
    """A guest's group under the guests' parent: a CFS cap of `share` of one CPU
    (--cpu-cap), a relative `weight` (--cpu-weight, Xen's units), its CPU time and
    throttling on record even uncapped.  A class, not a generator: a generator left
    open by `gamebed launch` (its guests outlive the process) would be closed when the
    interpreter exits, and removing the group kills the guest in it."""

    def __init__(self, tree: CgroupTree, name: str, share: float | None = None,
                 weight: int | None = None) -> None:
        self.group = tree.group(name, GUEST_CONTROLLERS, parent=tree.guests)
        self.share, self.weight = share, weight

    def __enter__(self) -> Group:
        g = self.group.__enter__()
        try:
            if self.share is not None:
                g.set_quota(int(self.share * CFS_PERIOD_US), CFS_PERIOD_US)
            if self.weight is not None:
                g.set_weight(xen_weight(g.hierarchy("cpu"), self.weight))
        except BaseException:
            g.__exit__()
            raise
        return g

    def __exit__(self, *exc: object) -> None:
        self.group.__exit__()


# --- removal, shared by teardown and `gamebed clean` ---------------------------------------

def remove_netns(runner: Runner, name: str) -> None:
    if runner.dry_run or Path("/run/netns", name).exists():
        runner.ip("", "netns", "del", name, check=False)


def remove_link(runner: Runner, netns: str, name: str) -> None:
    if netns and not runner.dry_run and not Path("/run/netns", netns).exists():
        return  # the namespace took its links with it
    if runner.ip(netns, "link", "show", name, check=False) == 0:
        runner.ip(netns, "link", "del", name, check=False)


def remove_domain(runner: Runner, uri: str, name: str, tap: str | None) -> bool:
    """Destroy a transient libvirt domain (it then vanishes, and libvirt deletes its tap)."""
    r = runner.run(["virsh", "-c", uri, "destroy", name], check=False)
    for _ in range(200):
        if not tap or runner.dry_run or not Path("/sys/class/net", tap).exists():
            break
        time.sleep(0.05)
    return r.returncode == 0


def remove_cgroup(path: Path) -> bool:
    """rmdir, retried while the kernel still counts exiting tasks; False if it stays.
    Processes still in it are ours (it is listed in our manifest): they are killed,
    thawed first where a killed run left them frozen (--stalls' freezer group)."""
    try:
        (path / "freezer.state").write_text("THAWED")
    except OSError:
        pass  # not a freezer group, or gone
    for pid in _cgroup_pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in range(100):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.05)
    log.warning("could not remove cgroup %s (still busy); `gamebed clean` retries", path)
    return False


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks (field 22 of /proc/PID/stat); tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def kill_process(pid: int, start_time: int | None, group: bool = False) -> bool:
    """Kill a listed process (and its process group, for a UML kernel) only if it is
    still the one we started."""
    if start_time is None or proc_start_time(pid) != start_time:
        return False
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def remove_remote_dir(runner: Runner, entry: dict) -> bool:
    """`rm -rf` a player machine's listed directory over ssh (hostside/players.py
    RemoteDir: teardown and `gamebed clean`), and the shared parent once empty."""
    if not entry:
        return False
    path = shlex.quote(entry["path"])
    parent = shlex.quote(str(Path(entry["path"]).parent))
    cmd = [*entry["ssh"], entry["host"], shlex.join(
        ["sh", "-c", f"rm -rf {path}; rmdir {parent} 2>/dev/null; true"])]
    return runner.run(cmd, check=False).returncode == 0


def clean_manifest(path: Path, runner: Runner) -> list[str]:
    """Remove everything one manifest lists, newest first; returns what was done."""
    m = Manifest.load(path)
    done = []
    for e in reversed(list(m.entries)):
        kind = e["kind"]
        if kind == "process":
            if kill_process(e["pid"], e.get("start_time"), e.get("group", False)):
                done.append(f"killed process {e['pid']} ({e.get('name', '')})")
        elif kind == "cgroup":
            if not remove_cgroup(Path(e["path"])):
                done.append(f"cgroup {e['path']} still busy; left listed")
                continue
            done.append(f"removed cgroup {e['path']}")
        elif kind == "veth":
            remove_link(runner, e["netns"], e["name"])
            done.append(f"removed veth {e['name']}")
        elif kind == "netns":
            remove_netns(runner, e["name"])
            done.append(f"removed netns {e['name']}")
        elif kind == "domain":
            if remove_domain(runner, e["uri"], e["name"], e.get("tap")):
                done.append(f"destroyed VM {e['name']}")
        elif kind == "sysfs":
            if restore_sysfs(e["path"], e["value"]):
                done.append(f"restored {e['path']} to {e['value']}")
        elif kind == "remote_dir":
            if remove_remote_dir(runner, e):
                done.append(f"removed {e['host']}:{e['path']}")
        elif kind == "dir":
            shutil.rmtree(e["path"], ignore_errors=True)
            done.append(f"removed {e['path']}")
            run_dir = Path(e["path"]).parent  # VM_DIR/<prefix>: the run's, once empty
            if run_dir.name == m.prefix and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
                done.append(f"removed {run_dir}")
        m.remove(e)
    m.close()
    return done
