"""`gamebed run` through the CLI, and teardown after SIGINT / clean after SIGKILL."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gamebed.cli import main
from gamebed.leaks import NOTHING, leftovers
from tests.support import skip_unless_clang, skip_unless_netns


@pytest.fixture(scope="module")
def two_guest_run(tmp_path_factory):
    """One real `gamebed run` (both modes, 2 guests), shared by the tests that read it."""
    skip_unless_netns()
    skip_unless_clang()
    out = tmp_path_factory.mktemp("run") / "res"
    assert main(["run", "--backend", "netns", "--guests", "2", "--duration", "3", "--out",
                 str(out)]) == 0
    return out


def test_two_guest_run_through_cli(two_guest_run):
    out = two_guest_run
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["environment"]["kernel"]
    pts = {p["mode"]: p for p in s["points"]}
    assert set(pts) == {"guest", "host"}
    for p in pts.values():
        assert p["guests"] == 2
        assert p["inputs_sent"] == p["inputs_delivered"] + p["inputs_lost"] > 100
    assert pts["host"]["host_stamp_exact_fraction"] == 1.0
    assert pts["guest"]["stamp_error_mean_us"] > 0
    assert pts["guest"]["host_stamp_exact_fraction"] < 0.01
    # the report came at the end, regenerated from raw records alone
    page = (out / "report.html").read_text()
    # 6 plots, and the stamp error against the guests' run-queue wait (analysis/waits.py)
    assert page.count("data:image/png;base64,") == 7 and 'id="capacity"' in page
    assert 'id="waits"' in page
    assert (out / "capacity.csv").read_text().startswith("mode,capacity")
    assert main(["report", str(out), "--sla-delay-ms", "0.001"]) == 0
    report = (out / "report.md").read_text()
    if pts["host"]["load_bound"]:
        # the load generator was the bottleneck (a 3 s point on 2 cores: a stall of the
        # client's core puts its p99 send lateness over 200 µs at times): the count is
        # never judged, and the report says why instead of a capacity
        assert "host stamps: count(s) 2 were load-generator-bound" in report
        assert "| host stamps | unknown:" in report
    else:
        # 2 guests fail: capacity 0, and 1 guest was not measured, so the interval is 0–1
        assert "| host stamps | 0–1 |" in report


def test_the_guests_replies_take_the_kernels_path(two_guest_run):
    """With the BPF stamper, the tc reply program on each guest's port sends the state
    updates to the uplink in the kernel: the client gets them all, and no IPv4 frame to
    the client's MAC passes through the shim.  What the shim does forward (ARP, and the
    guests' own IPv6 router solicitations and MLD reports) is counted by ethertype and
    destination, and those counts add up to its forwarded_reply."""
    for point in sorted((two_guest_run / "points").iterdir()):
        client = json.loads((point / "client_summary.json").read_text())
        shim = json.loads((point / "shim_summary.json").read_text())
        # 2 servers x 4 players x 20 Hz x 3 s, less the first tick's and the last's
        assert client["updates_received"] > 0.9 * 2 * 4 * 20 * 3, point.name
        assert shim["replies_in_kernel"], point.name  # the reply program was on
        kinds = shim["forwarded_reply_kinds"]
        assert kinds.get("ipv4 to client", 0) == 0, (point.name, kinds)
        assert sum(kinds.values()) == shim["counters"].get("forwarded_reply", 0), kinds


def test_report_of_a_real_run_in_headless_chromium(chromium_ok, two_guest_run, tmp_path):
    from tests.browser import check_in_browser

    assert main(["report", str(two_guest_run)]) == 0
    facts = check_in_browser(two_guest_run / "report.html", tmp_path / "run.png", waits=True)
    assert all(r.split("\t")[1].strip() for r in facts["capacity_rows"])


def start_run(tmp_path, out):
    env = dict(os.environ, GAMEBED_STATE_DIR=str(tmp_path / "state"))
    return subprocess.Popen(
        [sys.executable, "-m", "gamebed", "run", "--backend", "netns", "--guests", "2",
         "--modes", "host",
         "--duration", "60", "--cpu-cap", "0.5", "--out", str(out), "--no-report"],
        env=env, stderr=subprocess.PIPE, text=True)


def wait_playing(out, proc, timeout=60) -> str:
    """Wait until the run plays; its prefix (from its manifest)."""
    deadline = time.monotonic() + timeout
    point = out / "points" / "host-g002"
    while time.monotonic() < deadline:
        if (point / "client_inputs.csv").exists():
            state = next((out.parent / "state").glob("*.json"))
            return json.loads(state.read_text())["prefix"]
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    raise AssertionError("the run never started playing")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_tears_everything_down(netns_ok, tmp_path, sig):
    out = tmp_path / "res"
    proc = start_run(tmp_path, out)
    prefix = wait_playing(out, proc)
    built = leftovers(prefix, str(out))
    assert built["netns"] and built["processes"]  # the run really built things
    proc.send_signal(sig)
    proc.wait(60)
    assert proc.returncode == 130
    assert leftovers(prefix, str(out)) == NOTHING
    assert list((tmp_path / "state").glob("*.json")) == []


def test_clean_removes_what_a_killed_run_left(netns_ok, tmp_path):
    out = tmp_path / "res"
    proc = start_run(tmp_path, out)
    prefix = wait_playing(out, proc)
    proc.kill()  # no chance to tear down
    proc.wait(10)
    left = leftovers(prefix, str(out))
    assert left["netns"] and left["cgroups"] and left["processes"]
    manifests = list((tmp_path / "state").glob("*.json"))
    assert len(manifests) == 1
    env = dict(os.environ, GAMEBED_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run([sys.executable, "-m", "gamebed", "clean"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "removed netns" in r.stdout and "killed process" in r.stdout
    time.sleep(0.3)
    assert leftovers(prefix, str(out)) == NOTHING
    assert not manifests[0].exists()


def test_faulted_guest_loses_availability_the_others_keep_it(netns_ok, tmp_path):
    """Guest 1's server is killed 1.5 s in and back 1 s later; guest 2's is killed 2 s in
    for good; guest 0 is left alone.  Nothing is leaked, and the report says so."""
    skip_unless_clang()
    out = tmp_path / "res"
    assert main(["run", "--backend", "netns", "--guests", "3", "--modes", "host",
                 "--duration", "4", "--fault", "server:1@1.5+1", "--fault", "server:2@2",
                 "--out", str(out)]) == 0
    prefix = json.loads((out / "summary.json").read_text())["prefix"]
    assert leftovers(prefix, str(out)) == NOTHING
    p = json.loads((out / "summary.json").read_text())["points"][0]
    per = p["availability_by_guest"]
    assert per["0"] == 1.0
    assert 0.5 < per["1"] < 0.9  # down about 1.1 s of 4
    assert 0.3 < per["2"] < 0.65  # down the last 2 s (and the records of the last tick)
    assert p["availability"] < 1.0 and p["availability_others_min"] == 1.0
    f = {x["guest"]: x for x in p["faults"]}
    assert 1.0 <= f[1]["answered_again_s"] < 2.0 and f[2]["answered_again_s"] is None
    assert p["inputs_lost_fault"] == f[1]["lost_fault"] + f[2]["lost_fault"] == p["inputs_lost"]
    assert p["loss_ratio"] == 0.0  # the SLA's loss is load's
    assert p["host_stamp_exact_fraction"] == 1.0  # the restarted server got host stamps too
    assert (out / "points" / "host-g003" / "guest1" / "restart" / "server_inputs.csv").exists()
    md = (out / "report.md").read_text()
    assert "## Faults and availability" in md and "server:2@2" in md


def test_wan_splits_each_path_at_the_host_stamp(netns_ok, tmp_path):
    """20 ms ± 5 ms and 2% loss each way: the network's share is the WAN's, the host's
    share and loss stay the host's, reordering is counted apart, clock sync bypasses
    the WAN, capacity (the host's share) does not shrink, and the players' ticks are
    read before the WAN (the updates it lost still count as the host delivered them)."""
    skip_unless_clang()
    out = tmp_path / "res"
    assert main(["run", "--backend", "netns", "--guests", "2", "--duration", "5",
                 "--wan", "delay 20ms 5ms loss 2%", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    for p in s["points"]:
        assert 17_000 < p["net_delay_mean_us"] < 25_000, p
        assert p["inputs_sent"] == p["inputs_host_logged"] + p["inputs_lost_network"]
        assert 0 < p["inputs_lost_network"] < 0.05 * p["inputs_sent"]
        assert p["inputs_reordered"] > 0 and p["host_loss_ratio"] == 0.0
        assert p["stamp_error_mean_us"] < 2000  # the host's share: no WAN in it
        sync = [r for r in csv.DictReader((out / p["dir"] / "clock_sync.csv").open())
                if r["chosen"] == "1"]
        assert sync and all(int(r["delay_ns"]) < 5_000_000 for r in sync)  # not 40 ms
    host = next(p for p in s["points"] if p["mode"] == "host")
    assert host["host_stamp_exact_fraction"] == 1.0
    md = (out / "report.md").read_text()
    assert "## Network and host (--wan delay 20ms 5ms loss 2%)" in md
    assert "on the host's share of the path" in md
    cap = {r["mode"]: r for r in csv.DictReader((out / "capacity.csv").open())}
    # delay and loss, the host's share: the WAN takes nothing off (a 5-s point's 100
    # ticks a player are too few to tell 99% of them, so the players' SLA says unsure);
    # a point whose client was late (a stall of its core on 2 CPUs: p99 send lateness
    # over 200 µs) is load-generator-bound, and its count is left unjudged instead
    for p in s["points"]:
        if p["load_bound"]:
            assert cap[p["mode"]]["invalid_counts"] == "2"
            assert cap[p["mode"]]["paper_capacity"] == "0"  # nothing judged passed
        else:
            assert cap[p["mode"]]["paper_capacity"] == "2"
    for p in s["points"]:
        client = json.loads((out / p["dir"] / "client_summary.json").read_text())
        assert client["wan"]["updates_dropped"] > 0  # the WAN lost updates on the way...
        rows = list(csv.DictReader((out / p["dir"] / "client_updates.csv").open()))
        lost = [r for r in rows if not r["recv_ns"]]
        assert len(lost) == client["wan"]["updates_dropped"] and all(r["arrive_ns"]
                                                                      for r in lost)
        assert p["update_loss_worst"] == 0.0  # ...after the host had delivered every one


def test_resume_completes_an_interrupted_sweep_as_if_never_interrupted(netns_ok, tmp_path):
    """SIGINT once the sweep has listed its first points; `--resume` measures only the
    rest, keeps what was measured, and ends with the points and spec of a whole run."""
    skip_unless_clang()
    out = tmp_path / "res"
    args = ["run", "--backend", "netns", "--guests", "1,2", "--duration", "2", "--out",
            str(out)]
    env = dict(os.environ, GAMEBED_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen([sys.executable, "-m", "gamebed", *args, "--no-report"], env=env,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        s = out / "summary.json"
        if s.exists() and len(json.loads(s.read_text())["points"]) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    before = json.loads((out / "summary.json").read_text())
    assert not before["complete"] and 2 <= len(before["points"]) < 4
    assert main([*args, "--resume"]) == 0
    after = json.loads((out / "summary.json").read_text())
    assert after["complete"] and after["spec"] == before["spec"]
    assert sorted((p["guests"], p["mode"]) for p in after["points"]) == \
        [(1, "guest"), (1, "host"), (2, "guest"), (2, "host")]
    assert after["points"][:len(before["points"])] == before["points"]  # kept, not redone
    assert after["resumed_from"] == [before["prefix"]]
    rows = list(csv.DictReader((out / "points.csv").open()))  # the report's points
    assert sorted((int(r["guests"]), r["mode"]) for r in rows) == \
        [(1, "guest"), (1, "host"), (2, "guest"), (2, "host")]


def test_a_testbed_grows_and_shrinks_between_points(netns_ok, tmp_path):
    """1 → 3 → 2 guests on one testbed: each point plays exactly its count's guests, the
    grown ones join the running ones, the stopped ones are gone, and nothing is left."""
    skip_unless_clang()
    from tests.support.netns import resize_through

    points = resize_through(tmp_path, "netns", (1, 3, 2))
    assert [p["n"] for p in points] == [1, 3, 2]


def test_every_point_records_its_guests_run_queue_wait(two_guest_run):
    """cpu.json holds each guest's threads' run-queue wait over the load, read from the
    kernel's per-thread schedstat (gamebed/schedwait.py), and the summary the mean per
    wake-up."""
    s = json.loads((two_guest_run / "summary.json").read_text())
    for p in s["points"]:
        use = json.loads((two_guest_run / p["dir"] / "cpu.json").read_text())
        guests = use["guests"].values()
        for g in guests:
            assert g["rq_waits"] > 0 and g["rq_threads"] >= 1 and g["rq_wait_s"] >= 0
        assert p["rq_waits"] == sum(g["rq_waits"] for g in guests)
        assert p["rq_wait_per_wake_us"] == pytest.approx(  # summary.json rounds to 3 places
            1e6 * sum(g["rq_wait_s"] for g in guests) / p["rq_waits"], abs=1e-3)


def test_a_guest_slice_is_set_read_back_and_recorded(netns_ok, tmp_path):
    """--guest-slice-ms 30: every guest thread reads 30 ms back, point.json records it,
    and nothing of the run is left."""
    from gamebed.guestslice import SliceUnsupported, check

    try:
        check(30.0)
    except SliceUnsupported as e:
        pytest.skip(str(e))
    out = tmp_path / "res"
    assert main(["run", "--backend", "netns", "--guests", "1", "--modes", "guest",
                 "--duration", "2", "--guest-slice-ms", "30", "--no-report",
                 "--out", str(out)]) == 0
    (pdir,) = (out / "points").glob("guest-*")
    sl = json.loads((pdir / "point.json").read_text())["environment"]["guest_slice"]
    assert sl["asked_ms"] == 30.0 and sl["threads"] >= 1 and sl["read_back_ms"] == [30.0, 30.0]
    prefix = json.loads((out / "summary.json").read_text())["prefix"]
    assert leftovers(prefix, str(out)) == NOTHING


def test_a_kernel_without_own_slices_is_refused_before_anything_is_built(
        netns_ok, tmp_path, monkeypatch, capsys):
    """Faked at the syscall's edge: a kernel that accepts a fair task's slice and keeps
    nothing (before 6.12).  The run says so in one line, exits 2, builds nothing."""
    from gamebed import guestslice

    class Before612(guestslice.Syscalls):
        def set(self, tid, attr):  # accepted, kept nowhere
            pass
    monkeypatch.setattr(guestslice, "Syscalls", Before612)
    from gamebed.manifest import STATE_DIR

    out, before = tmp_path / "res", set(STATE_DIR.glob("*.json"))
    assert main(["run", "--backend", "netns", "--guests", "1", "--guest-slice-ms", "30",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Linux 6.12" in err[-1] and "run without --guest-slice-ms" in err[-1]
    assert not out.exists()  # refused before the results directory was made
    assert set(STATE_DIR.glob("*.json")) == before  # and its manifest is gone
