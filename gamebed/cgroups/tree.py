"""A run's cgroups (root): each a Group with a directory in every hierarchy it uses,
listed in the manifest before it is made; a CgroupTree of them under one base (the
root, or a scope systemd delegates)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from gamebed.cgroups.layout import (
    CONTROLLERS,
    V2_ENABLE,
    CgroupError,
    Layout,
    detect,
    root_controllers,
    systemd_is_init,
)
from gamebed.cgroups.scan import per_cpu_source
from gamebed.manifest import Manifest
from gamebed.proc import Runner


@dataclass(frozen=True)
class CpuUsage:
    """A group's cumulative CPU counters."""

    cpu_s: float
    user_s: float
    system_s: float
    throttled_s: float
    nr_throttled: int
    nr_periods: int


@dataclass(frozen=True)
class Throttling:
    """A group's CFS bandwidth counters."""

    throttled_s: float
    nr_throttled: int
    nr_periods: int

    def fields(self) -> tuple[float, int, int]:
        return self.throttled_s, self.nr_throttled, self.nr_periods


@dataclass(frozen=True)
class MemoryUsage:
    """A group's memory as the memory controller charges it (bytes)."""

    current: int
    anon: int
    file: int


def _kv(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split()[:2] for line in path.read_text().splitlines()
                                   if len(line.split()) >= 2)}


class Group:
    """One of the run's groups: a directory per v1 hierarchy it uses, or one on v2.
    Enter it to make it (listed in the manifest first); leave it to remove it."""

    def __init__(self, tree: CgroupTree, name: str, controllers: tuple[str, ...],
                 parent: Group | None = None) -> None:
        self.tree, self.name, self.parent = tree, name, parent
        self.controllers = controllers
        self.dirs: dict[str, Path] = {}  # hierarchy key ("v2" or a v1 mount) → directory
        self._entries: list[dict] = []

    def _dir_in(self, key: str) -> Path:
        """Where this group's directory is in hierarchy `key`: under its parent's there,
        else at the hierarchy's root (v1) or the run's base (v2)."""
        p = self.parent
        while p is not None and key not in p.dirs:
            p = p.parent
        if p is not None:
            return p.dirs[key] / self.name
        return (self.tree.base() if key == "v2" else Path(key)) / self.name

    def _keys(self, controllers: tuple[str, ...]) -> list[str]:
        lay, keys = self.tree.layout, []
        for c in controllers:
            key = "v2" if lay.where(c) == "v2" else str(lay.v1.get(c, ""))
            if key and key not in keys:
                keys.append(key)
        return keys

    def __enter__(self) -> Group:
        try:
            self.ensure(self.controllers)
        except BaseException:
            self.__exit__()
            raise
        return self

    def ensure(self, controllers: tuple[str, ...]) -> None:
        """Make this group's directory in the hierarchies of `controllers` it lacks."""
        missing = self.tree.layout.missing(controllers)
        if missing:
            raise FileNotFoundError(
                f"no cgroup hierarchy holds {', '.join(missing)} ({self.tree.layout.kind} "
                f"host): mount cgroup2 at /sys/fs/cgroup, or the v1 {missing[0]} hierarchy")
        for key in self._keys(controllers):
            if key in self.dirs:
                continue
            path = self._dir_in(key)
            if key == "v2":  # its controllers' files appear once its parent enables them
                self.tree.enable_below(path.parent)
            self._entries.append(self.tree.manifest.add(kind="cgroup", path=str(path)))
            self.tree.mkdir(path)
            self.dirs[key] = path
            if "cpuset" in controllers and key == str(self.tree.layout.v1.get("cpuset")):
                self.tree.inherit_mems(path)  # a v1 cpuset takes no task without mems

    def __exit__(self, *exc: object) -> None:
        from gamebed.resources import remove_cgroup

        for entry in reversed(self._entries):
            if self.tree.runner.dry_run or remove_cgroup(Path(entry["path"])):
                self.tree.manifest.remove(entry)  # else it stays listed for `gamebed clean`
        self._entries, self.dirs = [], {}

    def _file(self, controller: str, name: str) -> Path:
        lay = self.tree.layout
        key = "v2" if lay.where(controller) == "v2" else str(lay.v1.get(controller, ""))
        if key not in self.dirs:
            raise RuntimeError(f"cgroup {self.name} has no {controller} directory")
        return self.dirs[key] / name

    def hierarchy(self, controller: str) -> str:
        """'v1' or 'v2': where this group's `controller` is."""
        return self.tree.layout.where(controller) or "v1"

    @property
    def procs_files(self) -> list[Path]:
        """The cgroup.procs files a process writes itself into to join this group: its own
        directories, and its nearest ancestor's in hierarchies where it has none."""
        files, g = {}, self
        while g is not None:
            for key, path in g.dirs.items():
                files.setdefault(key, path / "cgroup.procs")
            g = g.parent
        return list(files.values())

    def pids(self) -> list[int]:
        key = next(iter(self.dirs), None)
        if key is None or self.tree.runner.dry_run:
            return []
        try:
            return [int(x) for x in (self.dirs[key] / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def set_weight(self, weight: int) -> None:
        """A CFS weight in this hierarchy's own units (xen_weight, budget_weights)."""
        v1 = self.hierarchy("cpu") == "v1"
        self.tree.write(self._file("cpu", "cpu.shares" if v1 else "cpu.weight"), weight)

    def set_quota(self, quota_us: int, period_us: int) -> None:
        """A CFS bandwidth limit: `quota_us` of CPU time every `period_us`."""
        if self.hierarchy("cpu") == "v1":
            self.tree.write(self._file("cpu", "cpu.cfs_period_us"), period_us)
            self.tree.write(self._file("cpu", "cpu.cfs_quota_us"), quota_us)
        else:
            self.tree.write(self._file("cpu", "cpu.max"), f"{quota_us} {period_us}")

    def set_cpus(self, cpus: str) -> None:
        """The CPUs (a list like '0,2-3') every task in the group may run on, now and later."""
        self.tree.write(self._file("cpuset", "cpuset.cpus"), cpus)

    def throttling(self) -> Throttling:
        """How often and how long a CFS quota held the group back (zeros without one)."""
        if self.tree.runner.dry_run or "cpu" not in self._controllers_made():
            return Throttling(0.0, 0, 0)
        st = _kv(self._file("cpu", "cpu.stat"))
        ns = st.get("throttled_time", st.get("throttled_usec", 0) * 1000)
        return Throttling(ns / 1e9, st.get("nr_throttled", 0), st.get("nr_periods", 0))

    def _controllers_made(self) -> set[str]:
        lay = self.tree.layout
        return {c for c in CONTROLLERS
                if ("v2" if lay.where(c) == "v2" else str(lay.v1.get(c, ""))) in self.dirs}

    def usage(self) -> CpuUsage | None:
        """Cumulative CPU counters (None in a dry run)."""
        if self.tree.runner.dry_run:
            return None
        t = self.throttling()
        if self.hierarchy("cpuacct") == "v2":
            st = _kv(self._file("cpuacct", "cpu.stat"))
            return CpuUsage(st["usage_usec"] / 1e6, st["user_usec"] / 1e6,
                            st["system_usec"] / 1e6, *t.fields())
        acct, hz = _kv(self._file("cpuacct", "cpuacct.stat")), os.sysconf("SC_CLK_TCK")
        return CpuUsage(int(self._file("cpuacct", "cpuacct.usage").read_text()) / 1e9,
                        acct["user"] / hz, acct["system"] / hz, *t.fields())

    def memory(self) -> MemoryUsage | None:
        """What the memory controller charges the group (None without one, or dry)."""
        if self.tree.runner.dry_run or "memory" not in self.controllers:
            return None
        if self.hierarchy("memory") == "v2":
            st = _kv(self._file("memory", "memory.stat"))
            return MemoryUsage(int(self._file("memory", "memory.current").read_text()),
                               st.get("anon", 0), st.get("file", 0))
        st = _kv(self._file("memory", "memory.stat"))
        return MemoryUsage(int(self._file("memory", "memory.usage_in_bytes").read_text()),
                           st.get("rss", 0), st.get("cache", 0))


class CgroupTree:
    """A testbed's cgroups: the layout, the v2 base (made on first use), the guests'
    parent (`guests`, given directories as its users need them) and the writes.  A
    context manager: leaving it removes the guests' parent and the base it made."""

    def __init__(self, prefix: str, manifest: Manifest, runner: Runner,
                 layout: Layout | None = None) -> None:
        self.prefix, self.manifest, self.runner = prefix, manifest, runner
        self.layout = layout or detect()
        self.guests = Group(self, f"{prefix}-guests", ())
        self.delegation = "none" if "v2" not in self._used() else "not yet made"
        self.enabled_at_root: list[str] = []
        self._base: Path | None = None
        self._enabled: set[Path] = set()
        self._keeper = None  # the delegated scope's process (systemd hosts)
        self._keeper_group: Group | None = None

    def _used(self) -> set[str]:
        return {self.layout.where(c) or "" for c in CONTROLLERS}

    def group(self, name: str, controllers: tuple[str, ...],
              parent: Group | None = None) -> Group:
        """A group to enter (under `parent`, or at the top of the run's tree)."""
        return Group(self, name, controllers, parent)

    def __enter__(self) -> CgroupTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.guests.__exit__()
        if self._keeper_group is not None:
            self._keeper_group.__exit__()  # kills the keeper: the scope goes with it
            self._keeper_group = None
        if self._keeper is not None:
            self._keeper.__exit__()
            self._keeper = None
        self._base, self._enabled = None, set()

    # --- the v2 base ------------------------------------------------------------------

    def base(self) -> Path:
        """Where the run's v2 groups go: the root, or a scope systemd delegates to us."""
        if self._base is None:
            if systemd_is_init():
                self._base = self._delegated_scope()
            else:
                self._base = self.layout.v2
                self.delegation = "the root's cgroup.subtree_control (no systemd)"
                self.enabled_at_root = self.enable_below(self._base)
        return self._base

    def _delegated_scope(self) -> Path:
        from gamebed.resources import ManagedProcess

        unit = f"{self.prefix}-cgroups.scope"
        self._keeper = ManagedProcess(
            ["systemd-run", "--scope", "--quiet", "--collect", "-p", "Delegate=yes",
             f"--unit={unit}", "--", "sleep", "infinity"], self.runner, self.manifest,
            name="cgroup-scope")
        self._keeper.__enter__()
        self.delegation = f"systemd scope {unit} (Delegate=yes)"
        if self.runner.dry_run:
            return self.layout.v2 / "system.slice" / unit
        base = self.layout.v2 / _wait_for_cgroup(self._keeper.pid, unit)
        # no process in an inner group: the scope's own waits in a leaf of its own,
        # made before the scope enables any controller below itself
        self._base = base
        self._enabled.add(base)
        self._keeper_group = Group(self, f"{self.prefix}-keeper", ("cpuacct",)).__enter__()
        self.write(self._keeper_group.dirs["v2"] / "cgroup.procs", self._keeper.pid)
        self._enabled.discard(base)
        self.enable_below(base)
        return base

    def enable_below(self, path: Path) -> list[str]:
        """Enable in `path`'s cgroup.subtree_control what gamebed's groups need and it
        offers; what it enabled."""
        if path in self._enabled:
            return []
        self._enabled.add(path)
        offered = (set(self.layout.v2_controllers) if self.runner.dry_run
                   else set(root_controllers(path)))
        want = [c for c in V2_ENABLE if c in offered]
        if not self.runner.dry_run:
            have = set((path / "cgroup.subtree_control").read_text().split())
            want = [c for c in want if c not in have]
        if want:
            self.write(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in want))
        return want

    # --- writes, echoed in a dry run --------------------------------------------------

    def mkdir(self, path: Path) -> None:
        if self.runner.dry_run:
            self.runner.echo(f"mkdir {path}")
        else:
            path.mkdir()

    def write(self, path: Path, value: object) -> None:
        if self.runner.dry_run:
            self.runner.echo(f"echo {value} > {path}")
            return
        try:
            path.write_text(str(value))
        except OSError as e:
            hint = ("; gamebed needs a cgroup of its own to delegate: run it as root on the "
                    "host, or under systemd" if path.name == "cgroup.subtree_control" else "")
            raise CgroupError(f"the kernel refused {value} for {path} "
                              f"({e.strerror}){hint}") from e

    def inherit_mems(self, path: Path) -> None:
        if not self.runner.dry_run:
            path.joinpath("cpuset.mems").write_text(
                path.parent.joinpath("cpuset.mems").read_text().strip())

    def describe(self) -> dict:
        """point.json's `cgroups`: the hierarchy used, and how."""
        return {"hierarchy": self.layout.kind,
                "controllers": {c: self.layout.where(c) for c in CONTROLLERS},
                "v2_base": str(self._base) if self._base else None,
                "delegation": self.delegation, "enabled_at_root": self.enabled_at_root,
                "per_cpu_usage": per_cpu_source(self.layout).name}


def _wait_for_cgroup(pid: int, unit: str, seconds: float = 10.0) -> str:
    """The v2 path of `pid`'s group once systemd has moved it into `unit`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                if line.startswith("0::") and line.rstrip().endswith(unit):
                    return line[3:].strip().lstrip("/")
        except OSError:
            break
        time.sleep(0.05)
    raise RuntimeError(f"systemd-run did not put gamebed's keeper into {unit}: gamebed "
                       "needs a delegated cgroup under systemd (run it as root on the host)")
