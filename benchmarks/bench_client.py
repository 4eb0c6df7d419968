"""Load-generator benchmark: the most inputs+updates per second one client process
handles on one core while its p99 send lateness stays within the judge's limit.

Offers rising Poisson loads (200 players, 296-byte encrypted inputs, 20 Hz updates
back) to a game server on loopback (the server on CPU 1, the client on CPU 0), with the
client as a run has it: the spec's spin, spin share and SCHED_FIFO priority
(gamebed/specparts.py HostTuning).  For each rate it prints inputs sent and updates
received per second and the send lateness's p50 and p99; the figure is the
inputs+updates per second at the largest rate whose p99 lateness is within
analysis/load.py LATENESS_LIMIT_US (200 µs).  (Every input due is sent, late if need
be: the schedule is the seed's, so the rate sent is the offered one, give or take the
Poisson count; lateness is what gives way.)  No privileges (SCHED_FIFO where allowed).

    python benchmarks/bench_client.py [--seconds 3] [--rates 2000,4000,...]
    python benchmarks/bench_client.py --checkouts /old/tree,/new/tree

With --checkouts, each rate is measured in each checkout in turn (interleaved), each
with that checkout's client and server, so two versions are compared the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

RATES = "2000,4000,6000,8000,10000,12000,16000,20000,24000,32000,40000,48000,64000"
PLAYERS = 200
LATENESS_LIMIT_US = 200.0  # analysis/load.py's (checked by tests/unit/test_benchmarks_smoke.py)


@dataclass(frozen=True)
class Row:
    """One rate's measurement."""

    offered: float  # inputs/s asked for
    sent: float  # inputs/s sent
    updates: float  # updates/s received
    late_p50_us: float
    late_p99_us: float

    @property
    def on_time(self) -> bool:
        return self.late_p99_us <= LATENESS_LIMIT_US


def measure(rate: float, seconds: float) -> Row:
    """One rate, in this process's checkout (its fpsmodel)."""
    import numpy as np
    import pandas as pd

    from fpsmodel.client import GameClient
    from fpsmodel.clientconfig import ClientConfig, Target
    from gamebed.proc import Process, Runner, python_cmd, wait_for
    from gamebed.specparts import HostTuning

    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="gb-bench-client-"))
    ready = tmp / "port"
    args = python_cmd("fpsmodel", "server", "--port", 0, "--ready-file", ready,
                      "--max-players", 250)
    t = HostTuning()
    with Process(["taskset", "-c", "1", *args], Runner(), log_path=tmp / "server.log"):
        wait_for(ready.exists, 15, "server")
        cfg = ClientConfig([Target(0, "127.0.0.1", int(ready.read_text()))], players=PLAYERS,
                           duration=seconds, rate_hz=rate / PLAYERS, out_dir=tmp / "out",
                           sync_samples=4, spin_us=t.client_spin_us,
                           spin_share=t.client_spin_share, priority=t.client_priority)
        res = GameClient(cfg).run()
    late = pd.read_csv(tmp / "out" / "client_inputs.csv")["lateness_ns"].to_numpy(float) / 1e3
    p50, p99 = np.percentile(late, [50, 99]) if len(late) else (float("nan"),) * 2
    return Row(rate, res["inputs_sent"] / seconds, res["updates_received"] / seconds,
               float(p50), float(p99))


def _in_checkout(tree: str, rate: float, seconds: float) -> Row:
    """One rate measured by `tree`'s client and server (a child with its PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, __file__, "--one", str(rate), "--seconds",
                          str(seconds)], env=env, cwd=tree, capture_output=True, text=True,
                         check=True).stdout
    return Row(**json.loads(out.strip().splitlines()[-1]))


def best(rows: list[Row]) -> Row | None:
    """The row at the largest on-time rate."""
    ok = [r for r in rows if r.on_time]
    return max(ok, key=lambda r: r.offered) if ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default=RATES)
    ap.add_argument("--checkouts", help="comma-separated trees to compare, interleaved")
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one is not None:  # a child of --checkouts: one rate, as JSON
        print(json.dumps(asdict(measure(a.one, a.seconds))))
        return 0
    trees = a.checkouts.split(",") if a.checkouts else [None]
    rows: dict[str | None, list[Row]] = {t: [] for t in trees}
    print(f"{'tree':>6} {'offered/s':>10} {'sent/s':>9} {'updates/s':>10} "
          f"{'late p50 us':>12} {'late p99 us':>12}")
    for rate in map(float, a.rates.split(",")):
        for k, tree in enumerate(trees):
            if len(rows[tree]) >= 2 and not any(r.on_time for r in rows[tree][-2:]):
                continue  # two rates in a row late: higher ones are too
            r = measure(rate, a.seconds) if tree is None else _in_checkout(tree, rate,
                                                                            a.seconds)
            rows[tree].append(r)
            print(f"{k:>6} {r.offered:10.0f} {r.sent:9.0f} {r.updates:10.0f} "
                  f"{r.late_p50_us:12.1f} {r.late_p99_us:12.1f}", flush=True)
    for k, tree in enumerate(trees):
        b = best(rows[tree])
        name = tree or "this tree"
        if b is None:
            print(f"[{k}] {name}: no rate on time (p99 send lateness <= "
                  f"{LATENESS_LIMIT_US:g} us): 0 inputs+updates/s per core")
        else:
            print(f"[{k}] {name}: {b.sent + b.updates:.0f} inputs+updates/s per core "
                  f"({b.sent:.0f} inputs/s + {b.updates:.0f} updates/s at p99 send "
                  f"lateness {b.late_p99_us:.0f} us <= {LATENESS_LIMIT_US:g} us)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
