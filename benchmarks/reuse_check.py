"""Does a kept guest measure like a fresh one?  (A sweep keeps its guests from count
to count: gamebed/sweep.py, Testbed.resize.)

At each count N (--counts, default 8, 24, 48) it plays --repeats pairs of testbeds,
alternating fresh and reused: fresh boots all N guests for the pair's points; reused
boots N/2, plays one load at N/2 (so its old guests carry the state a sweep leaves
behind), then grows to N (half the guests new, half old).  Each testbed plays both
modes, guest then host in even repeats and host then guest in odd ones, repeat r with
seed + r in both testbeds, so each (count, mode, repeat) is a pair.

Prints, per count and mode, the mean paired difference reused − fresh of the mean
delay, the mean stamp error and the loss ratio with its 95% t-interval, and, within
the reused points, new guests − old guests.  A row passes when its interval lies
within ±max(10% of the fresh mean, 30 µs) (loss: ±0.5 percentage points).  Writes
every point under --out and the table as reuse_check.json.

Root; about 25 minutes with the defaults.  Nothing else may run meanwhile.
Usage: python benchmarks/reuse_check.py [--counts 8,24,48] [--repeats 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from analysis.capacity import t975
from analysis.point import point_summary
from analysis.records import add_delays, join_inputs, load_point
from fpsmodel.records import write_json
from gamebed.proc import require_net_admin, signals_unwind
from gamebed.run import Layers, Run
from gamebed.spec import ExperimentSpec
from vm import testbeds

FIGURES = ("delay_mean_us", "stamp_error_mean_us", "loss_ratio")


def play(bed, pdir: Path, mode: str, repeat: int) -> dict:
    """One point on `bed`; its figures, and per-guest means split new / old."""
    with bed.mode(mode, pdir, repeat) as point:
        write_json(pdir / "point.json", {"mode": mode, "guests": bed.n_guests,
                                         "repeat": repeat, "environment": point.environment()})
        point.run_load()
    s = point_summary(pdir)
    ages = json.loads((pdir / "guests.json").read_text())
    new = {int(g) for g, a in ages.items() if a["loads_before"] == 0}
    env = json.loads((pdir / "point.json").read_text())["environment"]
    j = add_delays(join_inputs(load_point(pdir, slim=True), bool(env.get("shared_clock")),
                               bool(env.get("clock_drifts", True))))
    d = j[j["delivered"]]
    split = {}
    for name, col in (("delay_mean_us", "delay_ns"), ("stamp_error_mean_us", "stamp_error_ns")):
        by = d.groupby("guest")[col].mean() / 1e3
        old_g = [g for g in by.index if g not in new]
        if new and old_g:
            split[name] = float(by[list(new & set(by.index))].mean() - by[old_g].mean())
    return {**{f: s.get(f) for f in FIGURES}, "new_minus_old": split, "new_guests": len(new)}


def pair(tmp: Path, n: int, r: int, order: tuple[str, str], duration: float | None = None
         ) -> dict:
    """Fresh then reused testbeds of n guests for repeat r: each one's two points
    (`duration` s each: the spec's default where None)."""
    extra = {} if duration is None else {"duration": duration}
    spec = ExperimentSpec.of(backend="uml", guest_counts=(n,), modes=order, **extra)
    out = {}
    for kind in ("fresh", "reused"):
        base = tmp / f"g{n:03d}-r{r}-{kind}"
        run = Run.start(spec, base, Layers(testbeds))
        first = n if kind == "fresh" else n // 2
        with run.testbed(first, base / "work") as bed:
            if kind == "reused":  # the old half plays a load first, as in a sweep
                play(bed, base / "warm", order[0], r)
                bed.resize(n)
            out[kind] = {m: play(bed, base / m, m, r) for m in order}
        run.manifest.close()
    return out


def interval(diffs: list[float]) -> tuple[float, float, float]:
    v = np.asarray([x for x in diffs if x is not None and math.isfinite(x)], dtype=float)
    if len(v) < 2:
        return (float("nan"),) * 3
    half = t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def rows(results: dict) -> list[dict]:
    """The table: per count, mode and figure, reused − fresh and new − old."""
    out = []
    for n, pairs in results.items():
        for mode in ("guest", "host"):
            for f in FIGURES:
                fresh = [p["fresh"][mode][f] for p in pairs]
                diff = [p["reused"][mode][f] - p["fresh"][mode][f] for p in pairs]
                within = [p["reused"][mode]["new_minus_old"].get(f) for p in pairs]
                ref = float(np.nanmean(fresh))
                bound = 0.005 if f == "loss_ratio" else max(0.1 * ref, 30.0)
                row = {"guests": n, "mode": mode, "figure": f, "fresh_mean": ref,
                       "bound": bound, "reused_minus_fresh": interval(diff)}
                if f != "loss_ratio":
                    row["new_minus_old"] = interval(within)
                checks = [row["reused_minus_fresh"]] + ([row["new_minus_old"]]
                                                        if "new_minus_old" in row else [])
                row["pass"] = all(-bound <= lo and hi <= bound for _, lo, hi in checks)
                out.append(row)
    return out


def fmt(iv) -> str:
    m, lo, hi = iv
    return f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}]" if math.isfinite(m) else "–"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="8,24,48")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/gamebed-reuse-check"))
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per point (default: the spec's; the smoke test's: 3)")
    a = ap.parse_args(argv)
    require_net_admin()
    counts = [int(x) for x in a.counts.split(",")]
    results: dict[int, list] = {}
    t0 = time.monotonic()
    with signals_unwind():
        for n in counts:
            results[n] = []
            for r in range(a.repeats):
                order = ("guest", "host") if r % 2 == 0 else ("host", "guest")
                results[n].append(pair(a.out, n, r, order, a.duration))
                print(f"{n} guests, repeat {r} ({'-'.join(order)}): "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    table = rows(results)
    write_json(a.out / "reuse_check.json", {"results": results, "table": table})
    for row in table:
        loss = row["figure"] == "loss_ratio"
        scale = 100.0 if loss else 1.0  # loss in percentage points
        print(f"{row['guests']:3d} {row['mode']:5s} {row['figure']:20s} "
              f"reused−fresh {fmt([x * scale for x in row['reused_minus_fresh']])}"
              + ("" if loss else f"  new−old {fmt(row['new_minus_old'])}")
              + f"  bound ±{row['bound'] * scale:.1f}  {'pass' if row['pass'] else 'FAIL'}")
    return 0 if all(r["pass"] for r in table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
