"""Client shards (hostside/shards.py): the players split over client processes, started
together at a gate, their records merged into the point's usual files, and each shard
judged for punctuality on its own (analysis/load.py).  No privileges: the clients and
servers here play on loopback."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.load import LATENESS_LIMIT_US, load_figures
from analysis.synth import SynthPoint, write_point
from fpsmodel.records import CLIENT_INPUTS, CLIENT_UPDATES, CLOCK_SYNC
from gamebed.proc import How, Process, Runner, python_cmd, wait_for
from hostside.shards import Shard, gate, merge, plan


def test_the_guests_are_split_in_even_blocks_and_the_cpus_taken_in_turn():
    assert plan(5, 2, ["0", "2"]) == [Shard(0, 0, 3, "0"), Shard(1, 3, 2, "2")]
    assert [s.cpu for s in plan(6, 3, ["0"])] == ["0", "0", "0"]
    assert plan(2, 8, None) == [Shard(0, 0, 1, None), Shard(1, 1, 1, None)]  # one per guest
    assert plan(3, 1, ["0"]) == [Shard(0, 0, 3, "0")]
    blocks = [list(s.guests) for s in plan(10, 4, None)]
    assert sum(blocks, []) == list(range(10)) and {len(b) for b in blocks} == {2, 3}


def _servers(tmp_path, n):
    procs, ports = [], []
    for g in range(n):
        ready = tmp_path / f"port{g}"
        p = Process(python_cmd("fpsmodel", "server", "--port", 0, "--ready-file", ready,
                               "--out", tmp_path / f"server{g}"), Runner(),
                    log_path=tmp_path / f"server{g}.log").start()
        procs.append(p)
        wait_for(ready.exists, 15, "server")
        ports.append(int(ready.read_text()))
    return procs, ports


def _client(out, servers, extra=()):
    args = python_cmd("fpsmodel", "client", "--players", 2, "--duration", 1.5, "--rate", 40,
                      "--seed", 7, "--out", out, "--end-sync", 0, *extra)
    for s in servers:
        args += ["--server", f"127.0.0.1:{s}"]
    return args


def _inputs(d, start):
    df = pd.read_csv(d / CLIENT_INPUTS)
    return set(zip(df.guest, df.player, df.seq, df.sched_ns - start, strict=True))


def test_shards_started_at_one_gate_send_what_one_client_sends(tmp_path):
    """Two shards, one guest each, started at the gate, send exactly the inputs one
    client of the same seed sends to both guests (the schedule is the seed's, from the
    load's start), and their merged records are the point's usual files."""
    servers, ports = _servers(tmp_path, 2)
    try:
        one = tmp_path / "one"
        p = Process(_client(one, ports), Runner(), log_path=tmp_path / "one.log").start()
        assert p.popen.wait(60) == 0
        shards = plan(2, 2, None)
        dirs = [tmp_path / f"shard{s.index}" for s in shards]
        logs = [tmp_path / f"shard{s.index}.log" for s in shards]
        procs = [Process(_client(d, [ports[s.index]], ("--gate", "--guest-base", s.first)),
                         Runner(), log_path=log, how=How(stdin_pipe=True)).start()
                 for s, d, log in zip(shards, dirs, logs, strict=True)]
        start = gate(procs, logs, 30)
        assert all(q.popen.wait(60) == 0 for q in procs)
        merged = tmp_path / "merged"
        merged.mkdir()
        summary = merge(merged, shards, dirs)
    finally:
        for s in servers:
            s.stop()
    assert [s["start_ns"] for s in summary["shards"]] == [start, start]  # one load
    alone = json.loads((one / "client_summary.json").read_text())
    assert _inputs(merged, start) == _inputs(one, alone["start_ns"])
    assert summary["inputs_sent"] == alone["inputs_sent"] == len(_inputs(merged, start))
    assert set(summary["clock_sync"]) == {"0", "1"}
    assert [s["guests"] for s in summary["shards"]] == [[0, 1], [1, 2]]
    for name in (CLIENT_INPUTS, CLIENT_UPDATES, CLOCK_SYNC):  # one header, every row
        assert (merged / name).read_text().count("guest,") == 1
    assert not any(d.exists() for d in dirs)  # merged, not kept twice


def test_a_shard_that_ends_before_the_gate_raises_with_its_log(tmp_path):
    log = tmp_path / "shard0.log"
    p = Process(["sh", "-c", "echo no servers; exit 3"], Runner(), log_path=log,
                how=How(stdin_pipe=True)).start()
    with pytest.raises(RuntimeError, match="shard 0 ended before its load; see .*shard0.log"):
        gate([p], [log], 10)


def test_a_point_is_load_generator_bound_when_any_shard_is(tmp_path):
    """Guest 1's shard sends 1.5% of its inputs 1 ms late: its own p99 is over the limit,
    the point's p99 over both shards is not: the point is load-generator-bound all the
    same, and each shard's figure is kept."""
    n = 4000
    write_point(tmp_path, SynthPoint("host", 2, np.full(n, 300.0), np.full(n, 50.0),
                                     np.zeros(n, bool)))
    df = pd.read_csv(tmp_path / CLIENT_INPUTS)
    late = df.index[df.guest == 1][: int(0.015 * (df.guest == 1).sum())]
    df.loc[late, "lateness_ns"] = 1_000_000
    df.to_csv(tmp_path / CLIENT_INPUTS, index=False)
    meta = json.loads((tmp_path / "point.json").read_text())
    whole = load_figures(tmp_path, meta, None)
    assert whole["send_lateness_p99_us"] <= LATENESS_LIMIT_US and not whole["load_bound"]
    (tmp_path / "client_summary.json").write_text(json.dumps(
        {"shards": [{"shard": 0, "guests": [0, 1]}, {"shard": 1, "guests": [1, 2]}]}))
    sharded = load_figures(tmp_path, meta, None)
    assert sharded["send_lateness_p99_by_shard_us"] == [0.0, 1000.0]
    assert sharded["send_lateness_p99_us"] == 1000.0 and sharded["load_bound"]
