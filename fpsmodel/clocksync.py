"""The client's NTP-style clock sync with the game servers (no privileges): four-stamp
exchanges, one peer at a time or all at once, and the samples a point carries over to
the next (fpsmodel/timing.py picks the best)."""

from __future__ import annotations

import csv
import selectors
import socket
import time
from pathlib import Path

from fpsmodel import wire
from fpsmodel.timing import SyncSample


def _exchange(sock: socket.socket, sel: selectors.BaseSelector, codec: wire.Codec,
              ask: tuple[int, int], timeout: float) -> SyncSample | None:
    """One four-timestamp exchange (ask: player, seq) on a connected socket; None if no
    answer came in `timeout`."""
    pid, seq = ask
    t1 = time.time_ns()
    sock.send(codec.encode_sync_req(pid, seq, t1))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and sel.select(left):
        try:
            data = sock.recv(2048)
        except OSError:
            return None
        t4 = time.time_ns()
        try:
            hdr, body = codec.open(data)
        except wire.WireError:
            continue
        if hdr.msg_type == wire.MSG_SYNC_RESP and hdr.seq == seq:
            rt1, t2, t3 = wire.decode_sync_resp(body)
            if rt1 == t1:
                return SyncSample(t1, t2, t3, t4)
    return None


SYNC_BUDGET_S = 20.0  # the opening sync's longest: starved guests must not end the run


def clock_sync_rounds(peers: dict[int, tuple[socket.socket, wire.Codec, int]],
                      samples: int | dict[int, int], timeout: float = 0.2,
                      budget_s: float = SYNC_BUDGET_S) -> dict[int, list[SyncSample]]:
    """Exchanges with one peer at a time, the quietest kind (nobody else's answer is in
    the way), in rounds: each round asks every peer once, so a peer's samples are spread
    over the whole sync and it rests between two of them; lost replies are skipped.
    `samples`: tries per peer, or per peer by guest (a peer leaves the rounds when done).
    The rounds stop after `budget_s` (dozens of starved guests, 0.2 s per unanswered
    try, once took longer than the client's whole time limit): what was got is kept."""
    tries = samples if isinstance(samples, dict) else dict.fromkeys(peers, samples)
    out: dict[int, list[SyncSample]] = {g: [] for g in peers}
    sels = {}
    try:
        for g, (sock, _c, _p) in peers.items():
            sels[g] = selectors.DefaultSelector()
            sels[g].register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + budget_s
        for seq in range(max(tries.values(), default=0)):
            for g, (sock, codec, pid) in peers.items():
                if seq >= tries.get(g, 0) or (time.monotonic() > deadline and out[g]):
                    continue
                if time.monotonic() > deadline + budget_s:
                    break  # twice the budget: a guest that never answered stays unsynced
                s = _exchange(sock, sels[g], codec, (pid, seq), timeout)
                if s is not None:
                    out[g].append(s)
    finally:
        for sel in sels.values():
            sel.close()
    return out


def clock_sync_all(peers: dict[int, tuple[socket.socket, wire.Codec, int]], samples: int,
                   timeout: float = 0.2, give_up_after: int = 3) -> dict[int, list[SyncSample]]:
    """The same exchange with every peer at once, a round per sample: after a load that
    left dozens of servers working off backlogs, asking them one by one would take a
    `timeout` per unanswered try.  A peer that misses `give_up_after` rounds in a row is
    no longer asked."""
    out: dict[int, list[SyncSample]] = {g: [] for g in peers}
    misses = dict.fromkeys(peers, 0)
    sel = selectors.DefaultSelector()
    for g, (sock, _c, _p) in peers.items():
        sel.register(sock, selectors.EVENT_READ, g)
    try:
        for seq in range(samples):
            asked = {}
            for g, (sock, codec, pid) in peers.items():
                if misses[g] < give_up_after:
                    asked[g] = time.time_ns()
                    sock.send(codec.encode_sync_req(pid, seq, asked[g]))
            if not asked:
                break
            deadline = time.monotonic() + timeout
            while asked and (left := deadline - time.monotonic()) > 0:
                for key, _ in sel.select(left):
                    g = key.data
                    try:
                        data = key.fileobj.recv(2048)
                    except OSError:
                        continue
                    t4 = time.time_ns()
                    try:
                        hdr, body = peers[g][1].open(data)
                    except wire.WireError:
                        continue
                    if g in asked and hdr.msg_type == wire.MSG_SYNC_RESP and hdr.seq == seq:
                        rt1, t2, t3 = wire.decode_sync_resp(body)
                        if rt1 == asked[g]:
                            out[g].append(SyncSample(rt1, t2, t3, t4))
                            misses[g] = 0
                            del asked[g]
            for g in asked:
                misses[g] += 1
            time.sleep(0.002)
    finally:
        sel.close()
    return out


def read_sync_carry(path: Path) -> dict[int, SyncSample]:
    """A sync-carry file (guest,t1,t2,t3,t4: docs/records.md): each guest's best sample
    from an earlier point, for a guest whose clock cannot drift."""
    out = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            out[int(row["guest"])] = SyncSample(*(int(row[k]) for k in ("t1", "t2", "t3", "t4")))
    return out
