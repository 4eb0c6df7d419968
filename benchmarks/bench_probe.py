"""What the CPU probe changes (root): the same small run with the probe on and off,
interleaved, and the client's p99 send lateness and load-generator-bound verdict of
each point (gamebed/machinewatch.py CpuProbe; GAMEBED_PROBE=off leaves it out).

The probe wakes every 150 µs on the client's CPU.  It names the short holds of that
CPU, and it also keeps the CPU from idling between the client's sends, which on a VM
can shorten the client's own wake-ups: this measures how much.

    python benchmarks/bench_probe.py --runs 3 --guests 1 --backend netns --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def one(out: Path, probe: bool, a: argparse.Namespace) -> list[dict]:
    env = {**os.environ, "GAMEBED_PROBE": "on" if probe else "off"}
    subprocess.run([sys.executable, "-m", "gamebed", "run", "--backend", a.backend,
                    "--guests", a.guests, "--duration", str(a.duration), "--no-report",
                    "--retries", "0", "--out", str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["points"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs of each, interleaved")
    p.add_argument("--guests", default="1")
    p.add_argument("--backend", default="netns")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    print("run  probe  mode   guests  p99 lateness µs  load-bound  stalls")
    for k in range(a.runs):
        for probe in ((True, False) if k % 2 == 0 else (False, True)):
            name = f"{'on' if probe else 'off'}-{k}"
            for pt in one(a.out / name, probe, a):
                print(f"{k:<4} {'on' if probe else 'off':<6} {pt['mode']:<6} {pt['guests']:<7} "
                      f"{pt['send_lateness_p99_us']:<16.1f} {str(pt['load_bound']):<11} "
                      f"{pt.get('stall_causes')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
