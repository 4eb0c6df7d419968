"""What tests/vm/test_cgroup_v2.py checks of the runs made inside its cgroup-v2 VM, read
there and written as one JSON object on stdout (no privileges beyond reading cgroups):

    python -m tests.support.v2check RUN_DIR [RUN_DIR ...]

Per run: its exit status file's verdict is the caller's; here, the hierarchy and the
delegation point.json names, every point's lost inputs and host-stamp exactness, the
budget cpu.json recorded, and what the leak check finds of the run's prefix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gamebed.leaks import leftovers


def one_run(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    points = summary["points"]
    first = json.loads((run / points[0]["dir"] / "point.json").read_text())
    budgets = [json.loads((run / p["dir"] / "cpu.json").read_text()).get("budget")
               for p in points]
    return {"cgroups": first["environment"].get("cgroups"),
            "modes": [p["mode"] for p in points],
            "lost": [p["inputs_lost"] for p in points],
            "sent": [p["inputs_sent"] for p in points],
            "host_exact": [p["host_stamp_exact_fraction"] for p in points
                           if p["mode"] == "host"],
            "budgets": budgets,
            "leftovers": {k: v for k, v in leftovers(summary["prefix"]).items() if v}}


def main(argv: list[str]) -> int:
    out = {Path(a).name: one_run(Path(a)) for a in argv}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
