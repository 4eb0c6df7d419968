"""Run manifest and the kernel objects a run creates, each a context manager (root).

Every namespace, veth, cgroup and process a run creates is written to the run
manifest *before* it is created, and struck off once it is gone.  Teardown, and
`gamebed clean` after a killed run, remove exactly what a manifest lists:
nothing is ever removed by name pattern.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import time
from pathlib import Path

from vm.sysutil import Runner, log

STATE_DIR = Path(os.environ.get("GAMEBED_STATE_DIR", "/run/gamebed"))
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def new_prefix() -> str:
    """Per-run name prefix: short enough for 15-character interface names."""
    return "gb" + secrets.token_hex(3)


class Manifest:
    """A JSON list of created objects, rewritten atomically on every change."""

    def __init__(self, prefix: str, state_dir: Path | None = None, dry_run: bool = False) -> None:
        self.prefix = prefix
        self.dry_run = dry_run
        self.path = (state_dir or STATE_DIR) / f"{prefix}.json"
        self.entries: list[dict] = []
        if not dry_run:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._save()

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(Path(path).read_text())
        m = cls.__new__(cls)
        m.prefix, m.dry_run, m.path = data["prefix"], False, Path(path)
        m.entries = data["entries"]
        return m

    def _save(self) -> None:
        if self.dry_run:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"prefix": self.prefix, "entries": self.entries}, indent=1))
        os.replace(tmp, self.path)

    def add(self, **entry) -> dict:
        self.entries.append(entry)
        self._save()
        return entry

    def remove(self, entry: dict) -> None:
        if entry in self.entries:
            self.entries.remove(entry)
            self._save()

    def close(self) -> None:
        """Drop the manifest file once nothing it lists remains."""
        if not self.dry_run and not self.entries:
            self.path.unlink(missing_ok=True)


class Netns:
    """`ip netns add` / `ip netns del`."""

    def __init__(self, name: str, runner: Runner, manifest: Manifest) -> None:
        self.name, self.runner, self.manifest = name, runner, manifest
        self._entry: dict | None = None

    def __enter__(self) -> Netns:
        self._entry = self.manifest.add(kind="netns", name=self.name)
        self.runner.run(["ip", "netns", "add", self.name])
        self.runner.run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        return self

    def __exit__(self, *exc: object) -> None:
        remove_netns(self.runner, self.name)
        self.manifest.remove(self._entry)

    def exec(self, *args: str) -> list[str]:
        """Argument prefix to run a command inside this namespace."""
        return ["ip", "netns", "exec", self.name, *args]


class Veth:
    """A veth pair created straight into two namespaces.  An empty namespace name means
    the root namespace: the VM backend's host side, where libvirt's taps live."""

    def __init__(self, a: tuple[str, str], b: tuple[str, str], runner: Runner,
                 manifest: Manifest, mtu: int = 1500) -> None:
        (self.ns_a, self.name_a), (self.ns_b, self.name_b) = a, b
        self.runner, self.manifest, self.mtu = runner, manifest, mtu
        self._entry: dict | None = None

    def __enter__(self) -> Veth:
        self._entry = self.manifest.add(kind="veth", netns=self.ns_a, name=self.name_a)
        where_a = ["netns", self.ns_a] if self.ns_a else []
        self.runner.run(["ip", "link", "add", self.name_a, *where_a, "mtu", self.mtu,
                         "type", "veth", "peer", "name", self.name_b, "netns", self.ns_b,
                         "mtu", self.mtu])
        return self

    def __exit__(self, *exc: object) -> None:
        remove_link(self.runner, self.ns_a, self.name_a)
        self.manifest.remove(self._entry)


class CpuCgroup:
    """A cgroup-v1 `cpu` group with a CFS quota: models a VM's share of a CPU."""

    def __init__(self, name: str, share: float, manifest: Manifest, runner: Runner,
                 period_us: int = 100_000) -> None:
        self.path = CGROUP_V1_CPU / name
        self.share, self.manifest, self.runner, self.period = share, manifest, runner, period_us
        self._entry: dict | None = None

    def __enter__(self) -> CpuCgroup:
        if not CGROUP_V1_CPU.is_dir():
            raise FileNotFoundError(f"{CGROUP_V1_CPU} is not mounted: a per-guest CPU cap "
                                    "needs the cgroup-v1 cpu controller")
        self._entry = self.manifest.add(kind="cgroup", path=str(self.path))
        if self.runner.dry_run:
            self.runner.echo(f"mkdir {self.path}; echo {int(self.share * self.period)} > "
                             f"{self.path}/cpu.cfs_quota_us")
            return self
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(self.period))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(self.share * self.period)))
        return self

    def add_pid(self, pid: int) -> None:
        if not self.runner.dry_run:
            (self.path / "cgroup.procs").write_text(str(pid))

    def __exit__(self, *exc: object) -> None:
        if remove_cgroup(self.path):  # else it stays listed for `gamebed clean`
            self.manifest.remove(self._entry)


# --- removal, shared by teardown and `gamebed clean` ---------------------------------------

def remove_netns(runner: Runner, name: str) -> None:
    if runner.dry_run or Path("/run/netns", name).exists():
        runner.run(["ip", "netns", "del", name], check=False)


def remove_link(runner: Runner, netns: str, name: str) -> None:
    if netns and not runner.dry_run and not Path("/run/netns", netns).exists():
        return  # the namespace took its links with it
    where = ["-n", netns] if netns else []
    probe = runner.run(["ip", *where, "link", "show", name], check=False)
    if probe.returncode == 0:
        runner.run(["ip", *where, "link", "del", name], check=False)


def remove_domain(runner: Runner, uri: str, name: str, tap: str | None) -> bool:
    """Destroy a transient libvirt domain (it then vanishes, and libvirt deletes its tap)."""
    r = runner.run(["virsh", "-c", uri, "destroy", name], check=False)
    for _ in range(200):
        if not tap or runner.dry_run or not Path("/sys/class/net", tap).exists():
            break
        time.sleep(0.05)
    return r.returncode == 0


def remove_cgroup(path: Path) -> bool:
    """rmdir, retried while the kernel still counts exiting tasks; False if it stays."""
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


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks (field 22 of /proc/PID/stat); tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def kill_process(pid: int, start_time: int | None) -> bool:
    """Kill a listed process only if it is still the one we started."""
    if start_time is None or proc_start_time(pid) != start_time:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def clean_manifest(path: Path, runner: Runner) -> list[str]:
    """Remove everything one manifest lists, newest first; returns what was done."""
    m = Manifest.load(path)
    done = []
    for e in reversed(list(m.entries)):
        kind = e["kind"]
        if kind == "process":
            if kill_process(e["pid"], e.get("start_time")):
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
        elif kind == "dir":
            shutil.rmtree(e["path"], ignore_errors=True)
            done.append(f"removed {e['path']}")
        m.remove(e)
    m.close()
    return done
