"""`gamebed predict`: capacity on other hosts from finished runs, the "hosts needed"
line, pre-registered predictions and the model check (no privileges).

Reads only finished runs' records (summary.json and each point's point.json,
cpu.json, guests.json: docs/records.md); the model is analysis/model.py.

- `forecast(runs, cases)`: each case's predicted capacity per mode, with its
  interval, and the proportional baseline beside it;
- `register(...)`: the same written as predictions.json with the model's digest, to
  be committed before any held-out run is measured;
- `check(predictions, measured)`: the model-check table: predicted beside measured
  capacity per case and mode, the error in guests and percent, the baseline's too,
  scored by the scorer registered with the predictions (`registered_scorer`: the
  frozen copy of analysis/scorer.py beside them, its digest checked).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType

from analysis import model as M
from analysis import modelruns as R
from analysis import scorer as S
from analysis.capacity import Sla, capacity_text, judge
from analysis.records import load_json
from gamebed.spec import MAX_GUESTS


@dataclass(frozen=True)
class Case:
    """A host to predict: K cores for the guests (restricted placement), or every CPU
    shared with the host side (`dynamic`)."""

    name: str
    cores: float
    placement: str = "restricted"

    @classmethod
    def parse(cls, text: str) -> Case:
        """`0.45`, `3`, or `dynamic` (every CPU of the calibration host, shared)."""
        if text == "dynamic":
            return cls("dynamic", 0.0, "dynamic")
        try:
            k = float(text)
        except ValueError:
            raise ValueError(f"a case is a number of guest cores (e.g. 0.45) or 'dynamic', "
                             f"not {text!r}") from None
        if not 0 < k <= 64:
            raise ValueError(f"a case's guest cores are in (0, 64], not {text!r}")
        return cls(f"{k:g}", k)


def run_summary(run: Path) -> dict:
    """A finished run's summary.json, or a FileNotFoundError that says what to give."""
    summary = load_json(Path(run) / "summary.json")
    if not summary or not summary.get("points"):
        raise FileNotFoundError(f"{run}: no summary.json with points; give a finished "
                                "`gamebed run` directory")
    return summary


def memory_mib() -> float:
    """This machine's memory (the default host to predict for)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return 0.0


def calibrate(runs: list[Path], sla: Sla | None = None
              ) -> tuple[list[M.Obs], M.Game, list[dict]]:
    """Every point of the calibration runs, their game and each run's recorded share;
    the game judged by `sla`'s delay and loss limits where given (else the runs')."""
    game = R.game_of(runs)
    if sla is not None:
        game = replace(game, sla_delay_us=sla.delay_us, sla_loss=sla.loss)
    obs, infos = [], []
    for i, r in enumerate(runs):
        o, info = R.observations(r, game, i)
        if info["spec"].get("profile") != game.profile or info["spec"].get("mix"):
            raise ValueError(f"{r}: calibration runs play one game, all the same "
                             f"({game.profile}), not a mix")
        obs += o
        infos.append({"dir": str(r), "share": round(info["share"], 4),
                      "share_how": info["share_how"],
                      "guest_cpus": info["spec"].get("guest_cpus"),
                      "placement": info["spec"].get("placement"),
                      "capacity": measured(r), "machine_speed": speed_of(r)})
    return obs, game, infos


def speed_of(run: Path) -> float | None:
    """The run's machine speed (summary.json: the guests' CPU ms per 1000 inputs at its
    lowest count), for telling the machine's drift from the model's error."""
    s = run_summary(run).get("machine_speed") or {}
    return s.get("guest_cpu_ms_per_1000_inputs")


def share_ratio(infos: list[dict]) -> float:
    """Recorded over asked share, over the budgeted calibration runs (1 where none)."""
    pairs = [(i["share"], i["guest_cpus"]) for i in infos
             if i["guest_cpus"] and i["share_how"].startswith("recorded")]
    return sum(s / k for s, k in pairs) / len(pairs) if pairs else 1.0


def target_of(case: Case, obs: list[M.Obs], infos: list[dict]) -> M.Target:
    if case.placement == "dynamic":  # every CPU: the guests' and the host side's
        return M.Target(0.0, "dynamic", cpus=max(o.cpus for o in obs) + 1)
    return M.Target(case.cores, k_ratio=share_ratio(infos) if case.cores < 1 else 1.0)


def measured(run: Path) -> dict:
    """A finished run's measured capacity per mode (the report's judge, its own SLA)."""
    summary = run_summary(run)
    _, cap = judge(summary["points"], Sla.of_run(summary["spec"]))
    return {m: {"lo": c["capacity"], "hi": c["capacity_hi"], "text": capacity_text(c),
                "largest": c["largest_measured"]} for m, c in cap.items()}


def baseline(case: Case, infos: list[dict], obs: list[M.Obs], game: M.Game) -> dict:
    """The naive model: the capacity the calibration run on whole guest CPUs
    (restricted, no budget) measured per guest core, times the guest cores the case
    gives: K restricted; under dynamic placement every CPU less the host side's cores
    at that count (the calibration's line in inputs/s, `Game.host_cores`)."""
    whole = [i for i in infos if not i["guest_cpus"] and i["placement"] == "restricted"]
    if not whole:
        return {}
    base_cores = max(o.cpus for o in obs if o.k == 1.0)
    out = {}
    for mode, c in whole[0]["capacity"].items():
        hi = None if c["hi"] is None else proportional(c["hi"] / base_cores, case,
                                                       game, base_cores)
        out[mode] = {"lo": proportional(c["lo"] / base_cores, case, game, base_cores),
                     "hi": hi, "at_least": hi is None}
    return out


def proportional(per_core: float, case: Case, game: M.Game, base_cores: int) -> int:
    """Guests at `per_core` guests per guest core on `case`.  Dynamic: N = per_core ·
    (CPUs − a − b·rate·N), the host side's cores taken at the count itself, solved for N."""
    if case.placement != "dynamic":
        return math.floor(per_core * case.cores + 1e-9)
    a, b = game.host_side
    cpus = base_cores + 1  # the calibration host's CPUs: the guests' and the host side's
    n = per_core * (cpus - a) / (1 + per_core * b * game.players * game.rate_hz)
    return max(0, math.floor(n + 1e-9))


def forecast(runs: list[Path], cases: list[Case], memory: float | None = None,
             top: int = MAX_GUESTS, paper: bool = False, sla: Sla | None = None) -> dict:
    """Each case's prediction per mode (interval, what limits it), the baseline, and the
    fitted model with its digest; with `paper`, how a guest's cost alone moves the
    paper setup's prediction (`paper_sensitivity`, on the same fit); under `sla`'s
    delay and loss limits where given, else the runs' own."""
    for r in runs:
        run_summary(r)
    obs, game, infos = calibrate(runs, sla)
    mem = memory or memory_mib()
    top = min(top, M.memory_limit(game, mem))
    out = {"model_version": M.MODEL_VERSION, "game": asdict(game), "calibration": infos,
           "memory_mib": round(mem), "top": top, "cases": []}
    fits = M.bootstrap(obs, game)
    out["params"] = asdict(fits[0])
    for case in cases:
        t = target_of(case, obs, infos)
        pred = M.predict(fits, game, t, top)
        out["cases"].append({"case": asdict(case), "target": asdict(t),
                             "modes": pred["modes"],
                             "baseline": baseline(case, infos, obs, game)})
    if paper:
        out["paper"] = paper_sensitivity(fits[0], game, target_of(PAPER_CASE, obs, infos), top)
    out["digest"] = M.digest(out["params"], [json.dumps(i, sort_keys=True) for i in infos])
    return out


def hosts_needed(players_total: int, players_per_guest: int, cap: dict) -> dict:
    """Hosts for `players_total` players at a predicted capacity {capacity, lo, hi}:
    the point figure and its interval (fewest hosts at the interval's top)."""
    def hosts(n: int) -> int | None:
        return math.ceil(players_total / (players_per_guest * n)) if n > 0 else None
    return {"hosts": hosts(cap["capacity"]), "lo": hosts(cap["hi"]), "hi": hosts(cap["lo"]),
            "guests": math.ceil(players_total / players_per_guest),
            # a capacity that is a lower bound makes the hosts an upper bound
            "at_most": bool(cap.get("at_least"))}


def hosts_text(h: dict) -> str:
    text = f"{h['hosts']} ({h['lo']}–{h['hi']})"
    return f"≤ {text}" if h["at_most"] else text


def interval_text(c: dict) -> str:
    text = f"{c['capacity']} ({c['lo']}–{c['hi']})"
    return f"≥ {text}" if c.get("at_least") else text


def forecast_lines(f: dict, players_total: int | None = None) -> list[str]:
    """The prediction as text: per case and mode, and the hosts-needed line."""
    g, p = f["game"], f["params"]
    lines = [f"model {f['digest']}: {g['profile']}, calibrated on "
             + ", ".join(f"{Path(i['dir']).name} (share {i['share']:g}, {i['share_how']})"
                         for i in f["calibration"]),
             f"cost per guest: {1e3 * p['d'][0]:.2f} + {1e6 * p['d'][1]:.2f}e-3·N ms of CPU "
             f"per s at {g['tick_hz']:g} Hz; per tick "
             + (f"{1e3 * p['c_tick']:.2f} ms" if p["c_tick"] else "unknown")
             + f"; memory {g['pss_mib']:g} MiB per guest"]
    for c in f["cases"]:
        modes = c["modes"]
        lines.append(f"{c['case']['name']} guest cores ({c['case']['placement']}): "
                     + "; ".join(f"{m} stamps {interval_text(v)}, limited by {v['limit']}"
                                 for m, v in sorted(modes.items())))
        if players_total:
            for m, v in sorted(modes.items()):
                h = hosts_needed(players_total, g["players"], v)
                lines.append(f"  hosts needed for {players_total} players, {m} stamps: "
                             f"{hosts_text(h)}, {h['guests']} guests of "
                             f"{g['players']} players")
    return lines


def own_case(run: Path) -> Case:
    """The host a run measured: its guest-CPU budget, its placement."""
    spec = run_summary(run)["spec"]
    if spec.get("placement") == "dynamic":
        return Case("dynamic", 0.0, "dynamic")
    return Case("this host", float(spec.get("guest_cpus") or 1.0))


PAPER_CASE = Case("3 (the paper's)", 3.0)  # Tsai 2009, 6.6.1: dom0 on 1 core, guests on 3
PAPER_CAPACITY = {"guest": 30, "host": 44}


def report_model(run: Path, players_total: int, sla: Sla | None = None) -> dict:
    """The report's model section: the run's own host and the paper's, predicted from the
    run alone under the report's SLA `sla` (else the run's), with the hosts needed for
    `players_total` players; or why not.  The model predicts the mean delay under the
    players' terms (its tick limit: docs/model.md), so other terms get no section."""
    if sla is not None and (sla.stat != "mean" or sla.terms != "players"):
        return {"error": f"the model predicts the mean delay under the players' terms; "
                         f"this report's SLA is the {sla.stat} delay under the {sla.terms}' "
                         "terms (report again without --sla-stat / --sla-terms for it)"}
    try:
        f = forecast([Path(run)], [own_case(run), PAPER_CASE], paper=True, sla=sla)
    except (ValueError, KeyError, FileNotFoundError) as e:
        return {"error": str(e)}
    players = f["game"]["players"]
    for c in f["cases"]:
        c["hosts"] = {m: hosts_needed(players_total, players, v) for m, v in c["modes"].items()}
    f["players_total"] = players_total
    f["sla"] = {"delay_ms": f["game"]["sla_delay_us"] / 1000.0, "loss": f["game"]["sla_loss"]}
    f["first_check"] = first_check()
    f["second_check"] = second_check()
    return f


FIRST_CHECK = Path(__file__).resolve().parents[1] / "benchmarks/model_check/registered_scorer.py"


def first_check() -> dict | None:
    """The first held-out check of the model, scored by its registered scorer (a frozen
    copy beside predictions.json) and by the rules changed after registration; None
    where this install has no benchmarks/ folder."""
    if not FIRST_CHECK.exists():
        return None
    spec = importlib.util.spec_from_file_location("registered_scorer", FIRST_CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.first_check()


SECOND_CHECK = FIRST_CHECK.parent / "second"


def second_check() -> dict | None:
    """The second held-out check, scored from the stored files alone by the scorer
    registered with its predictions (its frozen copy, digest checked): predictions.json
    and the held-out runs' measured intervals, measured.json; None where this install
    has no benchmarks/ folder or the check has not been measured."""
    pred_path, meas_path = SECOND_CHECK / "predictions.json", SECOND_CHECK / "measured.json"
    if not (pred_path.exists() and meas_path.exists()):
        return None
    predictions = json.loads(pred_path.read_text())
    scorer = registered_scorer(pred_path, predictions)
    out = scorer.module.score(predictions, json.loads(meas_path.read_text()))
    out["scored_by"] = scorer.label
    return out


SCORER = Path(S.__file__)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def register(f: dict, path: Path) -> Path:
    """predictions.json: every predicted interval and the model's digest, to commit
    before any held-out run is measured, with its provenance (the commit and whether
    the tree was dirty, the sha256 of the model's code, of its reading of runs and of
    the scorer's code) and a frozen
    copy of the scorer beside it (`<stem>.scorer.py`), which --check scores with."""
    from gamebed.sweep import provenance

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frozen = path.with_name(f"{path.stem}.scorer.py")
    shutil.copyfile(SCORER, frozen)
    f = {**f, "provenance": {**provenance(), "model_sha256": sha256(Path(M.__file__)),
                             "model_runs_sha256": sha256(Path(R.__file__)),
                             "scorer_file": frozen.name, "scorer_sha256": sha256(frozen)}}
    path.write_text(json.dumps(f, indent=1, sort_keys=True) + "\n")
    return path


@dataclass(frozen=True)
class Scorer:
    """The rules a check is scored by, and how they were found."""

    module: ModuleType
    label: str
    registered: bool


def registered_scorer(path: Path, predictions: dict) -> Scorer:
    """The scorer registered with the predictions at `path`: its frozen copy, checked
    against the digest the predictions recorded.  Predictions registered without one
    are scored by today's scorer, and the label says so."""
    prov = predictions.get("provenance")
    if not prov:
        return Scorer(S, f"today's scorer ({SCORER.name}, sha256 {sha256(SCORER)[:16]}): "
                         "these predictions registered none", False)
    frozen = Path(path).parent / prov["scorer_file"]
    if not frozen.exists() or sha256(frozen) != prov["scorer_sha256"]:
        raise ValueError(f"{frozen} is not the scorer registered with {path} (sha256 "
                         f"{prov['scorer_sha256'][:16]}): restore it from the commit "
                         f"{prov.get('commit') or '?'}")
    spec = importlib.util.spec_from_file_location(f"registered_{frozen.stem}", frozen)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Scorer(module, f"the registered scorer {frozen.name} (sha256 "
                          f"{prov['scorer_sha256'][:16]}, registered at commit "
                          f"{(prov.get('commit') or '?')[:12]}"
                          f"{', dirty tree' if prov.get('dirty') else ''})", True)


def check(predictions: dict, measured_runs: dict[str, Path], scorer: Scorer | None = None
          ) -> dict:
    """The model check: each held-out run's measured capacity per mode, scored against
    the predictions by `scorer` (analysis/scorer.py's rules where none is given)."""
    rules = scorer.module if scorer else S
    names = {c["case"]["name"] for c in predictions["cases"]}
    measured_ = {n: measured(r) for n, r in measured_runs.items() if n in names}
    out = rules.score(predictions, measured_)
    # not a scoring rule: how far the machine moved between calibration and each run
    out["machine_speed"] = {
        "calibration": [i.get("machine_speed") for i in predictions["calibration"]],
        "held_out": {n: speed_of(r) for n, r in measured_runs.items() if n in names}}
    out["scored_by"] = scorer.label if scorer else f"today's scorer ({SCORER.name})"
    return out


CHECK_HEAD = ["case", "mode", "predicted", "measured", "overlap", "error (guests)",
              "error %", "baseline", "baseline error", "baseline error %", "± width %"]


def check_lines(ch: dict) -> list[str]:
    """The model-check table in markdown, and the totals."""
    out = ["| " + " | ".join(CHECK_HEAD) + " |", "|" + "---|" * len(CHECK_HEAD)]
    for r in ch["rows"]:
        out.append("| " + " | ".join(str(r[k]) if r[k] is not None else "–" for k in (
            "case", "mode", "predicted", "measured", "overlap", "error", "error_pct",
            "baseline", "baseline_error", "baseline_error_pct", "width_pct")) + " |")
    t = ch["total_abs_error"]
    out.append(f"\nScored by {ch['scored_by']}.")
    out.append(f"Total absolute error over the rows both can be scored on: model "
               f"{t['model']:g} guests, proportional baseline {t['baseline']:g} guests "
               f"(model {ch['digest']}). –: a lower bound beside a lower bound, no error "
               "to take.")
    for mode, v in (ch.get("verdict") or {}).items():
        t = ch["by_mode"][mode]
        out.append(f"{mode} stamps: {'PASSES' if v['passes'] else 'does not pass'}: "
                   f"{v['overlaps']} of {v['rows']} overlap (needs {v['overlaps_needed']}); "
                   f"every interval within ±{v['width_pct_max']:g}%: "
                   f"{'yes' if v['within_width'] else 'no'}; "
                   f"total error {t['model']:g} against the baseline's {t['baseline']:g} "
                   f"over {t['scored']} rows")
    sp = ch.get("machine_speed")
    if sp:
        out.append("Machine speed (guests' CPU ms per 1000 inputs at the lowest count; the "
                   "intervals do not carry it): calibration "
                   + ", ".join("–" if v is None else f"{v:g}" for v in sp["calibration"])
                   + "; held out " + ", ".join(f"{n} {'–' if v is None else f'{v:g}'}"
                                               for n, v in sp["held_out"].items()))
    return out


def paper_sensitivity(p: M.Params, game: M.Game, t: M.Target, top: int) -> dict:
    """How far the cost of a guest alone moves the paper setup's prediction (`t`):
    capacity at 1, 1.5, 2 and 3 times the measured cost, and the cost factor at which
    each mode would come down to the paper's figure. That factor is a one-parameter fit
    per mode to the paper's figure (`cost_ratio_for` searches for it), not a prediction."""
    out = {"by_factor": {f"{f:g}": M.capacities(M.scaled(p, f), game, t, top)
                         for f in (1.0, 1.5, 2.0, 3.0)}}
    out["factor_for_paper"] = {m: M.cost_ratio_for(p, game, t, m, want, top)
                               for m, want in PAPER_CAPACITY.items()}
    return out
