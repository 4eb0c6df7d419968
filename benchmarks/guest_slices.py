"""On which schedulers do host stamps matter?  The main job at the kernel's default
slice, at 30 ms (Xen credit's) and at 1 ms, twice each, the mode order balanced
(guest stamps first in the first run of each slice, host stamps first in the second),
the runs interleaved by slice; then per run, under both SLAs (the players' and the
paper's terms), the capacities and the host/guest ratio (of the intervals' lower
ends), and per count the guest-stamp error beside the guests' run-queue wait per
wake-up (docs/schedulers.md).

    python benchmarks/guest_slices.py OUT_DIR            # root; 6 main jobs, ~30 min here
    python benchmarks/guest_slices.py OUT_DIR --table    # the table of runs already made

Measure alone: nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.capacity import Sla, capacity_text, judge  # noqa: E402
from analysis.capacitytext import ratio_text  # noqa: E402
from analysis.waits import wait_figures  # noqa: E402

SLICES = (None, 30.0, 1.0)  # None: the kernel's default
ORDERS = ("guest,host", "host,guest")


def run_name(ms: float | None, order: str) -> str:
    return f"slice-{'default' if ms is None else f'{ms:g}ms'}-{order.split(',')[0]}-first"


def measure(out: Path, gamebed: list[str]) -> None:
    """The six runs, one at a time: every slice once per mode order."""
    for order in ORDERS:
        for ms in SLICES:
            d = out / run_name(ms, order)
            if (d / "summary.json").exists():
                continue
            args = [*gamebed, "run", "--modes", order, "--out", str(d), "--no-report"]
            args += [] if ms is None else ["--guest-slice-ms", f"{ms:g}"]
            print("==", " ".join(args), file=sys.stderr, flush=True)
            subprocess.run(args, check=True)


def row(d: Path) -> dict:
    """One run's figures: capacities and ratio under both SLAs, waits per count."""
    s = json.loads((d / "summary.json").read_text())
    out = {"run": d.name, "slice_ms": s["spec"].get("guest_slice_ms")}
    for terms in ("players", "paper"):
        _, cap = judge(s["points"], Sla.of_run(s["spec"]).with_terms(terms))
        for m, c in cap.items():
            out[f"{terms}_{m}"] = capacity_text(c)
        out[f"{terms}_ratio"] = ratio_text(cap).split(" (")[0]
    w = wait_figures(pd.DataFrame(s["points"]))
    out["r"] = None if w is None or w.correlation is None else round(w.correlation, 3)
    for r in (w.rows if w else ()):
        out[f"g{r.guests}"] = (f"{r.stamp_error_mean_us:.0f} / {r.wait_per_wake_us:.0f} µs"
                               f" ({r.ratio:.2f})" if r.ratio else "–")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--table", action="store_true", help="only the table of runs made")
    ap.add_argument("--gamebed", default=".venv/bin/gamebed")
    a = ap.parse_args(argv)
    if not a.table:
        measure(a.out, a.gamebed.split())
    runs = sorted(d for d in a.out.iterdir() if (d / "summary.json").exists())
    if not runs:
        print(f"no finished runs in {a.out}: run without --table first", file=sys.stderr)
        return 2
    rows = [row(d) for d in runs]
    head = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join("–" if r.get(k) is None else str(r[k]) for k in head) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
