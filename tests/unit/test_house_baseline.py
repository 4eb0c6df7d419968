"""The house refactor keeps behaviour: `gamebed report` on three stored runs writes the
same capacity.csv and summary.json, byte for byte (points.csv too, but for its renamed
input-count columns), and the main job's dry run prints the
same commands (run prefix and checkout path masked).  Recorded by tests/house_baseline.py."""

import re
import shutil

import pytest

from gamebed.cli import main
from tests.house_baseline import DATA, DRY_RUNS, RUNS, dry_run

# points.csv columns renamed by the refactor (one name per figure: summary.json's)
RENAMED = {k: f"inputs_{k}" for k in ("sent", "delivered", "lost", "lost_fault", "host_logged",
                                      "lost_network", "lost_host", "reordered")}
# UML guests' cgroups and work directories are per guest, no longer per count (a testbed
# grows and shrinks): gbX-u4g1 is gbX-ug1, .../gbX/uml-g004/g1/ is .../gbX/uml/g1/
PER_GUEST = [(r"-u\d+g(\d+)\b", r"-ug\1"), (r"/uml-g\d{3}/g(\d+)/", r"/uml/g\1/")]


@pytest.mark.parametrize("name", RUNS)
def test_report_on_a_stored_run_writes_the_same_files(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(DATA / name, run)
    assert main(["report", str(run)]) == 0
    for f in ("capacity.csv", "summary.json"):
        assert (run / f).read_bytes() == (DATA / name / f).read_bytes(), f
    # points.csv: the same bytes once its input counts take summary.json's names
    old_head, _, old_rows = (DATA / name / "points.csv").read_text().partition("\n")
    head, _, rows = (run / "points.csv").read_text().partition("\n")
    assert rows == old_rows
    assert head.split(",") == [RENAMED.get(c, c) for c in old_head.split(",")]


@pytest.mark.parametrize("backend", sorted(DRY_RUNS))
def test_the_main_jobs_dry_run_prints_the_same_commands(backend, tmp_path, monkeypatch):
    import vm

    # auto resolves by what is installed; pin each backend so the text is this machine's
    monkeypatch.setattr(vm, "uml_prerequisites", lambda: None)
    want = (DATA / f"dry-run-{backend}.txt").read_text()
    for old, new in PER_GUEST:
        want = re.sub(old, new, want)
    assert dry_run(backend, tmp_path / "out") == want


@pytest.mark.parametrize("name", RUNS)
def test_each_points_summary_entry_is_derived_again_the_same(name):
    import json

    from analysis.point import point_summary

    run = DATA / name
    for p in json.loads((run / "summary.json").read_text())["points"]:
        again = point_summary(run / p["dir"])
        assert again == {k: v for k, v in p.items()
                         if k not in ("mode", "guests", "repeat", "dir")}, p["dir"]


@pytest.mark.parametrize("name", RUNS)
def test_one_judge_for_report_and_search(name, tmp_path):
    """The search judges summary.json's entries, the report points.csv's rows: with one
    name per figure the same judge gives the same capacities."""
    import json

    import pandas as pd

    from analysis.capacity import Sla, judge

    summary = json.loads((DATA / name / "summary.json").read_text())
    sla = Sla.of_run(summary["spec"])
    from_summary = judge(summary["points"], sla)[1]
    run = tmp_path / name
    shutil.copytree(DATA / name, run)
    assert main(["report", str(run)]) == 0
    from_rows = judge(pd.read_csv(run / "points.csv"), sla)[1]
    assert from_summary == from_rows
    assert sla.share == ("host" if name == "wan" else "client")
