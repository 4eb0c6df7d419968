"""The guests' run-queue wait (gamebed/schedwait.py) on a fake /proc and on this
process's own threads, its window arithmetic, and how a point and a report read it
(analysis/point.py run_queue_figures, analysis/waits.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import run_queue_figures
from analysis.waits import wait_figures, wait_lines
from gamebed import schedwait
from gamebed.cpustat import add_run_queue


def _proc(root: Path, threads: dict[int, dict[int, tuple[int, int, int]]]) -> Path:
    for pid, tids in threads.items():
        for tid, (run, wait, slices) in tids.items():
            d = root / str(pid) / "task" / str(tid)
            d.mkdir(parents=True, exist_ok=True)
            (d / "schedstat").write_text(f"{run} {wait} {slices}\n")
    return root


def test_a_snapshot_reads_every_thread_of_every_process(tmp_path):
    proc = _proc(tmp_path, {10: {10: (5, 100, 2), 11: (5, 300, 4)}, 20: {20: (1, 7, 1)}})
    assert schedwait.snapshot([10, 20, 99], proc) == {10: (100, 2), 11: (300, 4), 20: (7, 1)}


def test_a_window_counts_survivors_by_difference_newborns_whole_and_loses_the_exited():
    a = {1: (1_000, 10), 2: (5_000, 20), 3: (9_000, 30)}
    b = {1: (4_000, 13), 2: (5_000, 20), 4: (2_000, 2),  # 3 exited, 4 was born
         }
    w = schedwait.window(a, b)
    assert (w.waits, w.threads, w.exited) == (3 + 0 + 2, 3, 1)
    assert w.wait_s == pytest.approx((3_000 + 2_000) / 1e9)
    assert w.per_wake_us == pytest.approx(1e6 * 5e-6 / 5)
    # a reused tid whose counters went back counts whole, never negative
    assert schedwait.window({5: (9_000, 9)}, {5: (1_000, 1)}).wait_s == pytest.approx(1e-6)
    assert schedwait.window({}, {}).per_wake_us is None


def test_this_kernels_threads_wait_when_two_spin_on_one_cpu():
    """On this host: two spinning threads pinned to one CPU queue behind each other, so
    their run-queue wait over the window is a real share of it."""
    if not schedwait.available():
        pytest.skip("this kernel keeps no per-thread schedstat (CONFIG_SCHED_INFO)")
    cpu = min(os.sched_getaffinity(0))
    stop = threading.Event()

    def spin() -> None:
        os.sched_setaffinity(0, {cpu})
        while not stop.is_set():
            pass
    ts = [threading.Thread(target=spin) for _ in range(2)]
    for t in ts:
        t.start()
    time.sleep(0.2)
    a = schedwait.snapshot([os.getpid()])
    time.sleep(1.0)
    b = schedwait.snapshot([os.getpid()])
    stop.set()
    for t in ts:
        t.join()
    w = schedwait.window(a, b)
    assert w.threads >= 3 and w.waits > 0
    assert w.wait_s > 0.2  # of 2 thread-seconds wanted on one CPU, about 1 s waited


def test_cpu_json_carries_each_guests_wait_and_a_point_sums_them():
    use = {"guests": {"0": {"cpu_s": 1.0}}}
    add_run_queue(use, {0: {1: (0, 0)}, 1: {}}, {0: {1: (3_000_000, 10)}, 1: {7: (1_000_000, 10)}})
    assert use["guests"]["0"]["rq_wait_s"] == pytest.approx(0.003)
    assert use["guests"]["1"]["rq_waits"] == 10
    f = run_queue_figures(use["guests"].values())
    assert f["rq_waits"] == 20 and f["rq_wait_per_wake_us"] == pytest.approx(200.0)
    assert np.isnan(run_queue_figures([{"cpu_s": 1.0}])["rq_wait_per_wake_us"])


def test_the_reports_wait_figures_set_the_wait_beside_the_stamp_error():
    rows = [("guest", n, e, w) for n, e, w in
            ((1, 100, 50), (1, 110, 60), (16, 500, 300), (16, 520, 320), (32, 3000, 2000))]
    rows.append(("host", 16, 0.0, 300))  # host stamps: no stamp error to explain
    df = pd.DataFrame(rows, columns=["mode", "guests", "stamp_error_mean_us",
                                     "rq_wait_per_wake_us"])
    w = wait_figures(df)
    assert [r.guests for r in w.rows] == [1, 16, 32] and w.points == 5
    assert w.rows[1].ratio == pytest.approx(310 / 510)
    assert w.correlation == pytest.approx(np.corrcoef([50, 60, 300, 320, 2000],
                                                      [100, 110, 500, 520, 3000])[0, 1])
    assert f"r = {w.correlation:.3f}" in wait_lines(w)[0] and "0.52–0.67" in wait_lines(w)[0]
    # a run recorded before the measure has no wait: no section
    assert wait_figures(df.drop(columns=["rq_wait_per_wake_us"])) is None
