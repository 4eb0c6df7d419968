"""The capacity model's fitter (analysis/model.py, analysis/forecast.py) on synthetic runs
generated from the model's own formula (analysis/synth.py CostTruth): regression tests
that the fitter recovers what it was given, not a validation of the model against real
hosts (that is the held-out check, benchmarks/model_check). Also the first check's
registered scorer and the guest-CPU budget's arithmetic (gamebed/guestcpu.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from analysis import forecast as F
from analysis import model as M
from analysis import modelruns as R
from analysis import scorer as S
from analysis.synth import CostTruth, write_model_run
from gamebed.cgroups import CgroupTree
from gamebed.cli import main
from gamebed.guestcpu import GuestCpus, parent_shares, quota_us
from gamebed.manifest import Manifest
from gamebed.proc import Runner

TRUTH = CostTruth()
SCORER_SRC = Path(S.__file__)
FIRST_PREDICTIONS = Path(__file__).resolve().parents[2] / "benchmarks/model_check/predictions.json"
COUNTS = (1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48)


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """Two calibration runs, the model's budgets: whole CPU and 0.6 of it."""
    base = tmp_path_factory.mktemp("model")
    k1 = write_model_run(base / "k100", TRUTH, COUNTS, k=1.0, seed=1)
    k06 = write_model_run(base / "k060", TRUTH, COUNTS, k=0.6, seed=2)
    return base, [k1, k06]


def test_the_fitter_recovers_the_costs_the_synthetic_runs_were_made_with(calib):
    _, runs = calib
    obs, game, _ = F.calibrate(runs)
    p = M.fit(obs, game)
    assert p.d[0] == pytest.approx(TRUTH.d0, rel=0.1)
    assert p.d[1] == pytest.approx(TRUTH.d1, rel=0.5)
    assert p.c_tick == pytest.approx(TRUTH.c_tick, rel=0.15)
    y0, b, v, alpha = p.delay
    assert alpha == pytest.approx(TRUTH.alpha, abs=0.5)
    assert y0 == pytest.approx(TRUTH.y0, rel=0.15) and b == pytest.approx(TRUTH.b, rel=0.4)
    assert v == pytest.approx(TRUTH.v, rel=0.4) and p.h_fitted
    assert not p.x_censored  # the 0.6 run lost inputs at its top counts


@pytest.mark.parametrize("k", [0.25, 0.45, 0.8])
def test_the_fitter_recovers_its_own_formulas_capacity_at_other_budgets(calib, k):
    """Calibrated on synthetic 1.0 and 0.6 runs made from the model's formula, the
    prediction at k holds that formula's capacity (the fitter's regression test)."""
    _, runs = calib
    f = F.forecast(runs, [F.Case.parse(str(k))], memory=24 * 1024)
    modes = f["cases"][0]["modes"]
    for mode in ("guest", "host"):
        true = TRUTH.true_capacity(mode, k, k)
        assert modes[mode]["lo"] - 1 <= true <= modes[mode]["hi"] + 1, (mode, modes, true)
        assert abs(modes[mode]["capacity"] - true) <= max(1, 0.1 * true)


def test_the_judge_measures_the_synthetic_truth_and_the_check_scores_it(calib, tmp_path):
    """The generator and the report's judge agree on what a held-out run measures, and
    the check table then scores a prediction against it (and the baseline)."""
    _, runs = calib
    held = write_model_run(tmp_path / "k045", TRUTH, tuple(range(1, 49)), k=0.45, seed=9)
    meas = F.measured(held)
    for mode in ("guest", "host"):
        true = TRUTH.true_capacity(mode, 0.45, 0.45)
        assert abs(meas[mode]["lo"] - true) <= 1, (mode, meas, true)
    pred = F.forecast(runs, [F.Case.parse("0.45")], memory=24 * 1024)
    ch = F.check(pred, {"0.45": held})
    assert {r["mode"] for r in ch["rows"]} == {"guest", "host"}
    assert all(r["overlap"] for r in ch["rows"])
    assert ch["total_abs_error"]["model"] <= 4
    assert all(r["baseline"] for r in ch["rows"])  # proportional to 0.45 of the k=1 run


def test_registered_predictions_carry_their_provenance_and_their_scorer(calib, tmp_path,
                                                                          capsys):
    """--register records the commit and the sha256 of the model's and the scorer's code
    and freezes the scorer beside the predictions; --check scores with that copy, says
    so, and shows today's rules only as a labelled later reading."""
    _, runs = calib
    held = write_model_run(tmp_path / "k045", TRUTH, tuple(range(1, 49)), k=0.45, seed=9)
    path = tmp_path / "reg" / "predictions.json"
    assert main(["predict", *map(str, runs), "--guest-cpus", "0.45", "--memory-gib", "24",
                 "--register", str(path)]) == 0
    pred = json.loads(path.read_text())
    prov = pred["provenance"]
    frozen = path.with_name("predictions.scorer.py")
    assert prov["scorer_file"] == frozen.name and frozen.read_bytes() == SCORER_SRC.read_bytes()
    assert prov["scorer_sha256"] == F.sha256(frozen)
    assert prov["model_sha256"] == F.sha256(Path(M.__file__))
    assert prov["model_runs_sha256"] == F.sha256(Path(R.__file__))
    assert {"commit", "dirty"} <= set(prov)
    capsys.readouterr()
    assert main(["predict", "--check", str(path), "--measured", f"0.45={held}"]) == 0
    out = capsys.readouterr().out
    assert f"Scored by the registered scorer predictions.scorer.py (sha256 " \
           f"{prov['scorer_sha256'][:16]}" in out and "Later reading" not in out
    # the rules registered are the rules scored by, whatever today's say
    scorer = F.registered_scorer(path, pred)
    frozen_rows = F.check(pred, {"0.45": held}, scorer)["rows"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S, "error", lambda *a: (99.0, False))
        assert F.check(pred, {"0.45": held}, scorer)["rows"] == frozen_rows
        assert F.check(pred, {"0.45": held})["rows"][0]["error"] == 99.0
    assert main(["predict", "--check", str(path), "--measured", f"0.45={held}",
                 "--later-rules"]) == 0
    out = capsys.readouterr().out
    assert out.index("Scored by the registered scorer") < out.index("Later reading, NOT")
    # a scorer that is not the registered one is refused, with what to do
    frozen.write_text(frozen.read_text() + "\n# changed\n")
    assert main(["predict", "--check", str(path), "--measured", f"0.45={held}"]) == 2
    assert "is not the scorer registered" in capsys.readouterr().err


def test_predictions_registered_without_a_scorer_say_whose_rules_scored_them():
    pred = json.loads(FIRST_PREDICTIONS.read_text())
    assert "provenance" not in pred  # the first check's, registered at ebafe27
    s = F.registered_scorer(FIRST_PREDICTIONS, pred)
    assert not s.registered and "these predictions registered none" in s.label


def test_one_run_without_loss_gives_a_lower_bound(tmp_path):
    """No point lost inputs: the loss limit is censored and the host-stamp capacity is
    shown as "≥"; one budget only: the competing process's wait is not fitted."""
    run = write_model_run(tmp_path / "k1", TRUTH, (1, 2, 4, 8, 16, 24), k=1.0)
    f = F.forecast([run], [F.Case.parse("1")], memory=24 * 1024)
    p = f["params"]
    assert p["x_censored"] and not p["h_fitted"] and p["delay"][2] == 0.0  # v
    host = f["cases"][0]["modes"]["host"]
    assert host["at_least"] and F.interval_text(host).startswith("≥")
    h = F.hosts_needed(10000, 4, host)
    assert h["at_most"] and F.hosts_text(h).startswith("≤")


def test_memory_bounds_capacity(calib):
    _, runs = calib
    f = F.forecast(runs, [F.Case.parse("3")], memory=1024 + 55 * 10)  # room for 10 guests
    assert f["top"] == 10
    assert all(v["capacity"] <= 10 for v in f["cases"][0]["modes"].values())


def test_hosts_needed_arithmetic():
    h = F.hosts_needed(10000, 4, {"capacity": 30, "lo": 25, "hi": 35})
    assert h == {"hosts": 84, "lo": 72, "hi": 100, "guests": 2500, "at_most": False}


def test_queue_terms():
    assert M.queue_term(np.array([0.5]), 1)[0] == pytest.approx(1.0)  # ρ/(1−ρ)
    assert M.queue_term(np.array([0.5]), 1, 2.0)[0] == pytest.approx(0.5)  # ρ²/(1−ρ)
    # two CPUs wait less than one at the same utilisation
    assert M.queue_term(np.array([0.8]), 2)[0] < M.queue_term(np.array([0.8]), 1)[0]
    assert M.hog_factor(1.0) == 0.0 and M.hog_factor(0.25) == pytest.approx(3.0)


def test_register_and_check_through_the_cli(calib, tmp_path, capsys):
    base, runs = calib
    pred = tmp_path / "predictions.json"
    assert main(["predict", *map(str, runs), "--guest-cpus", "0.45,dynamic,3",
                 "--players-total", "10000", "--register", str(pred)]) == 0
    out = capsys.readouterr().out
    assert "hosts needed for 10000 players" in out and "dynamic" in out
    saved = json.loads(pred.read_text())
    assert len(saved["digest"]) == 16 and len(saved["cases"]) == 3
    held = write_model_run(tmp_path / "k045", TRUTH, tuple(range(1, 49)), k=0.45, seed=5)
    assert main(["predict", "--check", str(pred), "--measured", f"0.45={held}"]) == 0
    assert "| 0.45 | guest |" in capsys.readouterr().out
    # a wrong profile, a missing run: exit 2, one line that says what to do
    assert main(["predict", str(runs[0]), "--profile", "br30"]) == 2
    assert main(["predict", str(base / "nothing")]) == 2
    assert "give a finished" in capsys.readouterr().err


def test_a_run_without_spare_cpu_cannot_calibrate(tmp_path):
    run = write_model_run(tmp_path / "full", TRUTH, (48, 60), k=1.0)
    with pytest.raises(ValueError, match="CPU to spare"):
        F.forecast([run], [F.Case.parse("1")], memory=24 * 1024)


def test_guest_cpu_budget_arithmetic(tmp_path):
    assert parent_shares(0.5) == 1024 and parent_shares(0.25) == 341
    assert parent_shares(0.8) == 4096
    assert quota_us(0.45) == (2222, 1000) and quota_us(2.0) == (1000, 2000)
    lines: list[str] = []
    runner = Runner(dry_run=True, echo=lines.append)
    m = Manifest("gbtest00", tmp_path, dry_run=True)
    with CgroupTree("gbtest00", m, runner) as tree, \
            GuestCpus(0.45, "weight", (1,), tree) as b:
        assert b.needs_hogs and b.parent.name == "gbtest00-guests"
        # listed before made: the parent, the hogs' cpu and cpuacct groups
        cpu, acct = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpuacct")
        assert [e["path"] for e in m.entries] == [
            str(cpu / "gbtest00-guests"), str(cpu / "gbtest00-hog"), str(acct / "gbtest00-hog")]
        assert f"echo 838 > {cpu}/gbtest00-guests/cpu.shares" in lines
        assert f"echo 1024 > {cpu}/gbtest00-hog/cpu.shares" in lines
        rec = b.record({"hog_s": 1.0, "throttled_s": 0.0, "nr_throttled": 0, "nr_periods": 0},
                       {"hog_s": 6.5, "throttled_s": 0.0, "nr_throttled": 0,
                        "nr_periods": 0}, 4.5, 10.0)
    assert rec["share"] == pytest.approx(0.45) and rec["cores_used"] == pytest.approx(0.45)
    assert rec["weights"] == {"guests": 838, "hogs": 1024, "hierarchy": "v1"}
    with pytest.raises(ValueError, match="give a number of cores"):
        GuestCpus(1.5, "weight", (1,), tree)
    assert m.entries == []  # struck off on leaving
    with CgroupTree("gbtest00", m, runner) as tree, GuestCpus(0.45, "quota", (1,), tree) as q:
        assert not q.needs_hogs
    assert f"echo 2222 > {cpu}/gbtest00-guests/cpu.cfs_period_us" in lines


def test_the_later_reading_leaves_two_lower_bounds_unscored():
    """analysis/scorer.py as it stands (the rules changed after the first registration,
    e25a326): a predicted lower bound beside a measured one has no error;
    a point prediction below a measured lower bound errs by the gap; one inside a
    measured interval by its distance from the middle."""
    assert S.error({"lo": 16, "hi": 23, "capacity": 19, "at_least": True},
                    {"lo": 12, "hi": None}, 250) == (None, True)
    assert S.error({"lo": 9, "hi": 11, "capacity": 10}, {"lo": 12, "hi": None}, 250) \
        == (-2.0, False)
    assert S.error({"lo": 12, "hi": 14, "capacity": 12}, {"lo": 11, "hi": 12}, 250) \
        == (0.5, True)


def test_the_reports_model_section_from_one_run(calib):
    """A report's section: its own host and the paper's from the run alone, hosts for the
    player count, and the paper's setup at a guest cost times 1..3 (cost dearer, fewer
    guests), on the same fit."""
    _, runs = calib
    m = F.report_model(runs[0], 10000)
    assert [c["case"]["name"] for c in m["cases"]] == ["this host", "3 (the paper's)"]
    assert all(set(c["hosts"]) == {"guest", "host"} for c in m["cases"])
    by = m["paper"]["by_factor"]
    assert by["1"]["guest"] > by["2"]["guest"] > by["3"]["guest"]
    assert by["1"]["guest"] == m["cases"][1]["modes"]["guest"]["capacity"]  # same fit


def test_the_reports_model_section_is_under_the_reports_sla(calib):
    """`gamebed report --sla-delay-ms X`: the model section predicts under X, as the
    capacity above it is judged (issue 38: it used the run's own SLA whatever was
    given); the terms it cannot predict (a p95 delay, the paper's) get no section."""
    from analysis.capacity import Sla

    _, runs = calib
    own = F.report_model(runs[0], 10000)
    strict = F.report_model(runs[0], 10000, Sla("mean", 0.05, 0.01))
    assert strict["sla"] == {"delay_ms": 0.05, "loss": 0.01}
    assert own["sla"]["delay_ms"] == 1.0
    assert strict["cases"][0]["modes"]["guest"]["capacity"] \
        < own["cases"][0]["modes"]["guest"]["capacity"]
    for other in (Sla("p95", 1.0, 0.01), Sla("mean", 1.0, 0.01, terms="paper")):
        assert "predicts the mean delay under the players' terms" \
            in F.report_model(runs[0], 10000, other)["error"]


def test_the_first_check_scored_as_registered_the_model_lost():
    """The frozen ebafe27 scorer on the stored held-out intervals: model 22, baseline 18,
    the dynamic host row −18; the later reading (4 against 18.5) is kept apart, and
    the stored intervals are the ones the held-out archive's check shows."""
    import tarfile

    c = F.first_check()
    reg, later = c["registered"], c["later"]
    assert reg["total_abs_error"] == {"model": 22.0, "baseline": 18.0}
    assert later["total_abs_error"] == {"model": 4.0, "baseline": 18.5}
    dyn = {(r["case"], r["mode"]): r for r in reg["rows"]}[("dynamic", "host")]
    assert dyn["error"] == -18.0 and dyn["baseline_error"] == 0.0
    archive = F.FIRST_CHECK.parent / "held_out.tar.gz"
    with tarfile.open(archive) as tar:
        check = json.load(tar.extractfile("held/check.json"))
    shown = {(r["case"], r["mode"]): r["measured"] for r in check["rows"]}
    stored = c["stored"]["measured"]
    assert shown == {(k, m): v["text"] for k, by in stored.items() for m, v in by.items()}
    # the check's JSON in the archive was written by the later rule, not the registered
    assert check["total_abs_error"] == later["total_abs_error"]


def test_the_registered_rule_charges_only_a_prediction_below_a_measured_bound():
    """ebafe27's rule, kept as it was: a lower bound above a measured lower bound costs
    nothing, one below it costs the gap (the flaw docs/model.md names)."""
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("registered_scorer", F.FIRST_CHECK)
    rs = module_from_spec(spec)
    spec.loader.exec_module(rs)
    bound = {"lo": 80, "hi": None}
    assert rs.registered_error({"lo": 96, "hi": 96, "capacity": 96, "at_least": True},
                               bound, 250) == (0.0, True)
    assert rs.registered_error({"lo": 60, "hi": 64, "capacity": 62, "at_least": True},
                               bound, 250) == (-18.0, True)
    assert rs.later_error({"lo": 60, "hi": 64, "capacity": 62, "at_least": True},
                          bound, 250) == (None, True)


def test_the_reports_model_section_states_the_first_check_as_registered(calib):
    from analysis.modeltext import first_check_text, model_blocks

    _, runs = calib
    m = F.report_model(runs[0], 10000)
    text = first_check_text(m["first_check"])
    assert "model 22 guests, proportional baseline 18" in text and "lost" in text
    assert "later reading" in text and "model 4 guests, proportional baseline 18.5" in text
    assert text.index("baseline 18,") < text.index("baseline 18.5")  # registered first
    assert any(b.id == "model-check" for b in model_blocks(m))
    paper = next(b.text for b in model_blocks(m) if b.id == "model-paper")
    assert "fitted" in paper and "not predictions" in paper


def _obs(guests: int, ticks: str | None, used: float = 0.0) -> M.Obs:
    return M.Obs(0, "host", guests, 1, 1.0, 1.0, used, 20.0, 100.0, 0.0, False, ticks)


def test_a_points_tick_terms_are_the_judges():
    ok = {"ticks_share_ci_lo": 0.995, "ticks_share_ci_hi": 1.0,
          "tick_gap_p99_ci_lo_ms": 50.0, "tick_gap_p99_ci_hi_ms": 55.0}
    assert M.tick_verdict(ok, 20.0) == "pass"
    assert M.tick_verdict({**ok, "ticks_share_ci_lo": 0.9, "ticks_share_ci_hi": 0.95},
                          20.0) == "fail"
    assert M.tick_verdict({**ok, "tick_gap_p99_ci_hi_ms": 80.0}, 20.0) == "unsure"
    assert M.tick_verdict({}, 20.0) is None  # recorded before the players' ticks were


def test_the_tick_threshold_is_bracketed_by_passing_and_failing_points():
    p = M.Params((0.01, 0.0), None, None, True, (0.0, 0.0, 0.0, 1.0), False)
    obs = [_obs(50, "pass"), _obs(70, "pass"), _obs(80, "unsure"), _obs(90, "fail"),
           _obs(110, "fail"), _obs(60, None)]
    assert M.fit_ticks(obs, p) == (pytest.approx(0.7), pytest.approx(0.9))
    assert M.fit_ticks(obs[:2], p) == (pytest.approx(0.7), pytest.approx(0.7))  # censored
    assert M.fit_ticks([_obs(60, None)], p) is None


def test_the_tick_term_bounds_host_stamps_before_the_loss_limit():
    """ρ = N·0.01 on one core: ticks end past ρ_tick 0.8 (N = 80), the loss limit at
    x* 0.9 (N = 90) stays the second bound, and guest stamps end there too."""
    game = M.Game("g", 20.0, 4, 20.0, 1000.0, 0.01, 50.0, (0.0, 0.0))
    p = M.Params((0.01, 0.0), None, 0.9, False, (0.0, 0.0, 0.0, 1.0), False,
                 rho_tick=0.8, tick_censored=False)
    t = M.Target(1.0)
    out = M.predict((p, []), game, t, 250)["modes"]
    assert out["host"]["capacity"] == 80 and out["host"]["limit"] == "ticks"
    assert out["guest"]["capacity"] == 80 and not out["host"]["at_least"]
    no_ticks = M.predict((dataclasses.replace(p, rho_tick=None), []), game, t, 250)["modes"]
    assert no_ticks["host"]["capacity"] == 90 and no_ticks["host"]["limit"] == "loss"
    censored = dataclasses.replace(p, tick_censored=True)
    assert M.predict((censored, []), game, t, 250)["modes"]["host"]["at_least"]


def _preds(rows: list[tuple[str, dict, dict]]) -> dict:
    """A predictions file's shape for the scorer: (case, model modes, baseline modes)."""
    return {"digest": "d", "top": 250, "cases": [
        {"case": {"name": n}, "modes": m, "baseline": b} for n, m, b in rows]}


def _iv(lo: int, hi: int | None, cap: float | None = None) -> dict:
    return {"lo": lo, "hi": hi, "capacity": cap if cap is not None else lo,
            "at_least": hi is None, "text": f"{lo}–{hi}"}


def test_a_mode_passes_only_on_overlap_width_and_beating_the_baseline():
    """The second check's registered pass rule (analysis/scorer.py verdict), per mode:
    3 of 4 rows overlap, every interval bounded within ±20%, the total error below the
    baseline's; each condition alone can fail it."""
    meas = {c: {"guest": _iv(lo, lo + 2)} for c, lo in
            (("a", 10), ("b", 20), ("c", 30), ("d", 40))}
    good = {c: {"guest": _iv(m["guest"]["lo"], m["guest"]["lo"] + 2,
                             m["guest"]["lo"] + 1)} for c, m in meas.items()}
    far = {c: {"guest": _iv(v["guest"]["lo"] + 5, v["guest"]["lo"] + 7)}
           for c, v in good.items()}
    ok = S.score(_preds([(c, good[c], far[c]) for c in meas]), meas)
    assert ok["verdict"]["guest"]["passes"] and ok["by_mode"]["guest"]["scored"] == 4
    # two rows that miss: 2 of 4 overlap
    two = S.score(_preds([(c, far[c] if c in "ab" else good[c], far[c]) for c in meas]),
                  meas)["verdict"]["guest"]
    assert two["overlaps"] == 2 and not two["passes"]
    # one interval too wide (10 ± 5 is ±50%)
    wide = dict(good, a={"guest": _iv(5, 15, 11)})
    w = S.score(_preds([(c, wide[c], far[c]) for c in meas]), meas)["verdict"]["guest"]
    assert w["overlaps"] == 4 and not w["within_width"] and not w["passes"]
    # a lower bound has no width, so it cannot pass the width rule
    lb = dict(good, a={"guest": _iv(11, None)})
    assert not S.score(_preds([(c, lb[c], far[c]) for c in meas]), meas)[
        "verdict"]["guest"]["within_width"]
    # the baseline as good as the model: not below it
    tie = S.score(_preds([(c, good[c], {"guest": _iv(good[c]["guest"]["lo"],
                                                     good[c]["guest"]["hi"])})
                          for c in meas]), meas)["verdict"]["guest"]
    assert not tie["beats_baseline"] and not tie["passes"]


def test_the_baseline_is_whole_core_capacity_per_guest_core_less_the_host_side():
    """Restricted: capacity per guest core × K; dynamic: every CPU less the host side's
    cores at the count itself, N = r·(CPUs − a − b·rate·N) solved for N."""
    game = M.Game("tsai2009", 20.0, 4, 20.0, 1000.0, 0.01, 50.0, (0.1, 1e-4))
    assert F.proportional(24.0, F.Case.parse("0.45"), game, 1) == 10
    assert F.proportional(24.0, F.Case.parse("0.8"), game, 1) == 19
    n = F.proportional(24.0, F.Case.parse("dynamic"), game, 1)
    exact = 24.0 * (2 - 0.1) / (1 + 24.0 * 1e-4 * 4 * 20)
    assert n == int(exact) and abs(24.0 * (2 - game.host_cores(exact)) - exact) < 1e-6


def test_the_second_check_is_scored_from_its_stored_files_by_its_registered_scorer():
    """benchmarks/model_check/second: the predictions, their frozen scorer and the
    held-out runs' measured intervals rescore to the check that was run (check.json,
    `gamebed predict --check`'s output), and the report states each mode's verdict
    from that registered scoring."""
    from analysis.modeltext import second_check_text

    c = F.second_check()
    stored = json.loads((F.SECOND_CHECK / "check.json").read_text())
    assert c["rows"] == stored["rows"] and c["verdict"] == stored["verdict"]
    assert c["total_abs_error"] == stored["total_abs_error"]
    assert c["scored_by"].startswith("the registered scorer predictions.scorer.py")
    text = second_check_text(c)
    for mode, v in c["verdict"].items():
        t = c["by_mode"][mode]
        assert (f"{mode} stamps {'pass' if v['passes'] else 'do not pass'} "
                f"({v['overlaps']} of {v['rows']} intervals overlap") in text
        assert f"total absolute error {t['model']:g} guests against the proportional " \
               f"baseline's {t['baseline']:g}" in text
