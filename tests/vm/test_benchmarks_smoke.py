"""The benchmarks that boot guests, run at their smallest size, so that a refactor cannot
break one silently. They check that each runs to its end and prints its figures."""

from __future__ import annotations

import json

from tests.support import run_benchmark, skip_unless_uml, skip_unless_vm


def test_bench_vms_one_uml_guest():
    skip_unless_uml()
    out = run_benchmark("bench_vms.py", "--backends", "uml", "--uml-counts", "1",
                        "--load", "1")
    row = json.loads(out.strip().splitlines()[-1])
    assert row["ok"] and row["vms"] == 1, out


def test_bench_vms_one_libvirt_vm():
    skip_unless_vm()
    out = run_benchmark("bench_vms.py", "--backends", "libvirt", "--counts", "1")
    row = json.loads(out.strip().splitlines()[-1])
    assert row["ok"] and row["vms"] == 1, out


def test_reuse_check_smallest(tmp_path):
    """Two repeats (the fewest an interval needs) at 2 guests; exit 1 is its verdict
    (an interval wider than its bound), not a breakage: the figures must be there."""
    skip_unless_uml()
    out = run_benchmark("reuse_check.py", "--counts", "2", "--repeats", "2", "--duration",
                        "3", "--out", str(tmp_path), ok_codes=(0, 1))
    table = json.loads((tmp_path / "reuse_check.json").read_text())["table"]
    assert {r["figure"] for r in table} >= {"delay_mean_us", "loss_ratio"}, out
    assert "reused−fresh +" in out or "reused−fresh -" in out, out
