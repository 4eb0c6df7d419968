"""Players on other machines, without the machines (no privileges): the host clock's
exchange on loopback, the records moved onto the host's clock, the player-clock
uncertainty the analysis carries, the spec's checks and the dry run's commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest

from analysis.records import player_uncertainty
from fpsmodel.hostclock import HOST_CLOCK, HOST_CLOCK_FIELDS, HostClock, parse_address
from fpsmodel.records import (
    CLIENT_INPUT_FIELDS,
    CLIENT_INPUTS,
    CLIENT_UPDATE_FIELDS,
    CLIENT_UPDATES,
    CLOCK_SYNC,
    CLOCK_SYNC_FIELDS,
    PLAYER_CLOCK,
    PLAYER_CLOCK_FIELDS,
)
from gamebed.cli import main
from gamebed.proc import Process, Runner, python_cmd, wait_for
from gamebed.resources import remove_remote_dir
from gamebed.spec import ExperimentSpec
from hostside.players import PlayerClock, Ssh, onto_host_clock, write_player_clock
from hostside.shards import Shard

T0 = 1_790_000_000_000_000_000
OFF = -7_000_000_123  # host − player: the player's clock 7 s ahead
DRIFT = 2e-6  # the player's clock loses 2 µs a second against the host's


def _write(path, fields, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        w.writerows(rows)


def _shard(d):
    """A remote shard's records on a player clock OFF off the host's, drifting DRIFT."""
    d.mkdir()
    _write(d / HOST_CLOCK, HOST_CLOCK_FIELDS, [
        (0, T0, 0, 0, 0, OFF + 50, 9_000, 0, 0), (1, T0 + 10, 0, 0, 0, OFF, 4_000, 1, 0),
        (0, T0 + 10 + 10**10, 0, 0, 0, OFF + round(DRIFT * 10**10), 6_000, 1, 1)])
    _write(d / CLIENT_INPUTS, CLIENT_INPUT_FIELDS, [
        (0, 0, 0, T0 + 10, T0 + 15, 5, T0 + 20), (0, 1, 0, T0 + 5 * 10**9, T0 + 5 * 10**9, 0,
                                                    "")])
    _write(d / CLIENT_UPDATES, CLIENT_UPDATE_FIELDS, [
        (0, 0, 1, T0 + 10**9, 555, 0, 1, 2, 3_000, T0 + 10**9 - 7)])
    _write(d / CLOCK_SYNC, CLOCK_SYNC_FIELDS, [
        (0, 0, T0, 999, 1_001, T0 + 2_000, 1_000 - T0, 2_000, 1, 0)])
    (d / "client_summary.json").write_text(json.dumps({
        "start_ns": T0, "end_ns": T0 + 3 * 10**9,
        "clock_sync": {"0": {"offset_ns": 1_000 - T0, "uncertainty_ns": 1_000}}}))


def _at(t):
    return OFF + round(DRIFT * (t - (T0 + 10)))


def test_a_remote_shards_records_go_onto_the_hosts_clock(tmp_path):
    d = tmp_path / "shard0"
    _shard(d)
    clock = onto_host_clock(d)
    # the chosen exchanges: phase 0's second sample (the shorter round trip), phase 1's
    assert clock == PlayerClock(OFF, T0 + 10, DRIFT, 3_000)
    inputs = pd.read_csv(d / CLIENT_INPUTS, dtype="Int64")
    assert inputs.loc[0, ["sched_ns", "send_ns", "left_ns"]].tolist() == [
        T0 + 10 + _at(T0 + 10), T0 + 15 + _at(T0 + 15), T0 + 20 + _at(T0 + 20)]
    assert inputs.loc[1, "send_ns"] == T0 + 5 * 10**9 + _at(T0 + 5 * 10**9)
    assert pd.isna(inputs.loc[1, "left_ns"])  # unknown stays unknown
    assert inputs["lateness_ns"].tolist() == [5, 0]  # a duration: untouched
    up = pd.read_csv(d / CLIENT_UPDATES, dtype="Int64").loc[0]
    assert (up.recv_ns, up.arrive_ns) == (T0 + 10**9 + _at(T0 + 10**9),
                                          T0 + 10**9 - 7 + _at(T0 + 10**9 - 7))
    assert (up.server_send_ns, up.rtt_ns) == (555, 3_000)  # the server's clock; a duration
    sync = pd.read_csv(d / CLOCK_SYNC, dtype="Int64").loc[0]
    o = _at(T0)
    assert (sync.t1, sync.t2, sync.t3, sync.t4) == (T0 + o, 999, 1_001, T0 + 2_000 + o)
    assert sync.offset_ns == 1_000 - T0 - o  # the server's against the host's
    s = json.loads((d / "client_summary.json").read_text())
    assert s["start_ns"] == T0 + _at(T0) and s["end_ns"] == T0 + 3 * 10**9 + _at(T0 + 3 * 10**9)


def test_no_exchange_before_the_load_is_refused(tmp_path):
    _write(tmp_path / HOST_CLOCK, HOST_CLOCK_FIELDS, [(0, T0, 0, 0, 0, 5, 100, 1, 1)])
    with pytest.raises(RuntimeError, match="no exchange with this host's clock before"):
        PlayerClock.read(tmp_path / HOST_CLOCK)


def test_the_point_keeps_each_shards_exchanges_and_the_analysis_their_uncertainty(tmp_path):
    for i in (0, 1):
        _shard(tmp_path / f"s{i}")
    write_player_clock(tmp_path, [(Shard(0, 0, 2, None), "m0", tmp_path / "s0"),
                                  (Shard(1, 2, 1, None), "m1", tmp_path / "s1")])
    pc = pd.read_csv(tmp_path / PLAYER_CLOCK, dtype={"machine": "string"})
    assert tuple(pc.columns) == PLAYER_CLOCK_FIELDS and len(pc) == 6
    assert pc.groupby("machine")["guest_first"].first().to_dict() == {"m0": 0, "m1": 2}
    pc.loc[pc["shard"] == 1, "delay_ns"] *= 2
    unc = player_uncertainty(pc, np.array([0, 1, 2, 3]))
    assert unc.tolist() == [3_000.0, 3_000.0, 6_000.0, 0.0]  # guest 3: played here


def test_the_host_clock_answers_on_loopback_and_the_exchange_is_recorded(tmp_path):
    ready = tmp_path / "port"
    with Process(python_cmd("fpsmodel", "clockd", "--ready-file", ready), Runner(),
                 log_path=tmp_path / "clockd.log"):
        wait_for(ready.exists, 15, "clockd")
        clock = HostClock(("127.0.0.1", int(ready.read_text())), tmp_path / "out")
        off = clock.measure(phase=0, samples=16)
        start = clock.player_start(T0)
        clock.measure(phase=1, samples=8)
        clock.close()
    rows = list(csv.DictReader(open(tmp_path / "out" / HOST_CLOCK)))
    assert len(rows) == 24 and [r["phase"] for r in rows if r["chosen"] == "1"] == ["0", "1"]
    unc = clock.summary()["0"]["uncertainty_ns"]
    assert abs(off) <= unc  # one clock: the offset is zero within its uncertainty
    assert start == T0 - off


def test_the_host_clock_is_the_address_the_ssh_session_came_from(monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "198.19.1.1 40000 198.19.1.2 22")
    assert parse_address("ssh:4000") == ("198.19.1.1", 4000)
    assert parse_address("10.1.2.3:5") == ("10.1.2.3", 5)
    monkeypatch.delenv("SSH_CONNECTION")
    with pytest.raises(ValueError, match="not started over ssh"):
        parse_address("ssh:4000")
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("4000")


def test_players_on_takes_ssh_destinations_only():
    spec = ExperimentSpec.from_dict({"players_on": "m0,root@player-2.lan"})
    assert spec.tuning.players_on == "m0,root@player-2.lan"
    with pytest.raises(ValueError, match="players_on is a list of ssh destinations"):
        ExperimentSpec.from_dict({"players_on": "m0;reboot"})
    assert Ssh("cfg", "py").cmd("m0", "ls", "a b") == [
        "ssh", "-F", "cfg", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "m0", "ls 'a b'"]


def test_the_dry_run_prints_the_gateway_and_each_shard_over_ssh(tmp_path, capsys):
    assert main(["run", "--dry-run", "--backend", "netns", "--guests", "2", "--modes", "host",
                 "--players-on", "m0,m1", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "iptables -t nat -A POSTROUTING -s 198.19.0.0/16" in out
    assert "ip route add 198.18.0.0/16 via 198.19.255.2" in out
    assert "fpsmodel clockd" in out
    for host, guest in (("m0", "198.18.1.1"), ("m1", "198.18.1.2")):
        line = next(x for x in out.splitlines() if x.startswith(f"ssh -o BatchMode=yes "
                                                                 f"-o ConnectTimeout=10 {host} ")
                    and "fpsmodel client" in x)
        assert f"--server {guest}:27960" in line and "--host-clock ssh:" in line


def test_a_listed_remote_directory_is_removed_over_ssh_and_its_parent_once_empty():
    lines: list[str] = []
    entry = {"kind": "remote_dir", "host": "m0", "path": "/tmp/gamebed-players/gbab12-s0",
             "ssh": ["ssh", "-F", "cfg", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]}
    assert remove_remote_dir(Runner(dry_run=True, echo=lines.append), entry)
    assert lines == ["ssh -F cfg -o BatchMode=yes -o ConnectTimeout=10 m0 'sh -c '\"'\"'rm -rf "
                     "/tmp/gamebed-players/gbab12-s0; rmdir /tmp/gamebed-players 2>/dev/null; "
                     "true'\"'\"''"]
    assert not remove_remote_dir(Runner(dry_run=True), {})
