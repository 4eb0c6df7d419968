"""The AF_PACKET timestamping shim (root: raw packet sockets).

Sits in the host namespace between the uplink (clients) and the guests' ports.
Each frame from the uplink arrives with its kernel stamp (SO_TIMESTAMPNS via
recvmsg, never a TPACKET_V3 ring: block delivery adds milliseconds).  Game
inputs (IPv4/UDP to a guest's game port) are cut to the IP total length, get the
timestamp trailer, and go to that guest's port; everything else is switched by
destination MAC unchanged (broadcast to every guest).  Replies from guests go
back to the uplink.  Partial checksums (PACKET_AUXDATA: CSUMNOTREADY) are
completed, since a frame sent on a packet socket must carry a full one.

With `--stamper bpf` the tc stamper already forwards game inputs in the kernel;
the shim forwards everything else, including the game frames the stamper leaves
to it (IP options).  Ground truth for the stamper's inputs comes from its ring
buffer (`--truth-prog-id`, hostside/ringbuf.py), read in batches, and a classic
socket filter keeps those inputs off the uplink socket (the filter runs before
the kernel copies a frame to it), so no input wakes this process; without a
program id (or with `--capture`, which needs every frame) the socket sees every
input and the shim logs them itself.  Every frame the shim forwards to a guest is
cut to its IP total length first.

Receive stamps exist only while some socket asks for them (a global kernel
switch): the shim holds an idle SO_TIMESTAMPNS socket for the whole run, so the
switch never depends on which sockets a mode opens, and counts inputs that left
with a zero stamp (which the decoders would ignore: host mode silently becoming
guest mode); the summary must show 0.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fpsmodel import wire
from fpsmodel.records import SHIM_INPUT_FIELDS, SHIM_INPUTS, RecordWriter, write_json
from fpsmodel.wire import GAME_PORT, SO_TIMESTAMPNS
from gamebed.spec import STAMPERS, default
from hostside import trailer
from hostside.pring import RxRing
from hostside.sockfilter import attach_filter, input_filter_program, reply_filter_program

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h, Linux 4.20
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
_TS = struct.Struct("qq")
_AUX = struct.Struct("IIIHHHH")
PORT_THREADS = 64  # guest ports opened and closed at once
SHIM_TRUTH_SPOOL = "shim_inputs.spool"  # the ring's raw records until the load is over
CAPTURE_RECORD = struct.Struct("<QI")  # uplink.cap: stamp ns, frame length, then the frame


@dataclass(frozen=True)
class GameFrame:
    """A frame from the uplink that is game traffic for a known guest."""

    guest: int
    header: wire.Header | None  # None: not a gamebed datagram (kept, routed as game)

    @property
    def is_input(self) -> bool:
        return self.header is not None and self.header.msg_type == wire.MSG_INPUT


def classify(frame: bytes | bytearray, game_port: int, by_ip: dict[bytes, int]) -> GameFrame | None:
    """The game frame for a guest, or None if the frame is not game traffic: IPv4, not a
    fragment, UDP to the game port, to a guest's address.  Header fields come from
    fpsmodel.wire, the format's one owner."""
    if trailer.ip_total_length(frame) is None or frame[23] != trailer.IPPROTO_UDP:
        return None
    if int.from_bytes(frame[20:22], "big") & 0x3FFF:  # fragments are not game inputs
        return None
    if trailer.udp_dport(frame) != game_port:
        return None
    guest = by_ip.get(bytes(frame[30:34]))
    if guest is None:
        return None
    payload = trailer.ETH_HLEN + (frame[14] & 0x0F) * 4 + 8
    return GameFrame(guest, wire.peek_header(memoryview(frame)[payload:]))


@dataclass(frozen=True)
class GuestPort:
    guest: int
    ifname: str
    ip: str
    mac: str

    @classmethod
    def parse(cls, text: str) -> GuestPort:
        """'GUEST,IFNAME,IP,MAC'."""
        g, ifname, ip, mac = text.split(",")
        return cls(int(g), ifname, ip, mac.lower())


def reply_kind(frame: bytes, client_mac: bytes | None) -> str:
    """A frame from a guest, named by its ethertype and destination: "ipv4 to client",
    "arp broadcast", "ipv6 multicast", "0x88cc to other" ...  (a tag is looked through)."""
    etype = int.from_bytes(frame[12:14], "big")
    if etype == 0x8100 and len(frame) >= 18:
        etype = int.from_bytes(frame[16:18], "big")
    name = {0x0800: "ipv4", 0x0806: "arp", 0x86DD: "ipv6"}.get(etype, f"0x{etype:04x}")
    dst = bytes(frame[0:6])
    if dst == b"\xff" * 6:
        where = "broadcast"
    elif dst[0] & 1:
        where = "multicast"
    elif client_mac is not None and dst == client_mac:
        where = "to client"
    else:
        where = "to other"
    return f"{name} {where}"


def open_packet_socket(ifname: str, stamps: bool) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    # frames leaving the device (the stamper's redirects into a guest port, our own
    # sends) are not copied to this socket: without this, every input the stamper
    # forwards would still wake this process once, through the guest port's socket
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    if stamps:  # also what makes the kernel stamp skbs at all (netstamp_needed)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def parse_anc(anc: list) -> tuple[int, int, bytes]:
    """(stamp ns, tp_status, the VLAN tag the kernel took off the frame or b"") from
    recvmsg ancillary data."""
    ns = status = 0
    tag = b""
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TS.size:
            sec, nsec = _TS.unpack_from(data)
            ns = sec * 1_000_000_000 + nsec
        elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUX.size:
            status, _l, _s, _m, _n, tci, tpid = _AUX.unpack_from(data)
            if status & TP_STATUS_VLAN_VALID:
                tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                tag = struct.pack("!HH", tpid, tci)
    return ns, status, tag


@dataclass(frozen=True)
class ShimConfig:
    uplink: str  # where the clients' frames arrive
    guests: list[GuestPort]
    game_port: int
    out_dir: Path
    stamper: str = default("stamper")  # who appends trailers: "afpacket" (the shim) or "bpf"
    capture: Path | None = None  # every uplink frame with its stamp (uplink.cap)
    truth_prog_id: int | None = None  # bpf: the stamper whose ring holds the ground truth
    rx_ring: bool = True  # read through mmapped receive rings, not a recvmsg per frame
    # the tc reply program sends the guests' IPv4 frames to this MAC in the kernel: the
    # guest ports' sockets refuse them (reply_filter_program); None: the shim forwards all
    replies_to: bytes | None = None


class Shim:
    def __init__(self, cfg: ShimConfig) -> None:
        uplink, guests, game_port, out_dir = cfg.uplink, cfg.guests, cfg.game_port, cfg.out_dir
        stamper, capture, truth_prog_id = cfg.stamper, cfg.capture, cfg.truth_prog_id
        self.game_port, self.stamper = game_port, stamper
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # held for the run: receive stamps stay on whatever else opens or closes
        self.stamp_switch = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stamp_switch.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.up = open_packet_socket(uplink, stamps=True)
        self.ring = None
        if stamper == "bpf" and truth_prog_id is not None:
            from hostside.ringbuf import TruthRing, TruthSpool

            self.ring = TruthRing(truth_prog_id)
            self.spool = TruthSpool(self.out_dir / SHIM_TRUTH_SPOOL)
            if capture is None:  # a capture keeps every frame, inputs included
                attach_filter(self.up, input_filter_program(
                    game_port, [socket.inet_aton(g.ip) for g in guests]))
        # receive rings (hostside/pring.py): a wake-up reads every frame queued, with its
        # stamp, without a recvmsg per frame; the uplink's larger (inputs arrive there)
        self.rx: dict[int, RxRing] = {}
        if cfg.rx_ring:
            self.rx[self.up.fileno()] = RxRing(self.up, frames=2048)

        def port(g: GuestPort) -> tuple[socket.socket, RxRing | None]:
            s = open_packet_socket(g.ifname, stamps=False)
            if cfg.replies_to is not None:
                attach_filter(s, reply_filter_program(cfg.replies_to))
            return s, RxRing(s, frames=128) if cfg.rx_ring else None

        # each socket's bind, ring and close waits out an RCU grace period in the kernel:
        # dozens of guests' ports wait them out together, from threads
        with ThreadPoolExecutor(max_workers=PORT_THREADS) as ex:
            opened = dict(zip([g.guest for g in guests], ex.map(port, guests), strict=True))
        self.ports = {g: s for g, (s, _r) in opened.items()}
        self.rx.update({s.fileno(): r for s, r in opened.values() if r is not None})
        self.by_ip = {socket.inet_aton(g.ip): g.guest for g in guests}
        self.by_mac = {bytes.fromhex(g.mac.replace(":", "")): g.guest for g in guests}
        self.counters: Counter[str] = Counter()
        # what the shim forwarded from the guests, by ethertype and destination: with the
        # kernel's reply path on, "ipv4 to client" must stay 0 (docs/records.md)
        self.replies_to = cfg.replies_to
        self.reply_kinds: Counter[str] = Counter()
        self.truth = RecordWriter(self.out_dir / SHIM_INPUTS, SHIM_INPUT_FIELDS)
        # truth rows of one wake-up, flat, written with one format operation after it (a
        # csv.writer call per input was a fifth of the shim's time at 76 kpps)
        self._rows: list[int] = []
        # every uplink frame with its kernel stamp (docs/records.md: uplink.cap), for the
        # point's pcapng (analysis/pcap.py); one buffered write per frame
        self.capture = open(capture, "wb", 1 << 20) if capture else None  # noqa: SIM115
        self._stop = False
        self.longest_drain_gap = 0.0  # seconds between two reads of the stamper's ring

    def stop(self, *_: object) -> None:
        self._stop = True

    def _send(self, sock: socket.socket, frame: bytes | bytearray, what: str) -> None:
        try:
            sock.send(frame)
            self.counters[what] += 1
        except OSError as e:
            self.counters[f"dropped_send_{e.errno}"] += 1

    def from_uplink(self, frame: bytes, stamp_ns: int, status: int) -> None:
        game = classify(frame, self.game_port, self.by_ip)
        if game is not None:
            guest, is_input, hdr = game.guest, game.is_input, game.header
            # ground truth is kept for player inputs, not clock-sync requests
            if self.stamper == "bpf" and trailer.stamper_takes(frame, self.game_port):
                if is_input and self.ring is None:  # the kernel stamper forwarded it
                    self._rows += (guest, hdr.player, hdr.seq, stamp_ns, 0)
                self.counters["game_logged"] += 1
                return
            # the shim's own: afpacket mode, or what the stamper leaves (IP options)
            if not is_input:  # clock sync: the guest must stamp it with its own clock
                self._send(self.ports[guest], self._complete(frame, status), "forwarded_game")
                return
            try:
                out = trailer.append(frame, stamp_ns)
            except ValueError:
                self.counters["dropped_truncated"] += 1
                return
            if status & TP_STATUS_CSUMNOTREADY:
                trailer.complete_udp_checksum(out)
            if not stamp_ns:
                self.counters["zero_stamp_inputs"] += 1
            self._send(self.ports[guest], out, "forwarded_game")
            self._rows += (guest, hdr.player, hdr.seq, stamp_ns, time.time_ns())
            return
        dst = bytes(frame[0:6])
        if dst[0] & 1:  # broadcast / multicast: every guest
            for sock in self.ports.values():
                self._send(sock, self._complete(frame, status), "forwarded_other")
        elif dst in self.by_mac:
            self._send(self.ports[self.by_mac[dst]], self._complete(frame, status),
                       "forwarded_other")
        else:
            self.counters["dropped_unknown_dst"] += 1

    @staticmethod
    def _complete(frame: bytes, status: int) -> bytes | bytearray:
        """A frame fit to forward: cut to its IP total length (nothing a client appends
        reaches a guest), its partial UDP checksum completed."""
        frame = trailer.cut_to_ip_length(frame)
        if status & TP_STATUS_CSUMNOTREADY:
            buf = bytearray(frame)
            trailer.complete_udp_checksum(buf)
            return buf
        return frame

    def drain(self, sock: socket.socket, from_uplink: bool) -> None:
        """Every frame queued on a socket without a ring (recvmsg, one call per frame)."""
        while True:
            try:
                frame, anc, _fl, addr = sock.recvmsg(65535, 512)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # a port going away (ENETDOWN) must not lose the log
                self.counters[f"recv_error_{e.errno}"] += 1
                return
            if addr[2] == PACKET_OUTGOING:
                continue  # our own sends, looped back to the packet socket
            self._handle(frame, *parse_anc(anc), from_uplink)

    def drain_rx_ring(self, ring: RxRing, from_uplink: bool) -> None:
        """Every frame the kernel has put in a socket's receive ring (no call per frame)."""
        for frame, stamp_ns, status, tag in ring.read():
            self._handle(frame, stamp_ns, status, tag, from_uplink)

    def _handle(self, frame: bytes, stamp_ns: int, status: int, tag: bytes,
                from_uplink: bool) -> None:
        if tag:  # the kernel took the tag off (rx offload): put it back, as sent
            frame = frame[:12] + tag + frame[12:]
        if from_uplink:
            if self.capture is not None:
                self.capture.write(CAPTURE_RECORD.pack(stamp_ns, len(frame)) + frame)
            self.from_uplink(frame, stamp_ns, status)
        else:
            self.reply_kinds[reply_kind(frame, self.replies_to)] += 1
            self._send(self.up, self._complete(frame, status), "forwarded_reply")

    def run(self, ready_file: Path | None = None) -> dict:
        ep = select.epoll()
        socks = {self.up.fileno(): (self.rx.get(self.up.fileno(), self.up), True)}
        socks.update({s.fileno(): (self.rx.get(s.fileno(), s), False)
                      for s in self.ports.values()})
        for fd in socks:
            ep.register(fd, select.EPOLLIN)
        if ready_file:
            ready_file.write_text(f"{os.getpid()}\n")
        last = time.monotonic()
        try:
            while not self._stop:
                for fd, _ in ep.poll(0.05 if self.ring else 0.2):
                    src, up = socks[fd]
                    if isinstance(src, RxRing):
                        self.drain_rx_ring(src, up)
                    else:
                        self.drain(src, up)
                self.flush_truth()
                now = time.monotonic()
                if self.ring is not None and now - last >= 0.02:
                    self.longest_drain_gap = max(self.longest_drain_gap, now - last)
                    last = now
                    self.drain_ring()
        finally:
            ep.close()
        return self.finish()

    def flush_truth(self) -> None:
        if self._rows:
            self.truth.write_int_rows(self._rows)
            self._rows.clear()

    def drain_ring(self) -> None:
        """The stamper's records since the last batch, raw, into the spool (one write
        per batch): they become shim_inputs.csv rows in finish(), after the load."""
        rec = self.ring.read()
        if len(rec):
            self.spool.add(rec)

    def finish(self) -> dict:
        self.flush_truth()
        stamper_stats, ring_use = {}, {}
        if self.ring is not None:
            self.drain_ring()
            stamper_stats = self.ring.stats()
            ring_use = {"ring_bytes": self.ring.size, "ring_peak_fill": self.ring.peak_fill,
                        "ring_longest_drain_gap_s": round(self.longest_drain_gap, 4)}
            self.ring.close()
            unknown = self.spool.write_csv(self.truth, self.by_ip)
            if unknown:
                self.counters["ring_unknown_guest"] += unknown
        self.truth.close()
        self.stamp_switch.close()
        if self.capture is not None:
            self.capture.close()
        for r in self.rx.values():
            self.counters["rx_ring_frames"] += r.read_frames
            r.close()
        with ThreadPoolExecutor(max_workers=PORT_THREADS) as ex:  # as they were opened
            list(ex.map(socket.socket.close, (self.up, *self.ports.values())))
        zero = self.counters.get("zero_stamp_inputs", 0) + stamper_stats.get("zero_stamp", 0)
        summary = {"stamper": self.stamper, "counters": dict(self.counters),
                   "forwarded_reply_kinds": dict(self.reply_kinds),
                   "replies_in_kernel": self.replies_to.hex(":") if self.replies_to else None,
                   "ground_truth_rows": self.truth.rows,
                   "truth_source": "ring buffer" if stamper_stats else "packet socket",
                   "stamper_counters": stamper_stats, "zero_stamp_inputs": zero,
                   "ring_drops": stamper_stats.get("ring_drops", 0), **ring_use}
        write_json(self.out_dir / "shim_summary.json", summary)
        return summary


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uplink", required=True, help="interface the clients' frames arrive on")
    p.add_argument("--guest", action="append", required=True, type=GuestPort.parse,
                   metavar="N,IFNAME,IP,MAC", help="a guest port; repeat per guest")
    p.add_argument("--game-port", type=int, default=GAME_PORT)
    p.add_argument("--stamper", choices=STAMPERS, default=default("stamper"),
                   help="who appends trailers to game inputs: this process (afpacket), or "
                        "the tc BPF stamper (then the shim only logs ground truth; default "
                        "%(default)s, the spec's)")
    p.add_argument("--cpus", help="pin to these CPUs, e.g. 0 or 0,2")
    p.add_argument("--no-rx-ring", action="store_true",
                   help="read with recvmsg, one call per frame, instead of the mmapped "
                        "TPACKET_V2 receive rings (to compare: benchmarks/bench_paths.py)")
    p.add_argument("--out", type=Path, required=True, help="directory for shim_inputs.csv")
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--capture", type=Path,
                   help="write every uplink frame with its kernel stamp here (uplink.cap)")
    p.add_argument("--replies-in-kernel", metavar="CLIENT_MAC",
                   help="the tc reply program on the guests' ports forwards their IPv4 "
                        "frames to this MAC: leave those to it")
    p.add_argument("--truth-prog-id", type=int, metavar="ID",
                   help="--stamper bpf: the attached stamper's program id; ground truth "
                        "comes from its ring buffer and its inputs skip this process")


def run(a: argparse.Namespace) -> int:
    if a.cpus:
        os.sched_setaffinity(0, {int(c) for c in a.cpus.split(",")})
    shim = Shim(ShimConfig(a.uplink, a.guest, a.game_port, a.out, a.stamper, a.capture,
                           a.truth_prog_id, rx_ring=not a.no_rx_ring,
                           replies_to=bytes.fromhex(a.replies_in_kernel.replace(":", ""))
                           if a.replies_in_kernel else None))
    signal.signal(signal.SIGTERM, shim.stop)
    signal.signal(signal.SIGINT, shim.stop)
    summary = shim.run(a.ready_file)
    print(summary, file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hostside.shim", description=__doc__)
    add_args(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
