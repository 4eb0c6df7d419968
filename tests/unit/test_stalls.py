"""Stalls and their causes (analysis/stalls.py, gamebed/machinewatch.py) on stored
samples: no privileges, no testbed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from analysis import stalls
from analysis.load import bound_cause
from fpsmodel.records import CLIENT_INPUT_FIELDS, CLIENT_INPUTS
from gamebed.machinewatch import (
    INJECTED,
    INJECTED_FIELDS,
    MACHINE,
    MACHINE_FIELDS,
    PROBE,
    PROBE_FIELDS,
    StallPlan,
    cores,
    enclosing_stats,
    throttled_ns,
)

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
STAT = """cpu  100 0 50 1000 5 0 3 40 0 0
cpu0 60 0 30 500 2 0 2 30 0 0
cpu1 40 0 20 500 3 0 1 10 0 0
intr 12345 0 0
"""


@pytest.mark.unit
def test_proc_stat_busy_and_steal_per_cpu():
    """Busy is every column but idle, iowait and steal; steal is the 8th column."""
    assert cores(STAT, 10 * MS) == [(0, (60 + 30 + 2) * 10 * MS, 30 * 10 * MS),
                                    (1, (40 + 20 + 1) * 10 * MS, 10 * 10 * MS)]


@pytest.mark.unit
def test_the_cgroups_around_a_process_and_their_throttling(tmp_path: Path):
    mountinfo = (f"30 25 0:26 / {tmp_path}/cpu rw - cgroup cgroup rw,cpu\n"
                 f"31 25 0:27 / {tmp_path}/v2 rw - cgroup2 cgroup2 rw\n")
    stats = enclosing_stats("4:cpu:/a/b\n0::/s/t\n", mountinfo)
    assert stats[:3] == [tmp_path / "cpu/a/b/cpu.stat", tmp_path / "cpu/a/cpu.stat",
                         tmp_path / "cpu/cpu.stat"]
    assert stats[3:] == [tmp_path / "v2/s/t/cpu.stat", tmp_path / "v2/s/cpu.stat",
                         tmp_path / "v2/cpu.stat"]
    (tmp_path / "cpu/a").mkdir(parents=True)
    (tmp_path / "cpu/a/cpu.stat").write_text("nr_periods 5\nnr_throttled 2\n"
                                             "throttled_time 7000000\n")
    (tmp_path / "v2/s").mkdir(parents=True)
    (tmp_path / "v2/s/cpu.stat").write_text("usage_usec 9\nthrottled_usec 3000\n")
    assert throttled_ns(stats) == 7_000_000 + 3_000_000


def _point(tmp_path: Path, late: dict[int, int], steal_at: int | None = None,
           throttle_at: int | None = None, injected: tuple = (), held: tuple = ()) -> Path:
    """A point of 10 s at 100 inputs/s: inputs due every 10 ms, those in `late` (due
    time → ns late) sent late; 10-ms machine samples with 100 ms of steal on both CPUs
    (or of throttling) from `steal_at` (`throttle_at`)."""
    d = tmp_path / "p"
    d.mkdir()
    with open(d / CLIENT_INPUTS, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CLIENT_INPUT_FIELDS)
        for i in range(1000):
            t = T0 + i * 10 * MS
            lat = late.get(t, 20_000)
            w.writerow([0, 0, i, t, t + lat, lat, t + lat + 5000])
    with open(d / MACHINE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(MACHINE_FIELDS)
        for k in range(1002):
            t = T0 + k * 10 * MS
            steal, thr = (0 if at is None else int(np.clip(t - at, 0, 100 * MS))
                          for at in (steal_at, throttle_at))
            for cpu in (0, 1):
                w.writerow([t, cpu, k * 2 * MS, steal, thr])
    with open(d / PROBE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PROBE_FIELDS)
        w.writerows([(0, a, b - a) for a, b in held])
    if injected:
        with open(d / INJECTED, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(INJECTED_FIELDS)
            w.writerows([(a, b, 9) for a, b in injected])
    return d


def _stall_at(start: int) -> dict[int, int]:
    """Inputs due over 100 ms from `start` all sent when it ends."""
    return {start + i * 10 * MS: 100 * MS - i * 10 * MS for i in range(10)}


@pytest.mark.unit
@pytest.mark.parametrize("what", ["steal", "throttled", "injected", "held", "unknown"])
def test_a_stall_is_found_and_its_cause_named(tmp_path: Path, what: str):
    start = T0 + 4000 * MS
    d = _point(tmp_path, _stall_at(start), steal_at=start if what == "steal" else None,
               throttle_at=start if what == "throttled" else None,
               injected=((start, start + 100 * MS),) if what == "injected" else (),
               held=((start + 2 * MS, start + 98 * MS),) if what == "held" else ())
    f = stalls.stall_figures(d, {"shim_cpus": "0"}, 200.0)
    assert len(f.stalls) == 1
    s = f.stalls[0]
    assert s.cause == what and s.inputs == 10 and abs(s.ms - 100) < 1
    if what == "unknown":  # not left out: measured again if the point is late
        assert f.windows == () and f.excluded_share == 0.0
        assert bound_cause(True, False, f) == ("unknown stall", True)
        assert bound_cause(False, False, f) == (None, True)  # measured again all the same
    else:  # left out: the stall and a guard as long as itself
        assert f.windows == ((start, start + 200 * MS),)
        assert f.excluded_share == pytest.approx(0.02, abs=0.001)
        kept = f.keep(np.array([start - MS, start + 50 * MS, start + 199 * MS,
                                start + 201 * MS]))
        assert kept.tolist() == [True, False, False, True]


@pytest.mark.unit
def test_short_lateness_nothing_explains_is_the_load_generators(tmp_path: Path):
    """Inputs 0.5 ms late with no record of the machine's absence: stalls of unknown
    cause, kept in the statistics, too short to measure again; the point is the load
    generator's (host busy where its CPU was)."""
    d = _point(tmp_path, {T0 + 10 * MS * i: 500_000 for i in range(0, 1000, 50)})
    f = stalls.stall_figures(d, {"shim_cpus": "0"}, 200.0)
    assert len(f.stalls) == 20 and {s.cause for s in f.stalls} == {"unknown"}
    assert f.windows == () and f.row()["stalls_unknown"] == 0
    assert bound_cause(True, True, f) == ("host busy", False)
    assert bound_cause(True, False, f) == ("client late", False)
    assert bound_cause(False, False, f) == (None, False)


@pytest.mark.unit
def test_a_stall_of_players_on_another_machine_is_theirs(tmp_path: Path):
    """The same 100-ms stall by guest 0's players, run on another machine (a shard
    with a `machine`): no record of that machine explains it, so it is neither left out
    nor measured again; the point, late, is the load generator's."""
    import json

    start = T0 + 4000 * MS
    d = _point(tmp_path, _stall_at(start), steal_at=start)
    (d / "client_summary.json").write_text(json.dumps(
        {"shards": [{"guests": [0, 1], "machine": "m0"}]}))
    f = stalls.stall_figures(d, {"shim_cpus": "0"}, 200.0)
    assert [s.cause for s in f.stalls] == [stalls.REMOTE] and f.stalls[0].inputs == 10
    assert f.windows == () and f.row()["stalls_unknown"] == 0
    assert bound_cause(True, False, f) == ("client late", False)
    # the same shard on this host: its stall is the steal's, and left out
    (d / "client_summary.json").write_text(json.dumps({"shards": [{"guests": [0, 1]}]}))
    assert [s.cause for s in stalls.stall_figures(d, {"shim_cpus": "0"}, 200.0).stalls] \
        == ["steal"]


@pytest.mark.unit
def test_more_left_out_than_the_limit_is_measured_again(tmp_path: Path):
    starts = [T0 + k * 400 * MS for k in range(1, 24)]  # 23 stalls, each 200 ms left out
    late = {t: v for s in starts for t, v in _stall_at(s).items()}
    d = _point(tmp_path, late, injected=tuple((s, s + 100 * MS) for s in starts))
    f = stalls.stall_figures(d, {}, 200.0)
    assert f.excluded_share > stalls.EXCLUDED_LIMIT
    assert bound_cause(False, False, f) == ("stolen", True)


@pytest.mark.unit
def test_the_stall_plan_is_parsed_and_checked():
    assert StallPlan.parse("100ms/3s@24") == StallPlan(100.0, 3.0, 24)
    assert StallPlan.parse("50ms/1.5s").from_guests == 1
    for bad in ("100ms", "3s/100ms", "2000ms/1s", "0ms/1s"):
        with pytest.raises(ValueError, match="--stalls"):
            StallPlan.parse(bad)


@pytest.mark.unit
def test_the_dry_run_says_where_it_would_freeze_the_testbed(tmp_path: Path, capsys):
    from gamebed.cli import main

    assert main(["run", "--dry-run", "--backend", "netns", "--guests", "1,2", "--duration",
                 "2", "--stalls", "100ms/1s@2", "--out", str(tmp_path / "o")]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if "--stalls" in x]
    assert len(lines) == 3  # the warm-up and the two points at 2 guests, none at 1
    assert "freezer group" in lines[0] and "-stalls" in lines[0]
