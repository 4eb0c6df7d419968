"""The UML backend's pure parts, without root: backend choice, spec fields, CPU
accounting arithmetic, paired-stamp analysis, the game-logic knob, the dry run."""

import csv

import numpy as np
import pytest

import vm
from analysis.point import analyze_point
from analysis.synth import SynthRun, write_run
from fpsmodel.server import GameLogic
from gamebed import cpustat
from gamebed.cli import main
from gamebed.spec import DEFAULT_COUNTS, ExperimentSpec


def test_auto_takes_uml_where_it_runs_else_netns(monkeypatch):
    monkeypatch.setattr(vm, "uml_usable", lambda *a, **k: (True, "user-mode Linux 6.1 runs here"))
    spec, why = vm.resolve_backend(ExperimentSpec())
    assert spec.backend == "uml" and spec.design.guest_counts == DEFAULT_COUNTS["uml"]
    assert "6.1 runs here" in why
    monkeypatch.setattr(vm, "uml_usable", lambda *a, **k: (False, "a probe UML guest stopped"))
    spec, why = vm.resolve_backend(ExperimentSpec.of(guest_counts=(1, 2)))
    assert spec.backend == "netns" and spec.design.guest_counts == (1, 2)
    assert "a probe UML guest stopped" in why and "--backend uml" in why
    spec, why = vm.resolve_backend(ExperimentSpec.of(backend="libvirt"))
    assert spec.design.guest_counts == DEFAULT_COUNTS["libvirt"] and "asked for" in why


def test_unresolved_spec_has_no_counts():
    with pytest.raises(ValueError, match="resolved"):
        _ = ExperimentSpec().counts
    assert ExperimentSpec.of(backend="uml").counts == DEFAULT_COUNTS["uml"]


@pytest.mark.parametrize("bad,msg", [(dict(cpu_weight=0), "cpu_weight"),
                                     (dict(server_work_us=-1), "server_work_us"),
                                     (dict(backend="libvirt", cpu_weight=512), "cpu_weight")])
def test_new_spec_fields_are_checked(bad, msg):
    with pytest.raises(ValueError, match=msg):
        ExperimentSpec.of(**bad)


def test_cpu_window_deltas_and_busy_share():
    c0 = {"cpu0": {"user": 1.0, "system": 1.0, "idle": 10.0, "iowait": 0.0, "softirq": 0.5},
          "cpu1": {"user": 5.0, "system": 0.0, "idle": 1.0, "iowait": 0.0, "softirq": 0.0}}
    c1 = {"cpu0": {"user": 2.0, "system": 1.5, "idle": 12.0, "iowait": 0.0, "softirq": 1.0},
          "cpu1": {"user": 8.5, "system": 0.5, "idle": 1.0, "iowait": 0.0, "softirq": 0.0}}
    g0 = {0: {"cpu_s": 1.0, "throttled_s": 0.0}}
    g1 = {0: {"cpu_s": 3.5, "throttled_s": 0.25}}
    w = cpustat.window(c0, c1, g0, g1, 4.0)
    assert w["cores"]["cpu0"]["busy_fraction"] == pytest.approx(2.0 / 4.0)
    assert w["cores"]["cpu1"]["busy_fraction"] == pytest.approx(4.0 / 4.0)
    assert w["guests"]["0"] == {"cpu_s": 2.5, "throttled_s": 0.25}
    assert set(cpustat.core_times()) >= {"cpu0"}


def test_paired_guest_stamps_are_joined_on_the_host_stamp(tmp_path):
    """Host-mode point + pairs.csv whose guest stamps lag the host's by 300..399 µs."""
    write_run(tmp_path, lambda m, g, r, n: (np.full(n, 50.0), np.full(n, 50.0), 0.0),
              SynthRun(modes=("host",), guest_counts=(2,), inputs_per_point=400))
    pdir = tmp_path / "points" / "host-g002"
    with open(pdir / "shim_inputs.csv") as f:
        shim = list(csv.DictReader(f))
    for g in (0, 1):
        rows = [r for r in shim if int(r["guest"]) == g]
        (pdir / f"guest{g}").mkdir(exist_ok=True)
        with open(pdir / f"guest{g}" / "pairs.csv", "w") as f:
            f.write("host_ns,guest_kernel_ns\n")
            for k, r in enumerate(rows):
                f.write(f"{r['host_ns']},{int(r['host_ns']) + 300_000 + k % 100 * 1000}\n")
    row, _ = analyze_point(pdir)
    assert row["paired_n"] == 400 and row["paired_coverage"] == 1.0
    assert 300.0 <= row["paired_stamp_error_mean_us"] <= 399.0
    assert row["paired_stamp_error_p95_us"] > row["paired_stamp_error_p50_us"]


def test_game_logic_costs_cpu_per_player():
    import time

    logic = GameLogic(500.0)
    t0 = time.process_time()
    for _ in range(20):
        logic.run(2)
    spent = (time.process_time() - t0) / 20
    assert 0.5e-3 < spent < 5e-3  # 2 players × 500 µs, calibrated on this CPU
    assert GameLogic(0).per_us == 0.0


def test_uml_dry_run_prints_guests_and_agent_commands(tmp_path, capsys):
    assert main(["run", "--backend", "uml", "--guests", "2", "--dry-run", "--cpu-cap", "0.2",
                 "--cpu-weight", "512", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert out.count("linux.uml mem=") == 2 and "vec0:transport=raw" in out
    assert out.count(" seccomp=on") == 2  # --uml-mode auto on the kernel gamebed builds
    assert "mac=02:67:62:01:00:01" in out and "ubd0=" in out
    assert "cpu.cfs_quota_us" in out and "cpu.shares" in out
    # both modes run on the guests booted once: two agent commands each, no second boot
    # (no idle exit: one server serves both points, each ended by `flush`)
    # (JSON-line requests, each answered: vm/guestlink.py)
    assert out.count('"op": "run", "mode": "guest", "idle_exit": 0') == 2
    assert out.count('"op": "run", "mode": "host", "idle_exit": 0') == 2
