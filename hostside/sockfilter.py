"""The shim's classic BPF socket filters (attaching one needs the socket, so CAP_NET_RAW
for an AF_PACKET one): what the kernel already forwards (the tc stamper's inputs, the
tc reply program's replies) never wakes the shim."""

from __future__ import annotations

import socket
import struct

from fpsmodel import wire
from hostside import trailer

SO_ATTACH_FILTER = 26
# classic BPF opcodes (linux/filter.h)
_LDH, _LDB, _LDW, _LDLEN, _AND, _ADD, _TAX = 0x28, 0x30, 0x20, 0x80, 0x54, 0x04, 0x07
_LDB_ABS = _LDB  # BPF_LD | BPF_B | BPF_ABS: at SKF_AD_OFF + n, an ancillary value
SKF_AD_OFF, SKF_AD_VLAN_TAG_PRESENT = -0x1000, 48
_JEQ, _JSET, _JGE, _JGEX, _JA, _RET = 0x15, 0x45, 0x35, 0x3D, 0x05, 0x06


def input_filter_program(game_port: int, guest_ips: list[bytes]) -> list[tuple[int, int, int, int]]:
    """A classic BPF program that refuses the frames the tc stamper forwards as player
    inputs (stamper.bpf.c's rule: unfragmented IPv4/UDP without options to the game
    port of a guest, complete, game magic, input type, a full header) and accepts all
    others.  (code, jt, jf, k) tuples; "A" below marks a jump to the accept trampoline."""
    a = "A"
    # short frames first: a load past the end would make the kernel drop the frame
    checks = [(_LDLEN, 0, 0, 0), (_JGE, 0, a, 42 + 16),  # room for the game header's seq
              (_LDH, 0, 0, 12), (_JEQ, 0, a, 0x0800), (_LDB, 0, 0, 23),
              (_JEQ, 0, a, trailer.IPPROTO_UDP), (_LDH, 0, 0, 20), (_JSET, a, 0, 0x3FFF),
              (_LDB, 0, 0, 14), (_AND, 0, 0, 0x0F), (_JEQ, 0, a, 5),
              (_LDH, 0, 0, 16), (_JGE, 0, a, 28), (_ADD, 0, 0, trailer.ETH_HLEN), (_TAX, 0, 0, 0),
              (_LDLEN, 0, 0, 0), (_JGEX, 0, a, 0),  # the datagram is all in the frame
              (_LDH, 0, 0, 36), (_JEQ, 0, a, game_port), (_LDB, 0, 0, 42),
              (_JEQ, 0, a, wire.MAGIC), (_LDB, 0, 0, 44), (_JEQ, 0, a, wire.MSG_INPUT)]
    n = len(checks)  # the trampoline: checks[n] jumps over "accept" at n + 1
    # a jump from instruction i lands at i + 1 + offset: "accept" is n - i ahead
    prog = [(c, n - i if jt == a else jt, n - i if jf == a else jf, k)
            for i, (c, jt, jf, k) in enumerate(checks)]
    prog += [(_JA, 0, 0, 1), (_RET, 0, 0, 0x40000), (_LDW, 0, 0, 30)]
    m = len(guest_ips)
    for i, ip in enumerate(guest_ips):  # jt → drop, after the last compare and "accept"
        prog.append((_JEQ, m - i, 0, int.from_bytes(ip, "big")))
    prog += [(_RET, 0, 0, 0x40000), (_RET, 0, 0, 0)]
    return prog


def reply_filter_program(client_mac: bytes) -> list[tuple[int, int, int, int]]:
    """A classic BPF program for a guest port's socket that refuses what the tc reply
    program (guest-driver/bpf/reply.bpf.c) sends to the uplink in the kernel: untagged
    IPv4 frames to the client's MAC.  The tag's test is the kernel's VLAN_TAG_PRESENT
    ancillary load (SKF_AD_VLAN_TAG_PRESENT); a tagged frame stays the shim's."""
    hi, lo = int.from_bytes(client_mac[:4], "big"), int.from_bytes(client_mac[4:6], "big")
    accept, drop = (_RET, 0, 0, 0x40000), (_RET, 0, 0, 0)
    # a jump from instruction i lands at i + 1 + offset: "accept" is at 8, "drop" at 9
    prog = [(_LDB_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT) & 0xFFFFFFFF),
            (_JEQ, 0, 6, 0),
            (_LDH, 0, 0, 12), (_JEQ, 0, 4, 0x0800),
            (_LDW, 0, 0, 0), (_JEQ, 0, 2, hi),
            (_LDH, 0, 0, 4), (_JEQ, 1, 0, lo)]
    return [*prog, accept, drop]


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    import ctypes

    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it
