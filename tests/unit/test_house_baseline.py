"""The house refactor keeps behaviour: `gamebed report` on three stored runs writes the
same capacity.csv and points.csv, byte for byte, and the main job's dry run prints the
same commands (run prefix and checkout path masked).  Recorded by tests/house_baseline.py."""

import shutil

import pytest

from gamebed.cli import main
from tests.house_baseline import DATA, DRY_RUNS, RUNS, dry_run


@pytest.mark.parametrize("name", RUNS)
def test_report_on_a_stored_run_writes_the_same_files(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(DATA / name, run)
    assert main(["report", str(run)]) == 0
    for f in ("capacity.csv", "points.csv", "summary.json"):
        assert (run / f).read_bytes() == (DATA / name / f).read_bytes(), f


@pytest.mark.parametrize("backend", sorted(DRY_RUNS))
def test_the_main_jobs_dry_run_prints_the_same_commands(backend, tmp_path, monkeypatch):
    import vm

    # auto resolves by what is installed; pin each backend so the text is this machine's
    monkeypatch.setattr(vm, "uml_prerequisites", lambda: None)
    assert dry_run(backend, tmp_path / "out") == (DATA / f"dry-run-{backend}.txt").read_text()
