"""Players on other machines (--players-on): two namespaced player machines, each with
its own sshd, against a local run of the same seed (root; OpenSSH and iptables)."""

import json
import shutil

import pytest

from gamebed.cli import main
from gamebed.leaks import NOTHING, leftovers
from tests.support import skip_unless_clang, skip_unless_netns
from tests.support.machines import machines
from tests.support.playercheck import (
    delays_agree,
    early_stamps,
    inputs_differ,
    offsets_ns,
    points,
    sent,
    summary,
)

RUN = ["run", "--backend", "netns", "--guests", "2", "--duration", "3", "--seed", "7"]


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    """One run with the players on two namespaced machines (a shard on each), and one
    with them here in two shards: the same seed, guests and modes."""
    skip_unless_netns()
    skip_unless_clang()
    tmp = tmp_path_factory.mktemp("players")
    with machines(tmp, 2) as (names, cfg):
        before = _forwarding()
        assert main([*RUN, "--players-on", ",".join(names), "--ssh-config", str(cfg),
                     "--players-python", _python(), "--out", str(tmp / "remote")]) == 0
        for n in names:  # nothing of the run is left on the machines...
            assert _ssh(cfg, n, "ls -A /tmp/gamebed-players 2>/dev/null || true") == ""
        assert _forwarding() == before  # each machine's device as it was (not forwarding)
    assert leftovers("gb") == NOTHING  # ...nor here
    assert main([*RUN, "--client-shards", "2", "--out", str(tmp / "local")]) == 0
    return tmp / "remote", tmp / "local"


def _forwarding() -> dict[str, str]:
    """The forwarding flag of every device in the root namespace."""
    from pathlib import Path

    return {p.parent.name: p.read_text().strip()
            for p in Path("/proc/sys/net/ipv4/conf").glob("*/forwarding")}


def _python() -> str:
    import sys

    return sys.executable


def _ssh(cfg, name: str, line: str) -> str:
    import subprocess

    return subprocess.run(["ssh", "-F", str(cfg), name, line], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_each_machine_played_its_shard_and_the_records_came_back(two_machines):
    remote, _ = two_machines
    for point in points(remote).values():
        s = json.loads((point / "client_summary.json").read_text())
        assert [(sh["machine"], sh["guests"]) for sh in s["shards"]] == [("m0", [0, 1]),
                                                                         ("m1", [1, 2])]
        assert all(set(sh["host_clock"]) == {"0", "1"} for sh in s["shards"])
        assert not list(point.glob("shard*"))  # merged, and each shard's directory gone


def test_host_stamps_are_exact(two_machines):
    remote, _ = two_machines
    assert summary(remote)["host"]["host_stamp_exact_fraction"] == 1.0


def test_the_report_says_where_the_players_ran(two_machines):
    remote, local = two_machines
    assert "the players on other machines (m0,m1, over ssh)" in (remote / "report.md").read_text()
    assert "the client stands for players on other machines" in (local / "report.md").read_text()


def test_the_same_inputs_as_a_local_run_of_the_seed(two_machines):
    remote, local = two_machines
    assert set(points(remote)) == {"guest", "host"}
    assert all(len(sent(p)) > 100 for p in points(remote).values())
    assert inputs_differ(remote, local) == {}


def test_no_host_stamp_before_its_input_left_on_the_hosts_clock(two_machines):
    remote, _ = two_machines
    for point in points(remote).values():
        assert early_stamps(point) == []
        # one clock here: the measured offsets are small (within a millisecond)
        assert all(abs(o) < 1_000_000 for o in offsets_ns(point))


def test_delays_agree_with_the_local_runs(two_machines):
    remote, local = two_machines
    for mode in ("guest", "host"):
        check = delays_agree(remote, local, mode)
        assert check.holds, check


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs OpenSSH's ssh client")
def test_a_machine_ssh_cannot_reach_is_one_line_and_exit_2(tmp_path, capsys):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host nowhere\n  ProxyCommand false\n")  # fails at once, sends nothing
    skip_unless_netns()
    assert main(["run", "--backend", "netns", "--guests", "1", "--players-on", "nowhere",
                 "--ssh-config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gamebed run: error: --players-on nowhere:")
    assert f"check that `ssh -F {cfg} nowhere true` works without a password" in err


def test_gamebed_clean_removes_what_a_killed_run_left_on_a_machine(tmp_path):
    """A run killed with a shard's directory on its machine: the manifest lists it, and
    clean removes it there (and the shared parent, once empty)."""
    from gamebed.manifest import Manifest, new_prefix
    from gamebed.proc import Runner
    from gamebed.resources import clean_manifest
    from hostside.players import RemoteDir, Ssh

    skip_unless_netns()
    with machines(tmp_path, 1) as (names, cfg):
        m = Manifest(new_prefix(), state_dir=tmp_path / "state")
        path = f"/tmp/gamebed-players/{m.prefix}-s0"
        RemoteDir(Ssh(str(cfg), _python()), names[0], path, Runner(), m).__enter__()
        assert _ssh(cfg, names[0], f"ls {path}") == "fpsmodel"  # shipped, then "killed"
        assert clean_manifest(m.path, Runner()) == [f"removed {names[0]}:{path}"]
        assert _ssh(cfg, names[0], "ls -A /tmp/gamebed-players 2>/dev/null || true") == ""
        assert not m.path.exists()
