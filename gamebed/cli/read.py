"""The `gamebed` commands that read finished runs (no root): report, predict, pcap."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gamebed.cli.options import Option, add_options, add_profile_arg, add_sla_args, command


def cmd_report(a: argparse.Namespace) -> int:
    """analyse a results directory, or compare several (no root)

    Recompute statistics, capacity and plots from raw records only. With two or more
    directories: a comparison (capacity per run and mode, delay per point with CIs,
    differences to the first run) in --out.
    """
    from analysis.capacity import SlaTerms

    terms = SlaTerms(a.sla_delay_ms, a.sla_stat, a.sla_loss, a.sla_terms)
    if len(a.dir) > 1:
        from analysis.compare import write_comparison

        paths = write_comparison(a.dir, a.out or Path("comparison"), terms,
                                 a.allow_load_difference, a.allow_kernel_difference)
    else:
        from analysis.report import write_report

        paths = write_report(a.dir[0], terms, a.players_total)
    print(paths["md"].read_text())
    print(f"report: {paths['html']}", file=sys.stderr)
    return 0

def cmd_predict(a: argparse.Namespace) -> int:
    """capacity on other hosts, from finished runs alone (no root)

    Calibrates the capacity model (docs/model.md) on the runs' own records: each guest's
    CPU cost at its tick rate and the part it cannot shed, the CPU the guests actually
    had, and how the mean delay grew with their CPU's utilisation. Then predicts each
    mode's capacity, with an interval, on hosts with other guest-CPU budgets, and the
    hosts needed for a player count. --register writes the prediction as a file to
    commit before measuring, with its commit, the digests of the model's and the
    scorer's code and a frozen copy of the scorer; --check sets it beside measured
    runs and scores them with that copy.
    """
    from analysis import forecast as F

    if a.check:
        if a.runs:
            raise ValueError("--check reads the predictions and the --measured runs; give "
                             "no calibration runs with it")
        predictions = json.loads(a.check.read_text())
        scorer = F.registered_scorer(a.check, predictions)
        ch = F.check(predictions, dict(a.measured or []), scorer)
        if not ch["rows"]:
            raise ValueError("no --measured run matches a case of the predictions: give "
                             "CASE=DIR with CASE as the predictions name it")
        print("\n".join(F.check_lines(ch)))
        if a.later_rules and scorer.registered:  # beside the registered result, labelled
            later = F.check(predictions, dict(a.measured or []))
            print("\nLater reading, NOT the registered result: the same measurements "
                  "scored by today's rules (analysis/scorer.py):")
            print("\n".join(F.check_lines(later)))
            ch["later_reading"] = later
        if a.json:
            a.json.write_text(json.dumps(ch, indent=1) + "\n")
        return 0
    if not a.runs:
        raise ValueError("give one or more finished run directories to calibrate on")
    played = {F.run_summary(r)["spec"].get("profile") for r in a.runs}
    cases = a.guest_cpus or [F.own_case(a.runs[0])]
    if a.profile:
        if played != {a.profile}:
            raise ValueError(f"--profile {a.profile}: the runs played {sorted(map(str, played))}"
                             f"; calibrate on runs of {a.profile} (gamebed run --profile "
                             f"{a.profile})")
    f = F.forecast(a.runs, cases, a.memory_gib * 1024 if a.memory_gib else None)
    print("\n".join(F.forecast_lines(f, a.players_total)))
    if a.register:
        print(f"registered: {F.register(f, a.register)} (commit it before measuring)",
              file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(f, indent=1) + "\n")
    return 0

def cmd_pcap(a: argparse.Namespace) -> int:
    """a captured point's uplink frames as pcapng (no root)

    Write POINT_DIR/capture.pcapng from the uplink.cap of a point run with --capture: every
    frame with its kernel arrival stamp to the ns, player inputs commented with guest,
    player, seq, server stamp, delay, stamp error.
    """
    from analysis.pcap import write_pcapng

    for d in a.point_dir:
        print(json.dumps(write_pcapng(d)))
    return 0

def case_list(text: str) -> list:
    """--guest-cpus: comma-separated guest cores (0.45, 3) or `dynamic`."""
    from analysis.forecast import Case

    try:
        return [Case.parse(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None

def measured_arg(text: str) -> tuple[str, Path]:
    case, sep, path = text.partition("=")
    if not sep or not case or not path:
        raise argparse.ArgumentTypeError(f"--measured is CASE=DIR, not {text!r}")
    return case, Path(path)

def add_report(sub) -> None:
    p = command(sub, "report", cmd_report)
    p.add_argument("dir", type=Path, nargs="+", help="results directories (of `gamebed run`)")
    p.add_argument("--out", type=Path,
                   help="where a comparison goes (default ./comparison)")
    p.add_argument("--allow-load-difference", action="store_true",
                   help="compare runs whose load (players, rate, duration, seed) differs")
    p.add_argument("--allow-kernel-difference", action="store_true",
                   help="compare runs whose guests ran different kernels or UML modes "
                        "(to compare the kernels themselves)")
    add_sla_args(p, of_report=True)
    p.add_argument("--players-total", type=int, metavar="N", default=10000,
                   help="the capacity model's hosts-needed line: hosts for N concurrent "
                        "players (default %(default)s; 0: no model section)")

PREDICT_OPTIONS = (
    Option("--guest-cpus", "hosts to predict: guest cores each (0.45: a share of one CPU; "
           "3: three CPUs), or dynamic (every CPU, shared with the host side); default: the "
           "first run's own host", case_list, "K[,K...]"),
    Option("--players-total", "also print the hosts needed for N concurrent players, per "
           "mode", int, "N"),
    Option("--memory-gib", "the predicted host's memory (default: this machine's); guests "
           "beyond it at their measured PSS do not fit", float, "GIB"),
    Option("--register", "write the predictions (every interval, the model's digest) to "
           "FILE, e.g. predictions.json, to commit before measuring", Path, "FILE"),
    Option("--json", "also write the result as JSON", Path, "FILE"),
    Option("--check", "the model check: a registered predictions file beside --measured "
           "runs (no calibration runs), scored by the scorer registered with it (its "
           "frozen copy beside it, digest checked)", Path, "PREDICTIONS"))


def add_predict(sub) -> None:
    p = command(sub, "predict", cmd_predict)
    p.add_argument("runs", type=Path, nargs="*", metavar="RUN",
                   help="finished `gamebed run` directories of one game to calibrate on "
                        "(e.g. one with whole guest CPUs and one with --guest-cpus 0.6)")
    add_options(p, PREDICT_OPTIONS[:1])
    add_profile_arg(p)
    add_options(p, PREDICT_OPTIONS[1:])
    p.add_argument("--later-rules", action="store_true",
                   help="with --check: also show the same measurements scored by today's "
                        "rules, labelled as a later reading, after the registered result")
    p.add_argument("--measured", type=measured_arg, action="append", metavar="CASE=DIR",
                   help="with --check: the run that measured CASE (as the predictions name "
                        "it, e.g. 0.45=results/k045); repeatable")

def add_pcap(sub) -> None:
    p = command(sub, "pcap", cmd_pcap)
    p.add_argument("point_dir", type=Path, nargs="+")
