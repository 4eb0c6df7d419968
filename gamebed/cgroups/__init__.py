"""The one cgroup layer (this package): cgroup v1 (legacy), v2 (unified) and hybrid
hosts alike.

Reading the layout needs no privileges; making, writing and removing groups needs root.

Nothing outside this package names a cgroup file: gamebed/cgroups/layout.py reads
where each controller is, tree.py makes a run's groups, scan.py reads the rest.  A
run's groups form one tree:

    <base>/<prefix>-guests            the guests' parent: a --guest-cpus budget's
    <base>/<prefix>-guests/<guest>    weight or quota, the UML guests' cpuset
    <base>/<prefix>-hog               the budget's hogs

On v1 each group has a directory in every hierarchy of a controller it uses (cpu,
cpuacct, cpuset, memory), and the guests' parent only in those it is given settings
in: a guest's group then sits at the hierarchy's root where its parent has none there,
as gamebed's groups always have.  On v2 a group is one directory: `<base>` is the
root (no systemd as PID 1: gamebed enables cpu, cpuset and memory in the root's
`cgroup.subtree_control`) or, under systemd, a transient scope systemd delegates to
gamebed (`systemd-run --scope -p Delegate=yes`), whose one process waits in a leaf of
its own so that no inner group holds a process.

Each controller is taken from the hierarchy that holds it (`Layout`): on a hybrid host
(v1 controllers beside an empty v2 mount, this machine kind) everything is v1.
Every directory is listed in the run manifest before it is made and removed by rmdir
(gamebed/resources.py remove_cgroup, which `gamebed clean` shares).
"""

from gamebed.cgroups.layout import (
    CONTROLLERS,
    MOUNTINFO,
    XEN_DEFAULT_WEIGHT,
    CgroupError,
    Layout,
    budget_weights,
    detect,
    parse_mountinfo,
    pinned_layout,
    systemd_is_init,
    xen_weight,
)
from gamebed.cgroups.scan import PerCpuSource, leftovers, per_cpu_source, pids_of
from gamebed.cgroups.tree import CgroupTree, CpuUsage, Group, MemoryUsage, Throttling

__all__ = ["CONTROLLERS", "MOUNTINFO", "XEN_DEFAULT_WEIGHT", "CgroupError", "CgroupTree",
           "CpuUsage", "Group", "Layout", "MemoryUsage", "PerCpuSource", "Throttling",
           "budget_weights", "detect", "leftovers", "parse_mountinfo", "per_cpu_source",
           "pids_of", "pinned_layout", "systemd_is_init", "xen_weight"]
