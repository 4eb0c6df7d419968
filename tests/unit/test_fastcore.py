"""The client's compiled core (fpsmodel/fastclient.c, fpsmodel/fastcore.py) against the
Python loop it stands in for: the same inputs for one seed, each one sealed so that a
server opens it, and the same records.  No privileges: client and server on loopback."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fpsmodel import fastcore
from fpsmodel.client import GameClient, pick_core
from fpsmodel.clientconfig import ClientConfig, Target
from gamebed.proc import Process, Runner, python_cmd, wait_for

needs_core = pytest.mark.skipif(fastcore.library()[0] is None,
                                reason=f"no compiled core here: {fastcore.library()[1]}")


def _play(tmp_path, name: str, core: str, port: int) -> tuple[dict, pd.DataFrame]:
    out = tmp_path / name
    cfg = ClientConfig([Target(0, "127.0.0.1", port)], players=3, duration=1.5,
                       rate_hz=40.0, seed=11, out_dir=out, sync_samples=2,
                       end_sync_samples=0, core=core)
    summary = GameClient(cfg).run()
    return summary, pd.read_csv(out / "client_inputs.csv")


@needs_core
def test_the_core_sends_what_the_python_loop_sends_and_the_server_opens_it(tmp_path):
    ready = tmp_path / "port"
    server = Process(python_cmd("fpsmodel", "server", "--port", 0, "--ready-file", ready,
                                "--out", tmp_path / "server", "--idle-exit", 3), Runner(),
                     log_path=tmp_path / "server.log").start()
    try:
        wait_for(ready.exists, 15, "server")
        port = int(ready.read_text())
        fast, fin = _play(tmp_path, "fast", "compiled", port)
        slow, sin = _play(tmp_path, "slow", "python", port)
        server.popen.wait(30)
    finally:
        server.stop()
    assert fast["core"] == "compiled" and slow["core"] == "python: asked for"

    def sched(df, start):
        return set(zip(df.player, df.seq, df.sched_ns - start, strict=True))
    assert sched(fin, fast["start_ns"]) == sched(sin, slow["start_ns"])  # the seed's
    assert fast["inputs_sent"] == len(fin) > 100
    got = pd.read_csv(tmp_path / "server" / "server_inputs.csv")
    ok = got[got.verdict == "ok"]
    # every input the core sealed was opened: the server's client_send_ns is its stamp
    mine = set(zip(fin.player, fin.seq, fin.send_ns, strict=True))
    assert mine <= set(zip(ok.player, ok.seq, ok.client_send_ns, strict=True))
    assert (fin.lateness_ns == fin.send_ns - fin.sched_ns).all()
    assert (fin.left_ns >= fin.send_ns).all()
    ups = pd.read_csv(tmp_path / "fast" / "client_updates.csv")
    assert fast["updates_received"] == len(ups) > 0.8 * 3 * 20 * 1.5
    assert ups.rtt_ns.notna().sum() > 0 and (ups.arrive_ns <= ups.recv_ns).all()


def test_where_the_core_does_not_build_the_python_loop_plays_and_says_why(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    lib, why = fastcore._build()
    assert lib is None and "did not build" in why and "libssl-dev" in why
    monkeypatch.setattr(fastcore, "_LIB", (None, why))
    cfg = ClientConfig([Target(0, "127.0.0.1", 9)])
    assert pick_core(cfg) == (None, why)
    with pytest.raises(RuntimeError, match="the client's compiled core: the core did not"):
        pick_core(ClientConfig([Target(0, "127.0.0.1", 9)], core="compiled"))
    assert pick_core(ClientConfig([Target(0, "127.0.0.1", 9)], wan=["delay", "5ms"]))[1] \
        == "the compiled core does not emulate a WAN"


def test_the_schedule_is_each_players_gaps_in_time_order():
    due, who = fastcore.schedule([iter([5, 5, 5, 5]), iter([3, 7, 100])], 16)
    assert due.tolist() == [3, 5, 10, 10, 15] and who.tolist() == [1, 0, 0, 1, 0]
    assert json.dumps(due.dtype.str) == '"<i8"'


@needs_core
def test_the_core_refuses_a_record_layout_that_differs_from_pythons():
    """The core reports its structs' sizes and offsets (gb_layout); a Python side whose
    layout differs by one field is refused with where, before any record is read."""
    lib = fastcore.library()[0]
    assert fastcore.layout_problem(lib) is None
    want = fastcore.expected_layout()
    shifted = want.copy()
    sent_at = 1 + len(fastcore.CPlayer._fields_)  # gb_sent's size, then its offsets
    assert want[sent_at] == fastcore.SENT.itemsize
    shifted[sent_at + 4] += 4  # gb_sent.player (sched, send, left, player) moved
    why = fastcore.layout_problem(lib, shifted)
    assert why and "differs" in why and "entry" in why
    assert fastcore.layout_problem(lib, want[:-1]) is not None  # a field missing
