"""A player machine with a clock of its own (root; user-mode Linux, OpenSSH): a UML
kernel on this host's files whose wall clock is set seconds off this host's, driving
namespace guests over ssh, against a local run of the same seed.  A wrong offset, or
none, would move every time it sends by seconds."""

import json
import sys
from pathlib import Path

import pytest

from gamebed.cli import main
from tests.support import skip_unless_uml
from tests.support.machines import machines
from tests.support.playercheck import (
    delays_agree,
    early_stamps,
    inputs_differ,
    offsets_ns,
    player_uncertainty_ns,
    points,
    sent,
    summary,
)

CLOCK_OFF_S = 7  # the player machine's wall clock, ahead of this host's
RUN = ["run", "--backend", "netns", "--guests", "2", "--duration", "3", "--seed", "11"]


@pytest.fixture(scope="module")
def own_clock(tmp_path_factory):
    skip_unless_uml()
    tmp = tmp_path_factory.mktemp("ownclock")
    players_dir = Path("/tmp/gamebed-players")
    there = players_dir.exists()
    with machines(tmp, 1, uml_clock_off_s=CLOCK_OFF_S) as (names, cfg):
        assert main([*RUN, "--players-on", names[0], "--ssh-config", str(cfg),
                     "--players-python", sys.executable, "--out", str(tmp / "remote")]) == 0
    assert players_dir.exists() == there  # the machine's mount point, made here, is gone
    assert main([*RUN, "--out", str(tmp / "local")]) == 0
    return tmp / "remote", tmp / "local"


def test_the_machines_clock_was_seconds_off_and_measured_so(own_clock):
    remote, _ = own_clock
    for point in points(remote).values():
        offs = offsets_ns(point)  # host − player, before and after the load
        unc = max(player_uncertainty_ns(point).values())
        assert all(-CLOCK_OFF_S * 1e9 <= o <= -(CLOCK_OFF_S - 1) * 1e9 for o in offs), offs
        assert max(offs) - min(offs) <= 2 * unc  # and it kept its rate (a UML clock does)
        s = json.loads((point / "client_summary.json").read_text())
        assert s["shards"][0]["machine"] == "m0"


def test_host_stamps_exact_and_none_before_its_input_left(own_clock):
    remote, _ = own_clock
    assert summary(remote)["host"]["host_stamp_exact_fraction"] == 1.0
    for point in points(remote).values():
        assert early_stamps(point) == []


def test_the_same_inputs_as_a_local_run_of_the_seed(own_clock):
    remote, local = own_clock
    assert set(points(remote)) == {"guest", "host"}
    assert all(len(sent(p)) > 100 for p in points(remote).values())
    assert inputs_differ(remote, local) == {}


def test_delays_agree_with_the_local_runs(own_clock):
    remote, local = own_clock
    for mode in ("guest", "host"):
        check = delays_agree(remote, local, mode)
        assert check.holds, check
