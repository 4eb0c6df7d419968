"""Stalls in real runs (root, namespaces): a client stopped for 100 ms mid-point, a
testbed under a CPU quota, and gamebed's own --stalls, each recorded with its cause
and handled by the policy (analysis/stalls.py); nothing left behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gamebed.leaks import NOTHING, leftovers
from tests.support import skip_unless_clang, skip_unless_netns

V1_CPU = Path("/sys/fs/cgroup/cpu")


def _run(out: Path, *extra: str, cgroup: Path | None = None) -> subprocess.Popen:
    """`gamebed run` on 2 namespace guests, 8 s a point, as a child (in `cgroup`)."""
    cmd = [sys.executable, "-m", "gamebed", "run", "--backend", "netns", "--guests", "2",
           "--duration", "8", "--no-report", "--out", str(out), *extra]
    if cgroup is not None:
        cmd = ["sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh", *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _points(out: Path) -> tuple[list[dict], list[dict]]:
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"]
    return s["points"], s.get("retried", [])


def _client_of(out: Path, seconds: float = 60.0) -> int:
    """The client's pid once its load is 5 s in (its first progress line)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for log in out.glob("points/*/client.log"):
            if "inputs sent" in log.read_text():
                pids = subprocess.run(["pgrep", "-f", f"fpsmodel client.*{log.parent}"],
                                      capture_output=True, text=True).stdout.split()
                if pids:
                    return int(pids[0])
        time.sleep(0.05)
    raise AssertionError("the client's load never began")


def test_a_client_stopped_for_100_ms_is_an_unknown_stall_measured_again(tmp_path):
    skip_unless_netns()
    skip_unless_clang()
    out = tmp_path / "res"
    proc = _run(out, "--modes", "guest", "--retries", "1")
    pid = _client_of(out)
    t_stop = time.time_ns()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.1)
    t_cont = time.time_ns()
    os.kill(pid, signal.SIGCONT)
    log, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, log
    points, retried = _points(out)
    # the stopped try is kept, named, and was measured again
    assert len(retried) == 1 and len(points) == 1, log
    first = retried[0]
    assert first["retry"] and first["stalls_unknown"] >= 1
    # the stall runs from the first input due after the stop (the client's records see
    # no earlier; 1 ms for the signal to take hold) to the resume: up to a gap between
    # two inputs (13.8 ms once) short of the 100 ms
    with open(out / first["dir"] / "client_inputs.csv") as f:
        due = min(int(r["sched_ns"]) for r in csv.DictReader(f)
                  if int(r["sched_ns"]) >= t_stop + 1_000_000)
    assert first["stall_ms_max"] >= (t_cont - due) / 1e6 - 1.0, (first["stall_ms_max"], due)
    # where the stall made the point late, it says so
    assert first.get("load_bound_cause") in (None, "unknown stall")  # kept only where set
    assert (out / first["dir"] / "client_inputs.csv").exists()
    assert first["dir"].endswith("-try0") and points[0]["tries"] == 2
    assert leftovers("gb") == NOTHING


def test_a_testbed_under_a_cpu_quota_is_throttled_and_left_out(tmp_path):
    skip_unless_netns()
    skip_unless_clang()
    if not (V1_CPU / "cpu.cfs_quota_us").exists():
        pytest.skip("needs the v1 cpu hierarchy at /sys/fs/cgroup/cpu (a quota around "
                    "the testbed)")
    group = V1_CPU / f"gbtest-quota-{os.getpid()}"
    group.mkdir()
    try:
        # 10 ms of CPU every 100 ms around gamebed, its client (SCHED_FIFO is refused in
        # a group with no RT runtime, so it runs under the quota) and its shim
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("10000")
        out = tmp_path / "res"
        proc = _run(out, "--modes", "host", "--retries", "0", cgroup=group)
        log, _ = proc.communicate(timeout=240)
    finally:
        for p in (group / "cgroup.procs").read_text().split():
            (V1_CPU / "cgroup.procs").write_text(p)
        group.rmdir()
    assert proc.returncode == 0, log
    (p,), _ = _points(out)
    assert p["throttled_s"] > 0.1, log
    assert "throttled" in p["stall_causes"] and p["excluded_share"] > 0
    fig = json.loads((out / p["dir"] / "figures.json").read_text())
    assert fig["throttled_s"] == pytest.approx(p["throttled_s"], abs=1e-3)
    # left out, and where more than the limit was, named as stolen (no retry asked)
    if p["excluded_share"] > 0.2:
        assert p["load_bound"] and p["load_bound_cause"] == "stolen"
    assert leftovers("gb") == NOTHING


def test_gamebeds_own_stalls_freeze_the_testbed_and_are_left_out(tmp_path):
    skip_unless_netns()
    skip_unless_clang()
    if not Path("/sys/fs/cgroup/freezer/freezer.state").exists() and \
            not Path("/sys/fs/cgroup/freezer").is_dir():
        pytest.skip("needs the v1 freezer hierarchy (--stalls)")
    out = tmp_path / "res"
    proc = _run(out, "--modes", "host", "--stalls", "100ms/2s@2")
    log, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, log
    (p,), _ = _points(out)
    injected = (out / p["dir"] / "stalls_injected.csv").read_text().splitlines()
    assert len(injected) - 1 == p["stalls_injected"] >= 3
    assert "injected" in p["stall_causes"] and p["stall_ms_max"] >= 90
    # each freeze and its guard (as long as the stall) are left out: about 200 ms of 2 s
    assert 0.05 < p["excluded_share"] < 0.2
    assert not p["retry"]
    assert leftovers("gb") == NOTHING
