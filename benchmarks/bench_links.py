"""How long guests take to come up, and how long a run waits between loads, per checkout:
the figures the per-guest links, addresses and neighbour entries weigh on (forks of
`ip` before, netlink requests since: gamebed/netlink.py).

For each run and each checkout in turn (interleaved, so drift hits both alike): one
`gamebed run --guests N --repeat 2 --duration D` on each backend asked for, which
boots N guests at once (summary.json build_s) and plays four points; the gaps between
loads are each next point's client start less the last one's client end
(phases.json).  Before the first run, every checkout plays one short warm-up point
(its BPF objects built, its caches filled), not counted.

Prints one JSON line per run (checkout, backend, boot_s, gaps_s) and then, per
checkout and backend, the median boot and gap over runs and their range.

Root; with the defaults (48 guests, uml and netns, 2 runs, 2 checkouts) about 12
minutes.  Nothing else may run meanwhile.
Usage: python benchmarks/bench_links.py --checkouts DIR[,DIR...] [--backends uml,netns]
       [--guests 48] [--runs 2] [--duration 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(checkout: Path, backend: str, guests: int, duration: float, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    args = [sys.executable, "-m", "gamebed", "run", "--backend", backend, "--guests",
            str(guests), "--repeat", "2", "--duration", f"{duration:g}", "--out", str(out),
            "--overwrite", "--no-report"]
    subprocess.run(args, cwd=checkout, env=env, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    phases = sorted((json.loads((out / p["dir"] / "phases.json").read_text())
                     for p in summary["points"]), key=lambda ph: ph["client_start"])
    gaps = [(b["client_start"] - a["client_done"]) / 1e9
            for a, b in zip(phases, phases[1:], strict=False)]
    return {"checkout": str(checkout), "backend": backend, "guests": guests,
            "boot_s": summary["build_s"][str(guests)], "gaps_s": [round(g, 2) for g in gaps]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkouts", required=True, help="comma-separated checkout directories")
    p.add_argument("--backends", default="uml,netns")
    p.add_argument("--guests", type=int, default=48)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    checkouts = [Path(c).resolve() for c in a.checkouts.split(",")]
    backends = a.backends.split(",")
    out = a.out or Path(tempfile.mkdtemp(prefix="bench-links-"))
    for c in checkouts:  # warm-up: not counted
        for b in backends:
            one_run(c, b, 1, 1.0, out / "warmup" / c.name / b)
    rows = []
    for r in range(a.runs):
        for c in checkouts:
            for b in backends:
                row = one_run(c, b, a.guests, a.duration, out / f"run{r}" / c.name / b)
                rows.append(row)
                print(json.dumps(row), flush=True)
    for c in checkouts:
        for b in backends:
            mine = [x for x in rows if x["checkout"] == str(c) and x["backend"] == b]
            boots = [x["boot_s"] for x in mine]
            gaps = [g for x in mine for g in x["gaps_s"]]
            print(f"{c.name} {b} {a.guests} guests: boot median {statistics.median(boots):.1f} s "
                  f"(range {min(boots):.1f}-{max(boots):.1f}, {len(boots)} runs); between "
                  f"loads median {statistics.median(gaps):.2f} s (range {min(gaps):.2f}-"
                  f"{max(gaps):.2f}, {len(gaps)} gaps)")
    (out / "bench_links.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
