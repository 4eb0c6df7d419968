"""A guest-CPU budget: the guests get K cores' worth of their CPUs (root; cgroup v1).

`--guest-cpus K` emulates a host with less CPU for its guests, so that a capacity
model (analysis/model.py) can be checked here against hosts it was not calibrated
on.  Two ways, both on one parent cgroup that every guest's own group sits under:

- `weight` (default): a competing CPU-bound process ("hog") on each guest CPU, in a
  group of its own whose CFS weight leaves the guests' parent a share K/G of each of
  the G guest CPUs whenever both want it.  Unlike a quota it never stalls all the
  guests at once: a waking guest waits as it would behind another busy guest, which
  is what a host with fewer cores does to it.  The hogs run only during the load.
- `quota`: a CFS quota of K cores on the parent with the shortest period cgroup v1
  allows for it: 1 ms where K ≥ 1, else a 1 ms quota (the least there is) every
  1/K ms, 2.2 ms at K = 0.45.  A second check only: with the default 100 ms period
  a quota stalls every guest at once for up to (1 − K/G) × 100 ms, and on this
  kernel a throttled UML guest stops only on its return to host user mode.

What the guests actually got is recorded per point (cpu.json `budget`: the hogs'
CPU seconds, the guests', the parent's throttling), and the model reads that, not K.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gamebed.manifest import Manifest
from gamebed.proc import How, Runner, pinned
from gamebed.resources import CGROUP_V1_CPU, CGROUP_V1_CPUACCT, ManagedProcess, remove_cgroup

SHARES_BASE = 1024  # the hogs' group's cpu.shares; the guests' parent's follows from K
QUOTA_MIN_US = 1000  # cgroup v1's shortest CFS period, and its smallest quota
HOG_CODE = "while True: pass"


def parent_shares(per_cpu: float) -> int:
    """The guests' parent's cpu.shares beside the hogs' SHARES_BASE, so the guests get
    `per_cpu` of each CPU when both groups want it: w_g / (w_g + w_h) = per_cpu."""
    if not 0 < per_cpu < 1:
        raise ValueError("a share of a CPU beside a hog is in (0, 1)")
    return max(2, min(262144, round(SHARES_BASE * per_cpu / (1 - per_cpu))))


def quota_us(cores: float) -> tuple[int, int]:
    """(period, quota) in µs for a quota of `cores` with the shortest period allowed."""
    if cores >= 1:
        return QUOTA_MIN_US, round(cores * QUOTA_MIN_US)
    return round(QUOTA_MIN_US / cores), QUOTA_MIN_US


def _read_kv(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


class GuestCpus:
    """The guests' parent cgroup (every guest's cpu group is made under `parent`) and,
    in `weight` mode, the hogs' group; both listed in the run manifest before they are
    made.  `hogs()` runs the hogs for one load; `usage()` reads the counters that
    `cpu.json` records."""

    def __init__(self, cores: float, by: str, cpus: tuple[int, ...], prefix: str,
                 manifest: Manifest, runner: Runner) -> None:
        if not 0 < cores <= len(cpus):
            raise ValueError(f"--guest-cpus {cores:g}: the guests have {len(cpus)} CPU(s) "
                             f"here; give a number of cores in (0, {len(cpus)}]")
        self.cores, self.by, self.cpus = cores, by, cpus
        self.per_cpu = cores / len(cpus)
        self.parent = CGROUP_V1_CPU / f"{prefix}-guests"
        self.hog_cpu = CGROUP_V1_CPU / f"{prefix}-hog"
        self.hog_acct = CGROUP_V1_CPUACCT / f"{prefix}-hog"
        self.manifest, self.runner = manifest, runner
        self._entries: list[dict] = []

    @property
    def needs_hogs(self) -> bool:
        return self.by == "weight" and self.per_cpu < 1

    def settings(self) -> dict[Path, dict[str, int]]:
        """What each group is given: cgroup file → value."""
        if self.by == "quota":
            period, quota = quota_us(self.cores)
            return {self.parent: {"cpu.cfs_period_us": period, "cpu.cfs_quota_us": quota}}
        if not self.needs_hogs:
            return {self.parent: {}}
        return {self.parent: {"cpu.shares": parent_shares(self.per_cpu)},
                self.hog_cpu: {"cpu.shares": SHARES_BASE}, self.hog_acct: {}}

    def __enter__(self) -> GuestCpus:
        if not CGROUP_V1_CPU.is_dir() or not CGROUP_V1_CPUACCT.is_dir():
            raise FileNotFoundError("--guest-cpus needs the cgroup-v1 cpu and cpuacct "
                                    "hierarchies under /sys/fs/cgroup (mount them)")
        try:
            for path, values in self.settings().items():
                self._entries.append(self.manifest.add(kind="cgroup", path=str(path)))
                self._write(path, values)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _write(self, path: Path, values: dict[str, int]) -> None:
        if self.runner.dry_run:
            self.runner.echo(f"mkdir {path}")
            for key, value in values.items():
                self.runner.echo(f"echo {value} > {path / key}")
            return
        path.mkdir()
        for key, value in values.items():
            try:
                (path / key).write_text(str(value))
            except OSError as e:
                raise RuntimeError(f"--guest-cpus: the kernel refused {value} for "
                                   f"{path / key} ({e.strerror}); try --guest-cpus-by "
                                   f"{'weight' if self.by == 'quota' else 'quota'}") from e

    def __exit__(self, *exc: object) -> None:
        for entry in reversed(self._entries):
            if self.runner.dry_run or remove_cgroup(Path(entry["path"])):
                self.manifest.remove(entry)  # else it stays listed for `gamebed clean`
        self._entries = []

    @contextmanager
    def hogs(self) -> Iterator[None]:
        """One CPU-bound process per guest CPU, pinned to it, in the hogs' group, for the
        block (none in quota mode or at a whole core per CPU)."""
        with ExitStack() as stack:
            if self.needs_hogs:
                groups = () if self.runner.dry_run else (
                    self.hog_cpu / "cgroup.procs", self.hog_acct / "cgroup.procs")
                for cpu in self.cpus:
                    stack.enter_context(ManagedProcess(
                        pinned(str(cpu), [sys.executable, "-c", HOG_CODE]), self.runner,
                        self.manifest, name=f"hog{cpu}", how=How(2.0, cgroups=groups)))
            yield

    def usage(self) -> dict[str, float]:
        """Cumulative counters: the hogs' CPU seconds and the parent's throttling."""
        if self.runner.dry_run:
            return {}
        stat = _read_kv(self.parent / "cpu.stat")
        hog = (int((self.hog_acct / "cpuacct.usage").read_text()) / 1e9
               if self.needs_hogs else 0.0)
        return {"hog_s": hog, "throttled_s": stat["throttled_time"] / 1e9,
                "nr_throttled": stat["nr_throttled"], "nr_periods": stat["nr_periods"]}

    def record(self, before: dict, after: dict, guests_s: float, window_s: float) -> dict:
        """cpu.json's `budget`: what was asked, and what the guests got during the load.
        `share`: the guests' part of the CPU time the guests and hogs used together (the
        hogs take whatever the guests leave, so at saturation this is what the weights
        gave the guests); `cores_used`: the guests' CPU seconds per second."""
        d = {k: round(after[k] - before[k], 4) for k in after}
        both = guests_s + d.get("hog_s", 0.0)
        return {"guest_cpus": self.cores, "by": self.by, "cpus": list(self.cpus),
                "per_cpu": round(self.per_cpu, 4), **d, "guests_s": round(guests_s, 4),
                "share": round(guests_s / both, 4) if self.needs_hogs and both > 0 else None,
                "cores_used": round(guests_s / window_s, 4) if window_s > 0 else None}
