"""Players here or on other machines: what the players' path and clock add (root;
OpenSSH, and user-mode Linux for --uml-machine).

Runs `gamebed run` with the players on namespaced player machines (each its own
sshd, tests/support/machines.py; with --uml-machine the last one a UML machine whose
wall clock is 7 s off) and with them here in as many shards, in turn (interleaved:
remote, local, remote, local ...), the same seed and guests.  Prints one line per
point: where the players were, the delay's floor, p50 and p99 (µs), the players' clock
offset and its uncertainty (remote), the client's worst shard p99 send lateness and
whether the point was load-generator-bound, then the medians per placement and mode.

Nothing else may run meanwhile.  Usage:
  python benchmarks/bench_players.py [--backend uml] [--guests 8,16] [--machines 2]
      [--uml-machine] [--runs 2] [--duration 10] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gamebed.cli import main as gamebed  # noqa: E402
from tests.support.machines import machines  # noqa: E402


def clock(point: Path) -> tuple[float | None, float | None]:
    """The chosen offsets' mean (s) and the largest uncertainty (µs), or None here."""
    path = point / "player_clock.csv"
    if not path.exists():
        return None, None
    rows = [r for r in csv.DictReader(open(path)) if r["chosen"] == "1"]
    return (statistics.mean(int(r["offset_ns"]) for r in rows) / 1e9,
            max(int(r["delay_ns"]) for r in rows) / 2e3)


def rows(run: Path, where: str) -> list[dict]:
    out = []
    for p in json.loads((run / "summary.json").read_text())["points"]:
        off, unc = clock(run / p["dir"])
        out.append({"where": where, "mode": p["mode"], "guests": p["guests"],
                    "floor_us": p["delay_min_us"], "p50_us": p["delay_p50_us"],
                    "p99_us": p["delay_p99_us"], "offset_s": off, "uncertainty_us": unc,
                    "send_p99_us": p.get("send_lateness_p99_us"),
                    "load_bound": p.get("load_bound")})
    return out


def one(args, where: str, extra: list[str], out: Path) -> list[dict]:
    argv = ["run", "--backend", args.backend, "--guests", args.guests, "--duration",
            str(args.duration), "--seed", "5", "--out", str(out), "--overwrite",
            "--no-report", *extra]
    if gamebed(argv) != 0:
        raise SystemExit(f"bench_players: {where} run failed; see {out}")
    return rows(out, where)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="uml")
    ap.add_argument("--guests", default="8,16")
    ap.add_argument("--machines", type=int, default=2)
    ap.add_argument("--uml-machine", action="store_true")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="bench_players-"))
    got: list[dict] = []
    with machines(out, a.machines, 7 if a.uml_machine else None) as (names, cfg):
        remote = ["--players-on", ",".join(names), "--ssh-config", str(cfg),
                  "--players-python", sys.executable]
        for r in range(a.runs):
            for where, extra in (("remote", remote),
                                 ("here", ["--client-shards", str(len(names))])):
                for row in one(a, where, extra, out / f"{where}{r}"):
                    print(json.dumps({"run": r, **row}), flush=True)
                    got.append(row)
    print("\nwhere   mode   guests  floor  p50  p99 (µs, medians over runs)  uncertainty")
    keys = sorted({(g["where"], g["mode"], g["guests"]) for g in got})
    for k in keys:
        sel = [g for g in got if (g["where"], g["mode"], g["guests"]) == k]
        med = {f: statistics.median(g[f] for g in sel) for f in ("floor_us", "p50_us", "p99_us")}
        unc = [g["uncertainty_us"] for g in sel if g["uncertainty_us"] is not None]
        print(f"{k[0]:7} {k[1]:6} {k[2]:6} {med['floor_us']:6.1f} {med['p50_us']:6.1f} "
              f"{med['p99_us']:7.1f}  {statistics.median(unc) if unc else '-'}")
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
