"""The root benchmarks that need network namespaces, run at their smallest size, so that a
refactor cannot break one silently (bench_paths.py once stopped with an AttributeError
and nothing noticed). They check that each runs to its end and prints its figures."""

from __future__ import annotations

import json

from tests.support import run_benchmark, skip_unless_clang, skip_unless_netns


def test_bench_paths_smallest():
    skip_unless_netns()
    skip_unless_clang()
    out = run_benchmark("bench_paths.py", "--seconds", "0.3", "--rate-seconds", "0.3",
                        "--repeats", "1", "--max-rate", "25000")
    fig = json.loads(out.strip().splitlines()[-1])
    assert set(fig["medians_us"]) == set(fig["max_rate_pps"]) and fig["max_rate_pps"], out
    assert all(v["1k p50"] > 0 for v in fig["medians_us"].values()), out


def test_interrupt_runs_smallest(tmp_path):
    skip_unless_netns()
    out = run_benchmark("interrupt_runs.py", "--backends", "netns", "--per-signal", "1",
                        "--out", str(tmp_path))
    assert "3 runs; 0 with leftovers or broken points" in out, out


def test_bench_probe_smallest(tmp_path):
    skip_unless_netns()
    skip_unless_clang()
    out = run_benchmark("bench_probe.py", "--runs", "1", "--duration", "2", "--out",
                        str(tmp_path))
    lines = [x for x in out.splitlines() if x[:1].isdigit()]
    # one run with the probe and one without, both modes each
    assert sorted(x.split()[1] for x in lines) == ["off", "off", "on", "on"], out
