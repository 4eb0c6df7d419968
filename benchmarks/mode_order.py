"""Does the order of the modes on a count's guests change what they measure?  (Modes take
turns by repeat: gamebed/sweep.py count_points.)

Reads a run made with an even number of repeats, e.g.

    gamebed run --guests 24,32 --repeat 6 --out DIR --no-report

(repeats 0, 2, 4 run guest stamps first on the count's guests, 1, 3, 5 host stamps
first) and prints, per count and mode, each figure's mean and 95% t-interval when that
mode ran first and when it ran second, and the difference second − first with its
Welch 95% interval.  No privileges; reads only summary.json.

    python benchmarks/mode_order.py DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.stats import t975  # noqa: E402

FIGURES = ("guest_cpu_per_guest_s", "delay_mean_us", "stamp_error_mean_us",
           "tick_hz_received_mean", "ticks_share_worst", "tick_gap_p99_worst_ms")


def interval(v: list[float]) -> tuple[float, float, float]:
    a = np.asarray(v, dtype="float64")
    m = float(a.mean())
    if len(a) < 2:
        return m, float("nan"), float("nan")
    h = t975(len(a) - 1) * float(a.std(ddof=1)) / math.sqrt(len(a))
    return m, m - h, m + h


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """b − a with Welch's 95% interval."""
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d = float(b.mean() - a.mean())
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se else 1
    h = t975(max(1, int(df))) * se
    return d, d - h, d + h


def table(points: list[dict]) -> list[dict]:
    rows = []
    for p in points:
        p["guest_cpu_per_guest_s"] = (p.get("guest_cpu_s") or float("nan")) / p["guests"]
    for n in sorted({p["guests"] for p in points}):
        for mode in ("guest", "host"):
            at = [p for p in points if p["guests"] == n and p["mode"] == mode]
            first = [p for p in at if p.get("order") == 0]
            second = [p for p in at if p.get("order") == 1]
            for f in FIGURES:
                a = [p[f] for p in first if p.get(f) is not None]
                b = [p[f] for p in second if p.get(f) is not None]
                if len(a) < 2 or len(b) < 2:
                    continue
                d = welch(a, b)
                rows.append({"guests": n, "mode": mode, "figure": f,
                             "first": interval(a), "second": interval(b), "diff": d,
                             "beyond_noise": not d[1] <= 0 <= d[2]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    points = json.loads((a.dir / "summary.json").read_text())["points"]
    if not any("order" in p for p in points):
        print(f"mode_order: {a.dir} records no mode order (a run before it); run "
              "gamebed run --guests 24,32 --repeat 6", file=sys.stderr)
        return 2
    rows = table(points)
    fmt = "{:.4g} [{:.4g}, {:.4g}]"
    print("| guests | mode | figure | ran first | ran second | second − first | beyond noise |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['guests']} | {r['mode']} | {r['figure']} | {fmt.format(*r['first'])} | "
              f"{fmt.format(*r['second'])} | {fmt.format(*r['diff'])} | "
              f"{'yes' if r['beyond_noise'] else 'no'} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
