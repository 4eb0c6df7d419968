"""Behaviour the house refactor must keep (no privileges): the main job's dry run, and
`gamebed report` on four stored runs (tests/data/house/, netns, 10 s points, 2 players
per guest, seed 1), recorded again on the code before the third pass (f2e2f50) so
that their counts pass and fail (before, at 3 s a point, every count was unsure):

    plain    --guests 1,2                        both modes pass at 1 and 2
    wan      --guests 1,2 --wan "delay 5ms 1ms"  both pass, judged on the host's share
    repeat   --guests 1,2 --repeat 2 --sla-delay-ms 0.018   both fail at 1 (delay)
    mix      --guests 2,3 --spec mix/spec.toml --mix tsai2009:1,small64:1
             --wan "delay 5ms 1ms" (the profiles' own players)

    python -m tests.house_baseline --record           # write the expected dry runs
    python -m tests.house_baseline --record-reports   # the stored runs' summary entries,
                                                      # capacity.csv and points.csv again

tests/unit/test_house_baseline.py checks both against what is recorded.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "house"
RUNS = ("plain", "wan", "repeat", "mix")
# the main job's dry run, per backend it can resolve to
DRY_RUNS = {"uml": ["run", "--dry-run", "--backend", "uml", "--fresh-guests"],
            "netns": ["run", "--dry-run", "--backend", "netns", "--fresh-guests"]}


def masked(text: str, out: Path) -> str:
    """A dry run's text without what differs between runs and clones: the run prefix,
    the results directory and the checkout's path."""
    text = re.sub(r"gb[0-9a-f]{6}", "gbPREFIX", text.replace(str(out), "OUT"))
    return text.replace(str(ROOT), "ROOT")


def dry_run(backend: str, out: Path, layout: str = "hybrid") -> str:
    """The main job's dry run as a host with this cgroup layout prints it (the stored
    ones: this machine kind's, v1 controllers beside an empty cgroup2 mount)."""
    from gamebed.cgroups import pinned_layout
    from gamebed.cli import main
    from tests.support import cgroup_layout

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pinned_layout(cgroup_layout(layout)):
        rc = main([*DRY_RUNS[backend], "--out", str(out)])
    if rc != 0:
        raise RuntimeError(f"dry run {backend} exited {rc}")
    return masked(buf.getvalue(), out)


def record() -> None:
    import tempfile

    for backend in DRY_RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            (DATA / f"dry-run-{backend}.txt").write_text(dry_run(backend, Path(tmp) / "out"))


def record_reports() -> None:
    """Each stored run's summary.json entries derived again from its raw records (the
    run's own fields kept), and its capacity.csv and points.csv from `gamebed report`:
    for when a figure changes on purpose (say so in tests/unit/test_house_baseline.py)."""
    import json
    import shutil
    import tempfile

    from analysis.point import point_summary
    from fpsmodel.records import write_json
    from gamebed.cli import main

    for name in RUNS:
        run = DATA / name
        s = json.loads((run / "summary.json").read_text())
        for p in s["points"]:
            again = point_summary(run / p["dir"])
            keep = {k: p[k] for k in ("mode", "guests", "repeat", "dir") if k in p}
            rest = {k: v for k, v in p.items() if k not in again and k not in keep}
            p.clear()
            p.update({**keep, **again, **rest})
        write_json(run / "summary.json", s)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / name
            shutil.copytree(run, copy)
            with contextlib.redirect_stdout(io.StringIO()):
                if main(["report", str(copy)]) != 0:
                    raise RuntimeError(f"report on {name} failed")
            for f in ("capacity.csv", "points.csv"):
                shutil.copy(copy / f, run / f)


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
    elif sys.argv[1:] == ["--record-reports"]:
        record_reports()
    else:
        print(__doc__)
