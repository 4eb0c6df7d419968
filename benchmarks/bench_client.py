"""Load-generator benchmark: the most inputs/s one client process sends on time.

Offers rising Poisson loads (many players, 296-byte encrypted inputs) to a game
server on loopback and prints achieved rate and schedule lateness p50/p99.
No privileges.  Usage: python benchmarks/bench_client.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fpsmodel.client import GameClient
from fpsmodel.clientconfig import ClientConfig, Target
from gamebed.proc import Process, Runner, python_cmd, wait_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default="2000,4000,8000,16000,24000,32000,48000")
    a = ap.parse_args()
    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="gb-bench-client-"))
    ready = tmp / "port"
    args = python_cmd("fpsmodel", "server", "--port", 0, "--ready-file", ready,
                      "--max-players", 250)
    print(f"{'offered/s':>10} {'sent/s':>9} {'late p50 us':>12} {'late p99 us':>12}")
    best = 0.0
    with Process(["taskset", "-c", "1", *args], Runner(), log_path=tmp / "server.log"):
        wait_for(ready.exists, 15, "server")
        port = int(ready.read_text())
        for rate in map(float, a.rates.split(",")):
            players = 200
            out = tmp / f"r{int(rate)}"
            cfg = ClientConfig([Target(0, "127.0.0.1", port)], players=players,
                               duration=a.seconds, rate_hz=rate / players, out_dir=out,
                               sync_samples=4)
            res = GameClient(cfg).run()
            df = pd.read_csv(out / "client_inputs.csv")
            sent = res["inputs_sent"] / a.seconds
            late = df["lateness_ns"].to_numpy(dtype=float) / 1e3
            p50, p99 = np.percentile(late, [50, 99])
            print(f"{rate:10.0f} {sent:9.0f} {p50:12.1f} {p99:12.1f}", flush=True)
            if sent >= 0.98 * rate and p99 < 5000:
                best = max(best, sent)
    print(f"max on-time send rate (>=98% of offered, p99 lateness < 5 ms): {best:.0f} inputs/s")


if __name__ == "__main__":
    main()
