"""Analyzer benchmark: `gamebed report` on 10 million synthetic input records.

Generates a synthetic results directory (analysis/synth.py: client, shim and server
records for every input, the same files `gamebed run` writes), then times
`gamebed report DIR` in a child process and prints records/s and the child's peak
memory (ru_maxrss).  Target on a 2-core machine: ≤ 30 s and ≤ 4 GiB.
No privileges.  Usage: python benchmarks/bench_analyzer.py [--records 10000000]
[--points 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.synth import SynthRun, write_run


def shape(mode: str, g: int, rng: np.random.Generator, n: int):
    delay = rng.exponential((100.0 if mode == "guest" else 30.0) * g, n)
    return delay, (delay if mode == "host" else delay * 0.2), 0.001


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000, help="input records in all")
    ap.add_argument("--points", type=int, default=10,
                    help="points (2 modes × points/2 guest counts) the records spread over; "
                         "1 puts every record in one point, the worst case for memory")
    ap.add_argument("--keep", type=Path, help="write the directory here and keep it")
    a = ap.parse_args(argv)
    modes = ("guest", "host") if a.points > 1 else ("host",)
    counts = [2 ** i for i in range(max(1, a.points // len(modes)))]
    per_point = a.records // (len(modes) * len(counts))
    total = per_point * len(modes) * len(counts)
    out = a.keep or Path(tempfile.mkdtemp(prefix="gamebed-bench-analyzer-"))
    try:
        t0 = time.perf_counter()
        write_run(out, shape, SynthRun(modes=modes, guest_counts=counts,
                                       inputs_per_point=per_point),
                  progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
        gen_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(f"generated {total:,} inputs in {len(modes) * len(counts)} points "
              f"({size / 2**20:.0f} MiB of CSV) in {gen_s:.1f} s", file=sys.stderr)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gamebed", "report", str(out)], check=True)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        result = {"records": total, "points": len(modes) * len(counts),
                  "csv_mib": round(size / 2**20), "report_s": round(wall, 2),
                  "records_per_s": round(total / wall), "peak_rss_gib": round(peak / 2**30, 3),
                  "target": "<= 30 s, <= 4 GiB",
                  "met": wall <= 30 and peak <= 4 * 2**30}
        print(json.dumps(result))
        return 0 if result["met"] else 1
    finally:
        if not a.keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
