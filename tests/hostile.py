"""Hostile frames for the host side and the guest drivers, built with scapy (no privileges).

`HostileFrames(seed, targets, client)` makes a reproducible stream: every frame kind
below, with seeded random fields.  scapy builds each distinct frame (about 0.5 ms
each here), so a long stream replays a pool of distinct frames in a seeded order;
an input replayed is still a frame the stamper, shim and decoder must handle (the
server drops it as a replay).  Every stamp a "client" writes is in FORGED_RANGE, far
from any real stamp, so a forged stamp that reached a server is recognisable.

Kinds: valid inputs (some with a forged trailer, some with two), inputs with IP
options, clock sync with a forged trailer, VLAN-tagged and IPv6 frames with forged
trailers, fragments, truncated headers, tot_len above and below the frame's length
(the shorter one padded with a forged trailer made to match it), zero-length UDP,
random payloads to the game port, UDP to other ports, frames to nobody, and bursts
of ARP.  `Kind.deliver` says whether the frame must reach its guest byte for byte.
"""

from __future__ import annotations

import csv
import json
import random
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, UDP, IPOption
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from fpsmodel import wire
from hostside import trailer

FORGED_BASE = 1_500_000_000_000_000_000  # 2017: below any stamp a run takes
FORGED_RANGE = range(FORGED_BASE, FORGED_BASE + (1 << 32))
NOBODY_MAC, NOBODY_IP = "02:00:00:00:99:99", "198.18.99.99"


@dataclass(frozen=True)
class Target:
    index: int
    mac: str
    ip: str


@dataclass(frozen=True)
class Hostile:
    kind: str
    frame: bytes
    guest: int | None  # the guest it is addressed to (None: none, or broadcast)
    deliver: bool  # must reach `guest` (every guest if broadcast) byte for byte
    broadcast: bool = False


def forged(tot_len: int, rng: random.Random) -> bytes:
    """A trailer a client made itself: right magic and check word, a forged stamp."""
    return trailer._TRAILER.pack(trailer.MAGIC, trailer.check_word(tot_len),
                                 FORGED_BASE + rng.randrange(1 << 32))


class HostileFrames:
    def __init__(self, seed: int, targets: list[Target], client_mac: str, client_ip: str,
                 game_port: int = wire.GAME_PORT, session: int = 1) -> None:
        self.rng = random.Random(seed)
        self.targets, self.cmac, self.cip = targets, client_mac, client_ip
        self.port, self.codec = game_port, wire.Codec(session)
        self.seq: dict[tuple[int, int], int] = {}
        self.kinds = [getattr(self, n) for n in dir(self) if n.startswith("k_")]

    # --- helpers ---------------------------------------------------------------------
    def _eth(self, t: Target):
        return Ether(src=self.cmac, dst=t.mac)

    def _ip(self, t: Target, **kw):
        return IP(src=self.cip, dst=t.ip, **kw)

    def _udp_game(self, t: Target, payload: bytes, ip_kw: dict | None = None):
        return self._eth(t) / self._ip(t, **(ip_kw or {})) / UDP(
            sport=self.rng.randrange(1024, 65535), dport=self.port) / payload

    def _input(self, t: Target) -> bytes:
        player = self.rng.randrange(16)
        seq = self.seq.get((t.index, player), 0) + 1
        self.seq[(t.index, player)] = seq
        return self.codec.encode_input(player, seq, time.time_ns(), wire.PlayerInput(
            move=(self.rng.uniform(-1, 1), 0.0, 0.0), view=(self.rng.uniform(0, 360), 0, 0)))

    def _pick(self) -> Target:
        return self.rng.choice(self.targets)

    # --- kinds (each returns one frame) -------------------------------------------------
    def k_input(self, t):
        return Hostile("input", bytes(self._udp_game(t, self._input(t))), t.index, False)

    def k_input_forged(self, t):
        f = bytes(self._udp_game(t, self._input(t)))
        return Hostile("input+forged trailer", f + forged(len(f) - 14, self.rng), t.index, False)

    def k_input_two_trailers(self, t):
        f = bytes(self._udp_game(t, self._input(t)))
        tot = len(f) - 14
        return Hostile("input+two trailers", f + forged(tot, self.rng) + forged(tot + 16, self.rng),
                       t.index, False)

    def k_input_options(self, t):
        opt = IPOption(b"\x01\x01\x01\x00")  # NOPs and an end: 4 bytes
        f = bytes(self._udp_game(t, self._input(t), {"options": [opt]}))
        return Hostile("input+IP options+forged", f + forged(len(f) - 14, self.rng), t.index,
                       False)

    def k_sync_forged(self, t):
        f = bytes(self._udp_game(t, self.codec.encode_sync_req(
            self.rng.randrange(16), self.rng.randrange(1 << 20), time.time_ns())))
        return Hostile("clock sync+forged", f + forged(len(f) - 14, self.rng), t.index, False)

    def k_vlan(self, t):
        # VLAN 0 (a priority tag) too: a guest's kernel would deliver that to its server
        f = bytes(Ether(src=self.cmac, dst=t.mac) / Dot1Q(vlan=self.rng.choice((0, 1, 4094)))
                  / self._ip(t) / UDP(sport=5000, dport=self.port) / self._input(t))
        return Hostile("VLAN input+forged", f + forged(len(f) - 18, self.rng), t.index, False)

    def k_ipv6(self, t):
        f = bytes(self._eth(t) / IPv6(src="fd00::1", dst="fd00::2")
                  / UDP(sport=5000, dport=self.port) / self._input(t))
        return Hostile("IPv6+forged", f + forged(len(f) - 14, self.rng), t.index, False)

    def k_fragment(self, t):
        first = self.rng.random() < 0.5
        f = bytes(self._udp_game(t, self._input(t), {"flags": "MF" if first else 0,
                                                    "frag": 0 if first else 37}))
        return Hostile("fragment+forged", f + forged(len(f) - 14, self.rng), t.index, False)

    def k_truncated(self, t):
        f = bytes(self._udp_game(t, self._input(t)))
        return Hostile("truncated header", f[:self.rng.randrange(1, 42)], t.index, False)

    def k_totlen_long(self, t):
        f = bytearray(bytes(self._udp_game(t, self._input(t))))
        f[16:18] = (len(f) - 14 + self.rng.randrange(1, 400)).to_bytes(2, "big")
        return Hostile("tot_len > frame", bytes(f), t.index, False)

    def k_totlen_short(self, t):
        """tot_len 16 short, the last 16 bytes a trailer forged to match it."""
        f = bytes(self._ip(t) / UDP(sport=5000, dport=self.port) / self._input(t))
        ip = IP(f)
        ip.len = len(f) - 16
        del ip.chksum
        body = bytes(ip)[:len(f) - 16]
        frame = bytes(self._eth(t)) + body
        return Hostile("tot_len < frame, forged", frame + forged(len(body), self.rng),
                       t.index, False)

    def k_zero_udp(self, t):
        return Hostile("zero-length UDP", bytes(self._udp_game(t, b"")), t.index, False)

    def k_garbage_game(self, t):
        n = self.rng.choice((1, 7, 31, 296, 400, 1400))
        return Hostile("garbage to game port", bytes(self._udp_game(t, self.rng.randbytes(n))),
                       t.index, False)

    def k_other_port(self, t):
        f = bytes(self._eth(t) / self._ip(t) / UDP(sport=5000, dport=self.rng.choice(
            (53, 5555, self.port + 1))) / self.rng.randbytes(self.rng.randrange(0, 1200)))
        return Hostile("UDP to another port", f, t.index, True)

    def k_other_port_forged(self, t):
        f = bytes(self._eth(t) / self._ip(t) / UDP(sport=5000, dport=5556) / b"not-game")
        # arrives cut: the IP datagram byte for byte, without what was appended
        return Hostile("other port+forged", f + forged(len(f) - 14, self.rng), t.index, False)

    def k_nobody(self, t):
        tgt = Target(-1, NOBODY_MAC, NOBODY_IP)
        f = bytes(self._udp_game(tgt, self._input(t)))
        return Hostile("to nobody", f + forged(len(f) - 14, self.rng), None, False)

    def k_arp(self, t):
        f = bytes(Ether(src=self.cmac, dst="ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=self.cmac, psrc=self.cip, pdst=t.ip))
        return Hostile("ARP request", f, None, True, broadcast=True)

    # --- streams --------------------------------------------------------------------
    def distinct(self, n: int) -> list[Hostile]:
        """n distinct frames, kinds in equal shares, in a seeded order; ARP comes in bursts
        of 10 to one target."""
        out = []
        while len(out) < n:
            kind = self.rng.choice(self.kinds)
            t = self._pick()
            out.extend([kind(t)] * (10 if kind == self.k_arp else 1))
        return out[:n]

    def stream(self, n: int, pool: int) -> list[Hostile]:
        """n frames: `pool` distinct ones, then replays of them in a seeded order."""
        base = self.distinct(min(n, pool))
        return base + [self.rng.choice(base) for _ in range(n - len(base))]


def addressed(h: Hostile, t: Target) -> bool:
    """Whether frame h may reach guest t: its destination MAC or IPv4 address is t's, or
    it is a broadcast."""
    f = h.frame
    if len(f) >= 6 and f[0] & 1:
        return True
    if len(f) >= 6 and f[:6] == bytes.fromhex(t.mac.replace(":", "")):
        return True
    return (trailer.ip_total_length(f) is not None and len(f) >= 34
            and f[30:34] == bytes(map(int, t.ip.split("."))))


def write_frames(path, frames) -> None:
    """Frames as nsprog.py's sendfile reads them: u32 length (little-endian), frame."""
    with open(path, "wb") as f:
        for fr in frames:
            f.write(struct.pack("<I", len(fr)) + fr)


def read_frames(path) -> list[bytes]:
    data, i, out = path.read_bytes(), 0, []
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def _rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def vlan_input_keys(hostile) -> set[tuple[str, str, str]]:
    """(guest, player, seq) of the VLAN-tagged inputs: one with VLAN 0 (a priority tag)
    reaches its server with the guest's own stamp, never through a stamper."""
    out = set()
    for h in hostile:
        if h.kind.startswith("VLAN"):
            hdr = wire.HEADER.unpack_from(h.frame, 14 + 4 + 20 + 8)
            out.add((str(h.guest), str(hdr[3]), str(hdr[5])))
    return out


LIVENESS_PLAYER = 63  # the valid input sent after the storm: player 63, seq 1
NSPROG = Path(__file__).with_name("net") / "nsprog.py"


def send_frames(netns: str, nic: str, frames: list[bytes], path: Path, pps: float) -> dict:
    """Send raw frames from a namespace at `pps` (nsprog.py sendfile); its report."""
    write_frames(path, frames)
    r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, str(NSPROG), "sendfile",
                        nic, str(path), str(pps)], capture_output=True, text=True,
                       timeout=len(frames) / pps + 60, check=True)
    return json.loads(r.stdout)


def liveness_frames(targets: list[Target], client_mac: str, client_ip: str,
                    game_port: int = wire.GAME_PORT) -> list[bytes]:
    """One valid input to every target, from a player the storm never used."""
    codec = wire.Codec(1)
    return [bytes(Ether(src=client_mac, dst=t.mac) / IP(src=client_ip, dst=t.ip)
                  / UDP(sport=6000, dport=game_port)
                  / codec.encode_input(LIVENESS_PLAYER, 1, time.time_ns(), wire.PlayerInput()))
            for t in targets]


def check_server_records(point, guests: list[int], hostile) -> int:
    """No server record carries a forged stamp; every accepted input's stamp is one the
    host logged for it (VLAN inputs aside); the input sent after the storm reached every
    guest.  Returns how many inputs the servers accepted."""
    truth: dict[tuple, set[int]] = {}  # replays: one key, several arrivals
    for r in _rows(point / "shim_inputs.csv"):
        truth.setdefault((r["guest"], r["player"], r["seq"]), set()).add(int(r["host_ns"]))
    accepted, vlan = 0, vlan_input_keys(hostile)
    for g in guests:
        for r in _rows(point / f"guest{g}" / "server_inputs.csv"):
            stamp = int(r["kernel_ns"])
            assert stamp not in FORGED_RANGE, f"a client's stamp reached server {g}: {r}"
            if r["verdict"] == "ok":
                accepted += 1
                key = (r["guest"], r["player"], r["seq"])
                assert stamp in truth.get(key, ()) or key in vlan, r
    ok = {(r["guest"], r["player"], r["seq"]) for g in guests
          for r in _rows(point / f"guest{g}" / "server_inputs.csv") if r["verdict"] == "ok"}
    last = {(str(g), str(LIVENESS_PLAYER), "1") for g in guests}
    assert last <= ok & set(truth), "the input sent after the storm was not delivered"
    return accepted
