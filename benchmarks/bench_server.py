"""Server benchmark: the most inputs/s one game server process handles on one core.

A sender pinned to CPU 0 blasts pre-encrypted valid inputs at rising rates to a
server pinned to CPU 1 (loopback); the server's accepted count gives its loss.
No privileges.  Usage: python benchmarks/bench_server.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

from fpsmodel import wire
from gamebed.proc import Process, Runner, python_cmd, wait_for


def blast(sock: socket.socket, dgrams: list[bytes], rate: float, seconds: float) -> int:
    n = int(rate * seconds)
    start = time.perf_counter()
    batch = max(1, int(rate / 2000))  # send in small bursts, paced every 0.5 ms
    for i in range(0, n, batch):
        for d in dgrams[i:i + batch]:
            sock.send(d)
        due = start + (i + batch) / rate
        while (left := due - time.perf_counter()) > 0:
            time.sleep(left) if left > 0.0002 else None
    return n


def run_rate(rate: float, seconds: float, tmp: Path, dispatch: str) -> tuple[int, int]:
    out = tmp / f"{dispatch}-{int(rate)}"
    ready = out / "port"
    out.mkdir(parents=True)
    args = python_cmd("fpsmodel", "server", "--port", 0, "--ready-file", ready, "--out", out,
                      "--max-players", 64, "--dispatch", dispatch)
    codec = wire.Codec(1)
    n = int(rate * seconds)
    inp = wire.PlayerInput(move=(1.0, 0.0, 0.0))
    dgrams = [codec.encode_input(i % 64, i // 64 + 1, time.time_ns(), inp) for i in range(n)]
    with Process(["taskset", "-c", "1", *args], Runner(), log_path=out / "log") as srv:
        wait_for(ready.exists, 15, "server")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", int(ready.read_text())))
        sent = blast(s, dgrams, rate, seconds)
        time.sleep(0.5)
        srv.stop()
    return sent, json.loads((out / "server_summary.json").read_text())["accepted"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rates", default="5000,10000,20000,30000,40000,60000,80000")
    ap.add_argument("--dispatch", default="epoll,poll,select")
    a = ap.parse_args()
    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="gb-bench-server-"))
    print(f"{'dispatch':>8} {'offered/s':>10} {'accepted/s':>11} {'loss %':>7}")
    for dispatch in a.dispatch.split(","):
        best = 0.0
        for rate in map(float, a.rates.split(",")):
            sent, ok = run_rate(rate, a.seconds, tmp, dispatch)
            loss = 100.0 * (1 - ok / sent)
            print(f"{dispatch:>8} {rate:10.0f} {ok / a.seconds:11.0f} {loss:7.2f}", flush=True)
            if loss < 0.1:
                best = max(best, rate)
        print(f"{dispatch}: max rate with < 0.1% loss: {best:.0f} inputs/s")


if __name__ == "__main__":
    main()
