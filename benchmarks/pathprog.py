"""Sender and receiver for bench_paths.py, run inside namespaces.

  send DST_IP PORT RATE SECONDS   296-byte UDP datagrams shaped as player inputs (the game
                                  header: magic, type input, seq, send time; padding), so
                                  the BPF stamper stamps and logs them as it would a game's
  recv IP PORT SECONDS            prints JSON: received count and delay percentiles (us),
                                  delay = SO_TIMESTAMPNS (guest kernel) - send time; ends
                                  QUIET s after the last datagram, or at SECONDS (a cap)
"""

import json
import select
import socket
import struct
import sys
import time

import numpy as np

from fpsmodel import wire
from fpsmodel.wire import SO_TIMESTAMPNS

QUIET = 0.5  # the sender is done: a late sender's last datagrams are still counted


def send(ip, port, rate, seconds):
    rate, seconds = float(rate), float(seconds)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, int(port)))
    pad = bytes(wire.INPUT_PAYLOAD_SIZE - wire.HEADER_SIZE)
    n = int(rate * seconds)
    start = time.perf_counter()
    batch = max(1, int(rate / 5000))
    for i in range(0, n, batch):
        for k in range(i, min(i + batch, n)):
            s.send(wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.MSG_INPUT, 0, 0, k,
                                    time.time_ns()) + pad)
        due = start + (i + batch) / rate
        left = due - time.perf_counter()
        if left > 0.0001:
            time.sleep(left)
    print(json.dumps({"sent": n, "elapsed": time.perf_counter() - start}))


def recv(ip, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((ip, int(port)))
    print("ready", flush=True)
    delays = []
    end = time.monotonic() + float(seconds)
    last = None
    while (left := end - time.monotonic()) > 0:
        if last is not None and time.monotonic() - last > QUIET:
            break
        if not select.select([s], [], [], min(left, QUIET))[0]:
            continue
        last = time.monotonic()
        data, anc, _f, _a = s.recvmsg(2048, 64)
        for lvl, kind, d in anc:
            if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", d[:16])
                delays.append(sec * 10**9 + nsec - wire.HEADER.unpack_from(data)[6])
    d = np.array(delays, dtype=float) / 1e3
    out = {"received": len(delays)}
    if len(d):
        out.update(p50=float(np.percentile(d, 50)), p99=float(np.percentile(d, 99)),
                   mean=float(d.mean()))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    {"send": send, "recv": recv}[sys.argv[1]](*sys.argv[2:])
