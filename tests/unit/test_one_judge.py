"""The search and the report judge the same record (issue 48): each point's figures as
the sweep stored them (figures.json), never summary.json's rounded entries on one side
and a fresh analysis on the other.  Over every point of the two main jobs of
docs/results.md ("issue 48's runs on d6653a7"; tests/data/noisy/: their summary.json
and each point's point.json and figures.json; the raw records are left out for size),
under both terms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.capacity import Sla, judge
from analysis.point import stored_figures
from analysis.report import analyze

DATA = Path(__file__).resolve().parents[1] / "data" / "noisy"
RUNS = sorted(p.name for p in DATA.iterdir()) if DATA.is_dir() else []
COLUMNS = ["mode", "guests", "verdict", "failed_terms", "reason"]


@pytest.mark.unit
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("terms", ["players", "paper"])
def test_the_search_and_the_report_agree_on_every_point(run: str, terms: str):
    out = DATA / run
    summary = json.loads((out / "summary.json").read_text())
    sla = Sla.of_run(summary["spec"]).with_terms(terms)
    rows = stored_figures(out, summary["points"])
    assert all("delay_mean_ci_lo_us" in r and "loss_ci_hi" in r for r in rows)
    searched, caps_searched = judge(rows, sla)
    df, _, _ = analyze(out)
    reported, caps_reported = judge(df, sla)
    assert len(searched) == len({(p["mode"], p["guests"]) for p in summary["points"]})
    assert searched[COLUMNS].equals(reported[COLUMNS])
    assert caps_searched == caps_reported


@pytest.mark.unit
def test_the_stored_runs_are_there():
    """Two main jobs of this machine kind, as docs/results.md gives them."""
    assert len(RUNS) == 2, RUNS
