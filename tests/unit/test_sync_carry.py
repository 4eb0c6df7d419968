"""Carried clock-sync samples: a guest whose clock cannot drift keeps its offset from
point to point, so a later point checks its best earlier sample with a few tries
(fpsmodel/client.py, vm/testbed.py SyncCarry, docs/records.md)."""

import csv
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from fpsmodel.client import GameClient
from fpsmodel.clientconfig import ClientConfig, Target
from fpsmodel.clocksync import read_sync_carry
from fpsmodel.records import CLOCK_SYNC, SYNC_CARRIED
from fpsmodel.timing import SyncSample
from vm.testbed import SyncCarry


@pytest.fixture
def server(tmp_path):
    ready = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "fpsmodel", "server", "--port", "0",
                             "--out", str(tmp_path / "srv"), "--ready-file", str(ready)])
    try:
        deadline = time.monotonic() + 15
        while not (ready.exists() and ready.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield int(ready.read_text().split()[0])
    finally:
        proc.terminate()
        proc.wait(10)


def _sync(tmp_path, port, carry):
    out = tmp_path / "client"
    c = GameClient(ClientConfig([Target(0, "127.0.0.1", port)], players=1, out_dir=out,
                                sync_carry=carry, carried_sync_samples=5))
    c.sync_clocks()
    c.close()
    with open(out / CLOCK_SYNC) as f:
        return list(csv.DictReader(f)), c.sync[0]


def test_carried_sample_is_checked_and_kept(tmp_path, server):
    now = time.time_ns()
    # on loopback the server's clock is the client's: offset 0, a 30 µs round trip
    good = SyncSample(now - 10**9, now - 10**9 + 15_000, now - 10**9 + 15_000, now - 10**9 + 30_000)
    rows, info = _sync(tmp_path, server, {0: good})
    own = [r for r in rows if r["phase"] == "0"]
    carried = [r for r in rows if r["phase"] == str(SYNC_CARRIED)]
    assert len(own) == 5  # the carried guest's tries, not 32
    assert len(carried) == 1 and int(carried[0]["t1"]) == good.t1
    assert info["carried"] is True
    assert sum(int(r["chosen"]) for r in rows) == 1


def test_a_carried_sample_that_disagrees_is_dropped(tmp_path, server):
    now = time.time_ns()
    # 50 ms off with a 30 µs round trip: the guest's clock moved, the sample is stale
    off = 50_000_000
    bad = SyncSample(now, now + off + 15_000, now + off + 15_000, now + 30_000)
    rows, info = _sync(tmp_path, server, {0: bad})
    assert not [r for r in rows if r["phase"] == str(SYNC_CARRIED)]
    assert info["carried"] is False and abs(info["offset_ns"]) < 5_000_000
    assert len(rows) == 32  # refuted: synced afresh, one server at a time, every try


def test_without_carry_a_guest_takes_every_try(tmp_path, server):
    rows, info = _sync(tmp_path, server, {})
    assert len(rows) == 32 and info["carried"] is False


def test_sync_carry_learns_the_best_sample_and_forgets_stopped_guests(tmp_path):
    f = tmp_path / CLOCK_SYNC
    f.write_text("guest,sample,t1,t2,t3,t4,offset_ns,delay_ns,chosen,phase\n"
                 "0,0,1,2,3,400,0,398,0,0\n"
                 "0,1,10,12,13,30,0,19,1,0\n"
                 "0,2,50,51,52,53,0,2,0,1\n"  # after the load: never carried
                 "1,0,5,6,7,208,0,200,1,0\n")
    carry = SyncCarry()
    carry.learn(f)
    guests = [SimpleNamespace(index=0), SimpleNamespace(index=1), SimpleNamespace(index=2)]
    path = carry.write(tmp_path / "carry.csv", guests)
    got = read_sync_carry(path)
    assert got == {0: SyncSample(10, 12, 13, 30), 1: SyncSample(5, 6, 7, 208)}
    carry.forget(guests[:1])
    assert set(read_sync_carry(carry.write(tmp_path / "c2.csv", guests))) == {1}
    carry.forget(guests)
    assert carry.write(tmp_path / "c3.csv", guests) is None
