"""Every benchmark that needs no privileges, run at its smallest size, so that a refactor
cannot break one silently (their figures are for benchmarks/, not for tests: these
check only that each runs to its end and prints its figures). The root ones are in
tests/net/test_benchmarks_smoke.py and tests/vm/test_benchmarks_smoke.py."""

from __future__ import annotations

import json
import sys

from tests.support import run_benchmark


def _last_json(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_bench_analyzer_smallest(tmp_path):
    out = run_benchmark("bench_analyzer.py", "--records", "20000", "--points", "2")
    fig = _last_json(out)
    assert fig["records"] == 20000 and fig["records_per_s"] > 0, out


def test_bench_client_smallest():
    out = run_benchmark("bench_client.py", "--seconds", "0.5", "--rates", "500", "--repeat", "1")
    assert "500" in out and "inputs+updates/s per core" in out, out


def test_bench_clients_limit_is_the_judges():
    import importlib.util

    from analysis.load import LATENESS_LIMIT_US
    from tests.support import ROOT

    spec = importlib.util.spec_from_file_location("bench_client",
                                                  ROOT / "benchmarks" / "bench_client.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_client"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    assert mod.LATENESS_LIMIT_US == LATENESS_LIMIT_US


def test_bench_server_smallest():
    out = run_benchmark("bench_server.py", "--seconds", "0.5", "--rates", "1000",
                        "--dispatch", "epoll")
    assert "epoll" in out, out


def test_the_registered_scorer_runs_from_a_checkout():
    out = run_benchmark("model_check/registered_scorer.py")
    assert "registered (ebafe27)" in out and "later reading" in out, out
