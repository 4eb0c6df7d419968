"""User-mode Linux guests: a two-guest run with both stamps, the paper's effect under a
CPU cap, and SIGINT / launch --destroy leaving nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.point import analyze_point
from gamebed.cli import main
from gamebed.leaks import NOTHING, leftovers
from tests.support import destroy_launched, launch, skip_unless_uml

pytestmark = pytest.mark.uml
ROOT = Path(__file__).resolve().parents[2]


# measured (Debian's UML 6.1): the vector driver takes a 1514-byte frame plus the 16-byte
# trailer although vec0's MTU is 1500, so even a full-size input could carry a host stamp
FULL_SIZE_WITH_TRAILER_ARRIVES = True


@pytest.fixture(scope="module")
def uml_run(tmp_path_factory):
    """A 2-guest run, with a broken `linux.uml` first on PATH: gamebed never looks
    there, so the run passes only on its own kernel."""
    skip_unless_uml()
    out = tmp_path_factory.mktemp("umlrun") / "res"
    decoy = tmp_path_factory.mktemp("decoy")
    (decoy / "linux.uml").write_text("#!/bin/sh\necho decoy on PATH >&2\nexit 1\n")
    (decoy / "linux.uml").chmod(0o755)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{decoy}:{path}"
    try:
        assert main(["run", "--backend", "uml", "--guests", "2", "--duration", "5",
                     "--out", str(out)]) == 0
    finally:
        os.environ["PATH"] = path
    return out


def test_two_uml_guests_host_stamps_exact_guest_stamps_late(uml_run):
    s = json.loads((uml_run / "summary.json").read_text())
    assert s["backend"] == "uml"
    pts = {(p["mode"], p["guests"]): p for p in s["points"]}
    assert set(pts) == {("guest", 2), ("host", 2)}
    host, guest = pts[("host", 2)], pts[("guest", 2)]
    assert host["inputs_sent"] > 300 and host["inputs_lost"] == 0
    assert host["host_stamp_exact_fraction"] == 1.0
    assert guest["stamp_error_mean_us"] > 0 and guest["host_stamp_exact_fraction"] == 0.0
    # both modes ran on the same booted guests: one build per count
    assert list(s["build_s"]) == ["2"]
    # paired stamps: the decoder logged the guest kernel's own stamp of every input
    assert host["paired_coverage"] == 1.0 and host["paired_stamp_error_mean_us"] > 0
    cpu = json.loads((uml_run / "points" / "host-g002" / "cpu.json").read_text())
    assert set(cpu["guests"]) == {"0", "1"}
    assert all(g["cpu_s"] > 0 for g in cpu["guests"].values())
    env = json.loads((uml_run / "points" / "host-g002" / "point.json").read_text())
    env = env["environment"]
    assert env["backend"] == "uml" and env["shared_clock"] is False
    assert env["client_cpus"] == env["shim_cpus"] != env["guest_cpus"]
    # gamebed's own kernel ran the guests, and the point says which
    from vm import uml_kernel

    own = uml_kernel.cached(uml_kernel.Recipe())
    assert env["guest_kernel_digest"] == own.digest == s["guest_kernel"]["guest_kernel_digest"]
    assert env["guest_kernel"] == f"Linux {own.info['release']} (user-mode)"
    assert own.info["package"] in env["guest_kernel_source"]
    assert env["guest_kernel_patch"].startswith(own.info["patch"])
    assert env["uml_mode"] == s["guest_kernel"]["uml_mode"] == "seccomp"  # auto, >= 6.16
    assert leftovers(s["prefix"]) == NOTHING


def test_capped_busy_guest_stamps_late_host_stamps_exact(tmp_path):
    """The paper's effect, by a real guest kernel: one guest capped at 10% of a CPU with
    game logic that wants more keeps its inputs waiting for its CPU."""
    skip_unless_uml()
    out = tmp_path / "capped"
    assert main(["run", "--backend", "uml", "--guests", "1", "--duration", "10",
                 "--cpu-cap", "0.1", "--server-work-us", "2000", "--out", str(out)]) == 0
    guest, _ = analyze_point(out / "points" / "guest-g001")
    host, _ = analyze_point(out / "points" / "host-g001")
    assert guest["stamp_error_p50_us"] > 10_000, guest["stamp_error_p50_us"]
    assert host["host_stamp_exact_fraction"] == 1.0
    assert host["guest_throttled_s"] > 1.0


def _wait_for_uml(state: Path, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in state.glob("*.json"):
            entries = json.loads(f.read_text())["entries"]
            if any(e["kind"] == "process" and e["name"].startswith("uml") for e in entries):
                return f.stem
        time.sleep(0.1)
    return None


def test_sigint_during_uml_run_leaves_nothing(tmp_path):
    skip_unless_uml()
    state = tmp_path / "state"
    env = dict(os.environ, GAMEBED_STATE_DIR=str(state))
    p = subprocess.Popen([sys.executable, "-m", "gamebed", "run", "--backend", "uml",
                          "--guests", "3", "--duration", "5", "--out", str(tmp_path / "o")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT)
    prefix = _wait_for_uml(state, 60)
    assert prefix, "the run never started a UML guest"
    time.sleep(1.0)  # mid-boot
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert leftovers(prefix) == NOTHING
    assert not list(state.glob("*.json"))


def test_uml_launch_then_destroy_leaves_nothing(tmp_path):
    skip_unless_uml()
    info, env = launch(tmp_path, "uml", 2)
    try:
        assert info["backend"] == "uml"
        assert all(g["answer"]["answered"] > 0 for g in info["guests"])
        time.sleep(2)  # the launching process is gone: the guests must keep serving
        serving = len(leftovers(info["prefix"])["processes"])
    finally:  # a failure above must not leave the launch behind
        destroy_launched(env, info["prefix"])
    assert serving >= 2


def test_trailer_on_small_and_full_size_frames_into_a_uml_guest(tmp_path):
    """vec0's MTU is 1500: what a trailer does to frames of 1000 and 1500 IP bytes (ICMP
    echo requests sent on the guest's port, each with a valid trailer behind it)."""
    skip_unless_uml()
    from hostside import trailer
    from tests.net.frames import Ends, icmp_echo
    from tests.support.netns import Pair

    info, env = launch(tmp_path, "uml", 1)
    try:
        g, host_ns = info["guests"][0], info["prefix"] + "-host"
        helper = Pair("unused")
        frames = {}
        for ident, size in ((1000, 1000), (1500, 1500)):
            ends = Ends("02:67:62:00:00:01", g["mac"], "198.18.0.1", g["ip"])
            plain = icmp_echo(ends, ident, size)
            frames[size] = bytes(trailer.append(plain, 1_700_000_000_000_000_000))
        sniff = helper.start(host_ns, "sniff", g["port"], 3.0)
        helper.run(host_ns, "send", g["port"], *(f.hex() for f in frames.values()))
        replies = {int.from_bytes(f[38:40], "big") for f in
                   (bytes.fromhex(x["frame"]) for x in helper.lines(sniff))
                   if f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 0}
    finally:
        destroy_launched(env)
    print("echo replies for IP sizes:", sorted(replies))
    assert 1000 in replies  # a game-sized frame with its trailer gets through
    assert (1500 in replies) is FULL_SIZE_WITH_TRAILER_ARRIVES


def test_killed_uml_guest_keeps_its_records_and_boots_again_for_the_next_mode(tmp_path):
    """`guest:1@2` kills guest 1's UML kernel (SIGKILL) 2 s into each mode's load: the
    records its server flushed before are kept, the other guest keeps availability 1.0,
    and the guest boots again so the second mode runs on it too."""
    skip_unless_uml()
    out = tmp_path / "res"
    assert main(["run", "--backend", "uml", "--guests", "2", "--duration", "5",
                 "--fault", "guest:1@2", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert {p["mode"] for p in s["points"]} == {"guest", "host"}
    for p in s["points"]:
        per = p["availability_by_guest"]
        assert per["0"] == 1.0, p
        assert 0.2 < per["1"] < 0.5, p  # up for the first 2 s of 5
        assert p["faults"][0]["answered_again_s"] is None
        assert p["inputs_lost_fault"] == p["inputs_lost"] > 0
    host = next(p for p in s["points"] if p["mode"] == "host")
    assert host["host_stamp_exact_fraction"] == 1.0
    assert leftovers(s["prefix"]) == NOTHING


def test_uml_testbed_grows_and_shrinks_keeping_its_running_guests(tmp_path):
    """1 → 3 → 2 UML guests on one testbed: guest 0 boots once and serves every point,
    each point plays exactly its count's guests, and nothing is left at the end."""
    skip_unless_uml()
    from tests.support.netns import resize_through

    points = resize_through(tmp_path, "uml", (1, 3, 2))
    pids = [[g["pid"] for g in p["info"]] for p in points]
    assert pids[0][0] == pids[1][0] == pids[2][0]  # guest 0 was never booted again
    assert pids[2] == pids[1][:2]  # shrinking stopped guest 2 only


def _left_out(pdir, guest: int) -> int:
    """A guest's inputs sent in the windows a point left out (analysis/stalls.py)."""
    import pandas as pd

    from analysis.stalls import stall_figures

    env = json.loads((pdir / "point.json").read_text())["environment"]
    c = pd.read_csv(pdir / "client_inputs.csv")
    sent = c.loc[c["guest"] == guest, "send_ns"].to_numpy("int64")
    return int((~stall_figures(pdir, env, 200.0).keep(sent)).sum())


def test_a_mixed_uml_host_plays_each_guests_game_and_judges_each(tmp_path):
    """--mix tsai2009:3,tick128:1 on 4 UML guests: guest 1 plays the 128 Hz game (its
    server ticks at 128 Hz, its 10 players send one input per tick), the other three
    the paper's; each profile's figures are its own guests', host stamps exact in both,
    and capacity.csv judges each profile under its own SLA and the mix."""
    import csv

    skip_unless_uml()
    out = tmp_path / "mix"
    assert main(["run", "--backend", "uml", "--guests", "4", "--duration", "5", "--mix",
                 "tsai2009:3,tick128:1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for p in summary["points"]:
        tick, tsai = p["profiles"]["tick128"], p["profiles"]["tsai2009"]
        assert tick["guest_indices"] == [1] and tsai["guest_indices"] == [0, 2, 3]
        # one input per tick, exactly: each counted, or sent in a stall the machine
        # caused and left out (analysis/stalls.py)
        assert tick["inputs_sent"] + _left_out(out / p["dir"], 1) == 10 * 128 * 5
        assert tick["inputs_lost"] == 0 and tsai["inputs_lost"] == 0
        if p["mode"] == "host":
            assert tick["host_stamp_exact_fraction"] == 1.0
            assert tsai["host_stamp_exact_fraction"] == 1.0
    srv = json.loads((out / "points" / "host-g004" / "guest1" / "server_summary.json")
                     .read_text())
    assert srv["players"] == 10 and abs(srv["tick_hz_achieved"] - 128) < 128 * 0.02
    with open(out / "capacity.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["profile"] for r in rows} == {"mix", "tsai2009", "tick128"}
    assert {r["sla_delay_ms"] for r in rows if r["profile"] == "tick128"} == {"0.1562"}


def test_a_uml_agent_that_refuses_a_request_raises_on_the_host_at_once(tmp_path):
    """A point is running on a UML guest when the host asks it to start one again
    (begin() twice): its agent refuses, and the host raises on that reply with the
    agent's words, not after the servers' ready timeout (30 s + 3 s a guest) nor, as
    before the reply, on a stale ready file.  The testbed then goes, leaving nothing."""
    skip_unless_uml()
    from gamebed.spec import ExperimentSpec
    from tests.support.netns import test_run
    from vm.guestlink import GuestError

    spec = ExperimentSpec.of(backend="uml", guest_counts=(1,), modes=("host",), duration=2)
    run = test_run(spec, tmp_path)
    with run.testbed(1, tmp_path / "work") as bed, bed.mode("host", tmp_path / "p"):
        t0 = time.monotonic()
        with pytest.raises(GuestError, match=r"UML guest 0: its agent refused `run`: "
                                             r"a point is running"):
            bed.backend.begin(bed.point)
        assert time.monotonic() - t0 < 30.0
    assert leftovers(run.manifest.prefix) == NOTHING
