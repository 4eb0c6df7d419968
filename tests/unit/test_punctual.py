"""The load generator's punctuality: the host side's CPUs poll when idle (a PM QoS
value the run sets, lists in its manifest and writes back, also after a crash through
`gamebed clean`), and the client runs SCHED_FIFO where it may (gamebed/resources.py
IdlePoll, fpsmodel/client.py realtime)."""

import subprocess
import sys

from gamebed import resources
from gamebed.manifest import Manifest
from gamebed.proc import Runner
from gamebed.resources import IdlePoll, clean_manifest


def fake_cpus(tmp_path, monkeypatch, values):
    for cpu, value in values.items():
        d = tmp_path / f"cpu{cpu}" / "power"
        d.mkdir(parents=True)
        (d / "pm_qos_resume_latency_us").write_text(value + "\n")
    monkeypatch.setattr(resources, "CPU_SYSFS", tmp_path)


def test_idle_poll_sets_lists_and_restores(tmp_path, monkeypatch):
    fake_cpus(tmp_path / "sys", monkeypatch, {0: "0", 1: "0"})
    m = Manifest("gbtest01", state_dir=tmp_path / "state")
    with IdlePoll((0,), m, Runner()) as poll:
        assert IdlePoll.path(0).read_text() == "n/a"
        assert IdlePoll.path(1).read_text().strip() == "0"  # the guests' CPU: untouched
        assert [e["kind"] for e in m.entries] == ["sysfs"] and m.entries[0]["value"] == "0"
        assert poll.result.startswith("poll")
    assert IdlePoll.path(0).read_text() == "0" and m.entries == []


def test_a_crashed_runs_idle_poll_is_undone_by_clean(tmp_path, monkeypatch):
    fake_cpus(tmp_path / "sys", monkeypatch, {0: "25"})
    m = Manifest("gbtest02", state_dir=tmp_path / "state")
    IdlePoll((0,), m, Runner()).__enter__()  # never left: the run died
    assert IdlePoll.path(0).read_text() == "n/a"
    done = clean_manifest(m.path, Runner())
    assert IdlePoll.path(0).read_text() == "25" and any("restored" in d for d in done)


def test_idle_poll_falls_back_where_the_cpu_has_no_such_file(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "CPU_SYSFS", tmp_path / "nothing")
    m = Manifest("gbtest03", state_dir=tmp_path / "state")
    with IdlePoll((0,), m, Runner()) as poll:
        assert poll.result.startswith("idle CPUs halt") and "No such file" in poll.result
    assert m.entries == []


def test_realtime_policy_where_allowed_and_said_where_not():
    """In a child process: the test's own process must keep its scheduler."""
    code = ("import os; from fpsmodel.punctual import realtime; r = realtime(5); "
            "print(r, os.sched_getscheduler(0) == os.SCHED_FIFO)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    if out[0] == "fifo":
        assert out == ["fifo", "5", "True"]
    else:  # not root, or no RT budget: the client says so and runs as it is
        assert out[0] == "other" and "refused" in " ".join(out) and out[-1] == "False"
    code = "from fpsmodel.punctual import realtime; print(realtime(0))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "other"


def test_a_client_run_in_process_gives_its_caller_back_its_policy(tmp_path):
    """`gamebed play` runs the client in its own process: after it, that process (and
    what it starts next) is back on the default scheduler.  A test suite once turned
    SCHED_FIFO this way, and every child it started later failed to join its cgroup."""
    code = ("import os; from gamebed.cli import main; "
            f"rc = main(['play', '--duration', '1', '--out', {str(tmp_path / 'p')!r}]); "
            "print(rc, os.sched_getscheduler(0) == os.SCHED_OTHER)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1].split()
    assert out == ["0", "True"]
    import json
    sched = json.loads((tmp_path / "p" / "client_summary.json").read_text())["sched"]
    assert sched.startswith(("fifo", "other"))


def test_the_spin_is_held_to_its_share_of_the_core(tmp_path):
    """The spin before each send is the spec's, but costs at most its share of the core
    at the offered rate: 150 µs at the paper's 80 inputs/s, 33 µs at a br30 server's
    3000; and the client says which it used."""
    from fpsmodel.client import GameClient
    from fpsmodel.clientconfig import ClientConfig, Game, Target
    from fpsmodel.punctual import spin_per_send

    assert spin_per_send(150.0, 0.1, 80.0) == 150.0
    assert abs(spin_per_send(150.0, 0.1, 3000.0) - 100 / 3) < 1e-9
    assert spin_per_send(150.0, 1.0, 3000.0) == 150.0
    assert spin_per_send(150.0, 0.1, 0.0) == 150.0
    br30 = Game(100, 30.0, "periodic", 0.2, 296)
    targets = [Target(0, "127.0.0.1", 9), Target(1, "127.0.0.1", 9, game=br30)]
    c = GameClient(ClientConfig(targets, players=4, rate_hz=20.0, spin_us=150.0,
                                spin_share=0.1, out_dir=tmp_path))
    try:
        assert c.offered_rate() == 4 * 20.0 + 100 * 30.0
        assert abs(c.spin_us - 0.1e6 / 3080.0) < 1e-9
    finally:
        c.close()
