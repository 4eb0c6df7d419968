"""A loopback session end to end through the CLI, in each dispatch mode."""

import json

import pytest

from gamebed.cli import main


@pytest.mark.parametrize("dispatch", ["epoll", "poll", "select"])
def test_play_through_cli(tmp_path, dispatch, capsys):
    out = tmp_path / dispatch
    rc = main(["play", "--players", "3", "--duration", "4", "--out", str(out),
               "--dispatch", dispatch, "--seed", "3"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["dispatch"] == dispatch
    assert s["input_payload_sizes"] == [296]
    assert s["inputs_sent"] > 100
    assert s["inputs_received"] == s["inputs_sent"]  # loopback: nothing lost
    # rates over the session's wall time: bounds a loaded 2-core machine meets (a session
    # that starts or ends late stretches the time); the exact rates are the benchmarks'
    # (benchmarks/bench_client.py, bench_server.py)
    assert 10 < s["input_rate_per_player"] < 30
    assert 10 <= s["updates_per_second"] <= 21
    assert s["rtt_p50_us"] > 0 and s["rtt_p99_us"] >= s["rtt_p50_us"]
    assert s["clock_uncertainty_ns"] is not None and s["dropped"] == {}
    for f in ("server_inputs.csv", "client_inputs.csv", "client_updates.csv", "clock_sync.csv"):
        assert (out / f).stat().st_size > 50
    # the sync after the load asks every server at once (clock_sync_all) and gets answers
    import csv

    with open(out / "clock_sync.csv") as f:
        phases = [r["phase"] for r in csv.DictReader(f)]
    assert phases.count("0") == 32 and phases.count("1") >= 16


def test_cli_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "play" in out and "typical use" in out


def test_empty_echo_gives_no_round_trip(tmp_path):
    """Before the server took any input of a player, its echo is empty (seq 0, stamps 0):
    no round trip may be computed from it, even if input 0 was sent."""
    import csv
    import time

    from fpsmodel import wire
    from fpsmodel.client import GameClient
    from fpsmodel.clientconfig import ClientConfig, Target

    c = GameClient(ClientConfig([Target(0, "127.0.0.1", 9)], players=1, out_dir=tmp_path))
    p = c.players[0]
    now = time.time_ns()
    p.sent_at[0] = now - 1_000_000
    empty = wire.StateUpdate(1, now, (wire.Echo(0, 0, 0, 0),), ())
    c._on_datagram(p, p.codec.encode_update(0, empty), now, now)
    other = wire.Echo(1, 0, now - 600_000, now - 500_000)  # another player's echo first
    real = wire.StateUpdate(2, now, (other, wire.Echo(0, 0, now - 600_000, now - 500_000)),
                            (wire.EntityState(3, 0, (1.0, 2.0, 3.0), (0.0, 0.0, 0.0), 9.0),))
    c._on_datagram(p, p.codec.encode_update(0, real), now + 100_000, now + 90_000)
    c.close()
    rows = list(csv.DictReader((tmp_path / "client_updates.csv").open()))
    assert c.errors == 0 and len(rows) == 2
    assert rows[0]["rtt_ns"] == ""
    assert int(rows[1]["rtt_ns"]) == (now + 100_000 - (now - 1_000_000)) - 500_000


def test_same_seed_same_inputs_however_late_the_client_wakes(tmp_path, monkeypatch):
    """The set of inputs is the seed's schedule: a client whose clock leaps past the end
    (a stall of the whole process) still sends every input due before the end, late, so
    two runs of one seed send the same inputs."""
    import csv
    import threading
    import time as real_time
    import types

    from fpsmodel import client as client_mod
    from fpsmodel.clientconfig import ClientConfig, parse_target
    from fpsmodel.server import GameServer, ServerConfig

    leap = {"ns": 0}
    fake = types.SimpleNamespace(**{k: getattr(real_time, k) for k in dir(real_time)
                                    if not k.startswith("_")})
    fake.time_ns = lambda: real_time.time_ns() + leap["ns"]
    monkeypatch.setattr(client_mod, "time", fake)
    real_send = client_mod.GameClient._send
    sent = []
    for k, stall_after in enumerate((None, 5)):
        leap["ns"] = 0

        def send(self, player, due, stall_after=stall_after):
            real_send(self, player, due)
            if stall_after is not None and self.inputs_w.rows == stall_after:
                leap["ns"] = 3_000_000_000  # 3 s stall: past the 1 s end
        monkeypatch.setattr(client_mod.GameClient, "_send", send)
        srv = GameServer(ServerConfig(port=0))
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        cfg = ClientConfig(targets=[parse_target(
            f"127.0.0.1:{srv.port}", 0)], players=2, duration=1.0, seed=11,
            out_dir=tmp_path / f"c{k}", sync_samples=2)
        cl = client_mod.GameClient(cfg)
        try:
            cl.run()
        finally:
            cl.close()
            srv.stop()
            t.join(5)
        with open(tmp_path / f"c{k}" / "client_inputs.csv") as f:
            sent.append(sorted((r["player"], int(r["seq"])) for r in csv.DictReader(f)))
    assert len(sent[0]) > 20 and sent[0] == sent[1]


def test_warm_up_sync_asks_every_server_at_once(tmp_path):
    """--sync-all (a warm-up's): each round's tries before the load go to every server
    before any answers, --sync-samples rounds."""
    import csv
    import subprocess
    import sys
    import time

    servers, ports = [], []
    try:
        for i in range(2):
            ready = tmp_path / f"port{i}"
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "fpsmodel", "server", "--port", "0", "--guest", str(i),
                 "--ready-file", str(ready), "--duration", "30"]))
            t_end = time.monotonic() + 20
            while not ready.exists():
                assert time.monotonic() < t_end
                time.sleep(0.05)
            ports.append(int(ready.read_text()))
        out = tmp_path / "client"
        subprocess.run([sys.executable, "-m", "fpsmodel", "client", "--players", "2",
                        "--duration", "1", "--out", str(out), "--end-sync", "0",
                        "--sync-all", "--sync-samples", "5",
                        *[a for p in ports for a in ("--server", f"127.0.0.1:{p}")]],
                       check=True, timeout=60)
    finally:
        for s in servers:
            s.terminate()
            s.wait(10)
    with open(out / "clock_sync.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["phase"] == "0"]
    assert sorted((int(r["guest"]), int(r["sample"])) for r in rows) == [
        (g, k) for g in range(2) for k in range(5)]
    t1 = {(int(r["guest"]), int(r["sample"])): int(r["t1"]) for r in rows}
    t4 = {(int(r["guest"]), int(r["sample"])): int(r["t4"]) for r in rows}
    for k in range(5):  # both servers asked before either answered (one at a time: after)
        assert max(t1[0, k], t1[1, k]) < min(t4[0, k], t4[1, k])
