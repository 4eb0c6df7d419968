"""The cgroup layer without privileges (gamebed/cgroups/): layouts detected from stored
/proc/self/mountinfo texts (this machine kind's hybrid, legacy with and without co-mounted
cpu,cpuacct, and a Debian cloud kernel's unified one), each hierarchy's weights, the
commands a dry run prints on v1 and on v2 (with and without systemd), where a group's
processes join, the settle window on a coarse source, and the leak check's walk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gamebed import cgroups, cpustat
from gamebed.cgroups import tree as cgroup_tree
from gamebed.cli import main
from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.resources import guest_cgroup
from tests.support import cgroup_layout


@pytest.mark.parametrize(("name", "kind", "cpu", "v2"), [
    ("hybrid", "hybrid", "v1", "/sys/fs/cgroup/unified"),
    ("legacy", "legacy", "v1", None),
    ("legacy-comounted", "legacy", "v1", None),
    ("unified", "unified", "v2", "/sys/fs/cgroup")])
def test_the_layout_is_read_from_mountinfo(name, kind, cpu, v2):
    lay = cgroup_layout(name)
    assert lay.kind == kind and lay.where("cpu") == cpu
    assert (str(lay.v2) if lay.v2 else None) == v2
    assert lay.missing(("cpu", "cpuacct", "cpuset", "memory")) == []


def test_a_hybrid_hosts_empty_v2_mount_holds_no_controller():
    lay = cgroup_layout("hybrid")
    assert {c: lay.where(c) for c in cgroups.CONTROLLERS} == dict.fromkeys(
        cgroups.CONTROLLERS, "v1")
    assert lay.v1["cpu"] == Path("/sys/fs/cgroup/cpu")


def test_a_host_without_the_controllers_is_told_what_to_mount():
    lay = cgroups.parse_mountinfo(
        "31 23 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n", lambda m: [])
    assert lay.missing(("cpu", "cpuset")) == ["cpu", "cpuset"]
    tree = cgroups.CgroupTree("gbx", Manifest("gbx", Path("/nonexistent"), dry_run=True),
                              Runner(dry_run=True, echo=lambda s: None), lay)
    with pytest.raises(FileNotFoundError, match="mount cgroup2 at /sys/fs/cgroup"):
        tree.guests.ensure(("cpu",))


@pytest.mark.parametrize("per_cpu", [0.05, 0.25, 0.45, 0.5, 0.6, 0.9])
def test_the_budgets_weights_give_the_same_share_on_both_hierarchies(per_cpu):
    for hier, lo, hi in (("v1", 2, 262144), ("v2", 1, 10000)):
        g, h = cgroups.budget_weights(hier, per_cpu)
        assert lo <= g <= hi and lo <= h <= hi
        assert g / (g + h) == pytest.approx(per_cpu, abs=5e-4)
    assert cgroups.budget_weights("v1", 0.45) == (838, 1024)  # what v1 always wrote


def test_xen_weights_keep_their_ratios():
    assert cgroups.xen_weight("v1", 256) == 1024 and cgroups.xen_weight("v1", 512) == 2048
    assert cgroups.xen_weight("v2", 256) == 100 and cgroups.xen_weight("v2", 512) == 200
    assert cgroups.xen_weight("v2", 1) == 1 and cgroups.xen_weight("v2", 65535) == 10000


def _dry(layout: str, args: list[str], tmp_path, capsys) -> str:
    with cgroups.pinned_layout(cgroup_layout(layout)):
        assert main(["run", "--dry-run", "--guests", "2", "--out", str(tmp_path / "d"),
                     *args]) == 0
    return capsys.readouterr().out


def test_a_v2_dry_run_writes_v2_files_in_one_tree(tmp_path, capsys, monkeypatch):
    import vm

    monkeypatch.setattr(vm, "uml_prerequisites", lambda: None)
    monkeypatch.setattr(cgroup_tree, "systemd_is_init", lambda: False)
    out = _dry("unified", ["--backend", "uml", "--guest-cpus", "0.5", "--cpu-cap", "0.2"],
               tmp_path, capsys)
    assert "echo +cpu +cpuset +memory > /sys/fs/cgroup/cgroup.subtree_control" in out
    prefix = out.split("mkdir /sys/fs/cgroup/")[1].split("-guests")[0]
    guests = f"/sys/fs/cgroup/{prefix}-guests"
    assert f"echo 20000 100000 > {guests}/{prefix}-ug0/cpu.max" in out
    assert f"echo 0,1 > {guests}/cpuset.cpus" in out
    assert f"echo +cpu +cpuset +memory > {guests}/cgroup.subtree_control" in out
    # 0.5 of one CPU beside the hogs: equal weights, at v2's top for the finest ratio
    assert f"echo 10000 > {guests}/cpu.weight" in out
    assert f"echo 10000 > /sys/fs/cgroup/{prefix}-hog/cpu.weight" in out
    assert "cpu.shares" not in out and "cfs_quota" not in out and "cpuacct" not in out


def test_under_systemd_a_v2_run_asks_for_a_delegated_scope(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cgroup_tree, "systemd_is_init", lambda: True)
    out = _dry("unified", ["--backend", "netns"], tmp_path, capsys)
    assert "systemd-run --scope --quiet --collect -p Delegate=yes --unit=" in out
    scope = out.split("--unit=")[1].split()[0]
    assert f"mkdir /sys/fs/cgroup/system.slice/{scope}/" in out
    assert "/sys/fs/cgroup/cgroup.subtree_control" not in out  # the root is systemd's


def test_a_v1_dry_run_keeps_its_hierarchies_apart(tmp_path, capsys, monkeypatch):
    import vm

    monkeypatch.setattr(vm, "uml_prerequisites", lambda: None)
    out = _dry("hybrid", ["--backend", "uml", "--guest-cpus", "0.45"], tmp_path, capsys)
    prefix = out.split("mkdir /sys/fs/cgroup/cpu/")[1].split("-guests")[0]
    assert f"echo 838 > /sys/fs/cgroup/cpu/{prefix}-guests/cpu.shares" in out
    assert f"mkdir /sys/fs/cgroup/cpu/{prefix}-guests/{prefix}-ug0" in out
    assert f"mkdir /sys/fs/cgroup/cpuacct/{prefix}-ug0" in out
    assert f"echo 1 > /sys/fs/cgroup/cpuset/{prefix}-guests/cpuset.cpus" in out
    assert "cgroup.subtree_control" not in out and "cpu.weight" not in out


def _tree(layout: str, tmp_path) -> cgroups.CgroupTree:
    return cgroups.CgroupTree("gbx", Manifest("gbx", tmp_path, dry_run=True),
                              Runner(dry_run=True, echo=lambda s: None), cgroup_layout(layout))


def test_a_guest_joins_its_group_and_its_parents_cpuset(tmp_path):
    tree = _tree("legacy-comounted", tmp_path)
    tree.guests.ensure(("cpuset",))
    with guest_cgroup(tree, "gbx-g0") as g:
        # cpu and cpuacct share a hierarchy: one directory; the cpuset is the parent's
        assert sorted(map(str, g.procs_files)) == [
            "/sys/fs/cgroup/cpu,cpuacct/gbx-g0/cgroup.procs",
            "/sys/fs/cgroup/cpuset/gbx-guests/cgroup.procs",
            "/sys/fs/cgroup/memory/gbx-g0/cgroup.procs"]
    tree = _tree("unified", tmp_path)
    tree.guests.ensure(("cpuset",))
    with guest_cgroup(tree, "gbx-g0") as g:  # v2: one group, under the parent
        assert g.procs_files == [Path("/sys/fs/cgroup/gbx-guests/gbx-g0/cgroup.procs")]


def test_a_coarse_source_lengthens_the_settle_window():
    stat = cgroups.PerCpuSource("/proc/stat", Path("/proc/stat"), 0.01)
    fine = cgroups.PerCpuSource("cpuacct.usage_percpu", Path("x"), 1e-9)
    assert cpustat.Settle((1,), source=fine).window == 0.1
    # one 10-ms tick is at most half the 0.03 margin
    assert cpustat.Settle((1,), source=stat).window == 0.67
    assert cgroups.per_cpu_source(cgroup_layout("unified")).name == "/proc/stat"
    assert cgroups.per_cpu_source(cgroup_layout("hybrid")).name == "cpuacct.usage_percpu"


def test_proc_stat_is_read_as_busy_nanoseconds_per_cpu(tmp_path):
    f = tmp_path / "stat"
    f.write_text("cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 50 900 7 1 2 0 0 0\n"
                 "cpu1 1 2 3 4 5 6 7 8 0 0\nintr 1\n")
    hz = 1e9 / os.sysconf("SC_CLK_TCK")
    assert cgroups.PerCpuSource("/proc/stat", f, 0.01).read() == [
        int(153 * hz), int((1 + 2 + 3 + 6 + 7 + 8) * hz)]


def test_the_leak_check_finds_a_runs_groups_at_any_depth(tmp_path):
    v1 = tmp_path / "cpu"
    (v1 / "gbx-guests" / "gbx-ug0").mkdir(parents=True)
    (v1 / "other").mkdir()
    v2 = tmp_path / "v2"
    (v2 / "system.slice" / "gbx-cgroups.scope" / "gbx-guests").mkdir(parents=True)
    lay = cgroups.Layout({"cpu": v1}, v2, ())
    assert cgroups.leftovers("gbx", lay) == [
        "cpu/gbx-guests", "cpu/gbx-guests/gbx-ug0", "v2/system.slice/gbx-cgroups.scope",
        "v2/system.slice/gbx-cgroups.scope/gbx-guests"]
    assert cgroups.leftovers("gby", lay) == []
