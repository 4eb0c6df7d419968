"""The host under test's clock, for players on other machines (no privileges).

A player machine has a clock of its own.  Its client measures that clock against the
host under test's with the game's four-stamp exchange (fpsmodel/clocksync.py), asked
of a small answering service the host side runs (`serve`: `python -m fpsmodel clockd`),
before its load and after it.  The exchange is recorded (HOST_CLOCK, like
clock_sync.csv); the host side then moves the shard's records onto its own clock with
it (hostside/players.py), and the start gate's instant, given in host time, is moved
onto the player's clock here (`player_start`).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from fpsmodel import wire
from fpsmodel.records import RecordWriter
from fpsmodel.timing import SyncSample, best_sample

SESSION = 0xC10C  # the host clock's own session: no game server answers it
HOST_CLOCK = "host_clock.csv"
HOST_CLOCK_FIELDS = ("sample", "t1", "t2", "t3", "t4", "offset_ns", "delay_ns", "chosen",
                     "phase")  # offset_ns: host clock − player clock; phase 0 before, 1 after
SAMPLES = 32
FROM_SSH = "ssh"  # --host-clock ssh:PORT: the host is whoever this ssh session came from


def serve(port: int, ready_file: Path | None, host: str = "0.0.0.0") -> None:
    """Answer every host-clock request until killed: t2 is the kernel's receive stamp
    (SO_TIMESTAMPNS), t3 taken just before the answer is sealed and sent."""
    codec = wire.Codec(SESSION)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, wire.SO_TIMESTAMPNS, 1)
    sock.bind((host, port))
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(str(sock.getsockname()[1]))
        os.replace(tmp, ready_file)
    while True:
        data, anc, _f, addr = sock.recvmsg(2048, 64)
        t2 = _kernel_stamp(anc) or time.time_ns()
        try:
            hdr, body = codec.open(data)
            t1 = wire.decode_sync_req(body) if hdr.msg_type == wire.MSG_SYNC_REQ else None
        except wire.WireError:
            continue
        if t1 is not None:
            sock.sendto(codec.encode_sync_resp(hdr.player, hdr.seq, t1, t2, time.time_ns()),
                        addr)


def _kernel_stamp(anc: Sequence[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == wire.SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return None


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT; the host `ssh` is the address the player's ssh session came from."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--host-clock wants HOST:PORT or ssh:PORT, not {text!r}")
    if host == FROM_SSH:
        conn = os.environ.get("SSH_CONNECTION", "").split()
        if not conn:
            raise ValueError("--host-clock ssh:PORT: this client was not started over ssh "
                             "(no SSH_CONNECTION); give the host's address")
        host = conn[0]
    return host, int(port)


class HostClock:
    """The player's side: exchanges with the host's clock, recorded as they come."""

    def __init__(self, address: tuple[str, int], out: Path) -> None:
        self.address = address
        out.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # t4 is the kernel's receive stamp: a wake-up of this process does not count in
        # the round trip (a halted CPU here wakes one 30-60 µs late, docs/workloads.md)
        self.sock.setsockopt(socket.SOL_SOCKET, wire.SO_TIMESTAMPNS, 1)
        self.sock.connect(address)
        self.codec = wire.Codec(SESSION)
        self.writer = RecordWriter(out / HOST_CLOCK, HOST_CLOCK_FIELDS)
        self.best: dict[int, tuple[SyncSample, int]] = {}

    def measure(self, phase: int, samples: int = SAMPLES) -> int:
        """`samples` exchanges; returns the best one's offset (host − player, ns)."""
        got = [x for x in (self._exchange(i) for i in range(samples)) if x is not None]
        if not got:
            raise RuntimeError(f"the host's clock at {self.address[0]}:{self.address[1]} "
                               "did not answer: check that this machine routes to it")
        best, unc = best_sample(got)
        self.best[phase] = (best, unc)
        for i, s in enumerate(got):
            self.writer.write(i, s.t1, s.t2, s.t3, s.t4, s.offset_ns, s.delay_ns,
                              int(s is best), phase)
        self.writer.flush()
        return best.offset_ns

    def _exchange(self, seq: int, timeout: float = 0.2) -> SyncSample | None:
        """One four-stamp exchange; None if no answer came in `timeout` s."""
        t1 = time.time_ns()
        self.sock.send(self.codec.encode_sync_req(0, seq, t1))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                return None
            data, anc, _f, _a = self.sock.recvmsg(2048, 64)
            t4 = _kernel_stamp(anc) or time.time_ns()
            try:
                hdr, body = self.codec.open(data)
                if hdr.msg_type != wire.MSG_SYNC_RESP or hdr.seq != seq:
                    continue
                rt1, t2, t3 = wire.decode_sync_resp(body)
            except wire.WireError:
                continue
            if rt1 == t1:
                return SyncSample(t1, t2, t3, t4)
        return None

    def player_start(self, host_start_ns: int) -> int:
        """The gate's instant (host clock) on this machine's clock."""
        return host_start_ns - self.best[0][0].offset_ns

    def summary(self) -> dict:
        return {str(p): {"offset_ns": s.offset_ns, "uncertainty_ns": u, "t1": s.t1}
                for p, (s, u) in self.best.items()}

    def close(self) -> None:
        self.writer.close()
        self.sock.close()
