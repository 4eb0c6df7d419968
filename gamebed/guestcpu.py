"""A guest-CPU budget: the guests get K cores' worth of their CPUs (root; cgroup v1 or v2).

`--guest-cpus K` emulates a host with less CPU for its guests, so that a capacity
model (analysis/model.py) can be checked here against hosts it was not calibrated
on.  Two ways, both on one parent cgroup that every guest's own group sits under:

- `weight` (default): a competing CPU-bound process ("hog") on each guest CPU, in a
  group of its own whose CFS weight leaves the guests' parent a share K/G of each of
  the G guest CPUs whenever both want it.  Unlike a quota it never stalls all the
  guests at once: a waking guest waits as it would behind another busy guest, which
  is what a host with fewer cores does to it.  The hogs run only during the load.
- `quota`: a CFS quota of K cores on the parent with the shortest period the kernel
  allows for it: 1 ms where K ≥ 1, else a 1 ms quota (the least there is) every
  1/K ms, 2.2 ms at K = 0.45.  A second check only: with the default 100 ms period
  a quota stalls every guest at once for up to (1 − K/G) × 100 ms, and on this
  kernel a throttled UML guest stops only on its return to host user mode.

What the guests actually got is recorded per point (cpu.json `budget`: the hogs'
CPU seconds, the guests', the parent's throttling), and the model reads that, not K.
The weights are each hierarchy's own (gamebed/cgroups/ budget_weights): v1's
cpu.shares beside the hogs' 1024, v2's cpu.weight at the top of its 1..10000; both
give the guests the same share K/G, and cpu.json records the weights written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from gamebed.cgroups import CgroupError, CgroupTree, Group, budget_weights
from gamebed.proc import How, pinned
from gamebed.resources import ManagedProcess

QUOTA_MIN_US = 1000  # the shortest CFS period the kernel takes, and its smallest quota
HOG_CODE = "while True: pass"


def parent_shares(per_cpu: float) -> int:
    """The guests' parent's v1 cpu.shares beside the hogs' 1024 (budget_weights)."""
    return budget_weights("v1", per_cpu)[0]


def quota_us(cores: float) -> tuple[int, int]:
    """(period, quota) in µs for a quota of `cores` with the shortest period allowed."""
    if cores >= 1:
        return QUOTA_MIN_US, round(cores * QUOTA_MIN_US)
    return round(QUOTA_MIN_US / cores), QUOTA_MIN_US


class GuestCpus:
    """The guests' parent cgroup (every guest's cpu group is made under `parent`) and,
    in `weight` mode, the hogs' group; both listed in the run manifest before they are
    made.  `hogs()` runs the hogs for one load; `usage()` reads the counters that
    `cpu.json` records."""

    def __init__(self, cores: float, by: str, cpus: tuple[int, ...], tree: CgroupTree) -> None:
        if not 0 < cores <= len(cpus):
            raise ValueError(f"--guest-cpus {cores:g}: the guests have {len(cpus)} CPU(s) "
                             f"here; give a number of cores in (0, {len(cpus)}]")
        self.cores, self.by, self.cpus = cores, by, cpus
        self.per_cpu = cores / len(cpus)
        self.tree, self.parent = tree, tree.guests
        self.hog: Group | None = None
        self.weights: tuple[int, int] | None = None
        self.manifest, self.runner = tree.manifest, tree.runner

    @property
    def needs_hogs(self) -> bool:
        return self.by == "weight" and self.per_cpu < 1

    def __enter__(self) -> GuestCpus:
        try:
            self.parent.ensure(("cpu",))
            hier = self.parent.hierarchy("cpu")
            if self.by == "quota":
                period, quota = quota_us(self.cores)
                self.parent.set_quota(quota, period)
            elif self.needs_hogs:
                self.weights = budget_weights(hier, self.per_cpu)
                self.parent.set_weight(self.weights[0])
                self.hog = self.tree.group(f"{self.tree.prefix}-hog", ("cpu", "cpuacct"))
                self.hog.__enter__()
                self.hog.set_weight(self.weights[1])
        except CgroupError as e:
            self.__exit__()
            raise RuntimeError(f"--guest-cpus: {e}; try --guest-cpus-by "
                               f"{'weight' if self.by == 'quota' else 'quota'}") from e
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hog is not None:
            self.hog.__exit__()
            self.hog = None
        # the guests' parent is the tree's: it goes with the testbed

    @contextmanager
    def hogs(self) -> Iterator[None]:
        """One CPU-bound process per guest CPU, pinned to it, in the hogs' group, for the
        block (none in quota mode or at a whole core per CPU)."""
        with ExitStack() as stack:
            if self.needs_hogs:
                groups = () if self.runner.dry_run else tuple(self.hog.procs_files)
                for cpu in self.cpus:
                    stack.enter_context(ManagedProcess(
                        pinned(str(cpu), [sys.executable, "-c", HOG_CODE]), self.runner,
                        self.manifest, name=f"hog{cpu}", how=How(2.0, cgroups=groups)))
            yield

    def usage(self) -> dict[str, float]:
        """Cumulative counters: the hogs' CPU seconds and the parent's throttling."""
        if self.runner.dry_run:
            return {}
        t = self.parent.throttling()
        hog = self.hog.usage().cpu_s if self.hog is not None else 0.0
        return {"hog_s": hog, "throttled_s": t.throttled_s, "nr_throttled": t.nr_throttled,
                "nr_periods": t.nr_periods}

    def record(self, before: dict, after: dict, guests_s: float, window_s: float) -> dict:
        """cpu.json's `budget`: what was asked, and what the guests got during the load.
        `share`: the guests' part of the CPU time the guests and hogs used together (the
        hogs take whatever the guests leave, so at saturation this is what the weights
        gave the guests); `cores_used`: the guests' CPU seconds per second."""
        d = {k: round(after[k] - before[k], 4) for k in after}
        both = guests_s + d.get("hog_s", 0.0)
        weights = ({"guests": self.weights[0], "hogs": self.weights[1],
                    "hierarchy": self.parent.hierarchy("cpu")} if self.weights else None)
        return {"guest_cpus": self.cores, "by": self.by, "cpus": list(self.cpus),
                "per_cpu": round(self.per_cpu, 4), "weights": weights, **d,
                "guests_s": round(guests_s, 4),
                "share": round(guests_s / both, 4) if self.needs_hogs and both > 0 else None,
                "cores_used": round(guests_s / window_s, 4) if window_s > 0 else None}
