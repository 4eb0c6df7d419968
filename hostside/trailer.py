"""The timestamp trailer (guest-driver/TRAILER.md) and frame helpers (no privileges).

Pure functions on bytes, shared by the shim, the tests and the benchmarks.  This
module owns the trailer's constants: guest-driver/bpf/trailer.h and both kernel
patches are checked against it (tests/unit/test_formats.py).
"""

from __future__ import annotations

import struct

MAGIC = 0x47425453  # "GBTS"
LEN = 16
ETH_HLEN = 14
ETH_DATA_LEN = 1500
# the MTU of every host-side port that feeds a guest: a full-size datagram plus a trailer
PORT_MTU = ETH_DATA_LEN + LEN
ETH_P_IP = 0x0800
IPPROTO_UDP = 17
_TRAILER = struct.Struct("!IIQ")


def check_word(tot_len: int) -> int:
    return ((tot_len << 16) | (tot_len ^ 0xFFFF)) & 0xFFFFFFFF


def ip_total_length(frame: bytes | bytearray | memoryview) -> int | None:
    """IPv4 total length of an Ethernet frame, or None if it is not IPv4."""
    if len(frame) < ETH_HLEN + 20 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    return int.from_bytes(frame[16:18], "big")


def append(frame: bytes | bytearray, stamp_ns: int) -> bytearray:
    """Cut an IPv4 frame to its IP total length and append a trailer."""
    tot = ip_total_length(frame)
    if tot is None or ETH_HLEN + tot > len(frame):
        raise ValueError("not a complete IPv4 frame")
    out = bytearray(frame[:ETH_HLEN + tot])
    out += _TRAILER.pack(MAGIC, check_word(tot), stamp_ns)
    return out


def cut_to_ip_length(frame: bytes | bytearray) -> bytes | bytearray:
    """An IPv4 frame cut to its IP total length: whatever a client appended after the
    datagram (a forged trailer) never reaches a guest.  Other frames, and IPv4 frames
    shorter than their total length (the guest's kernel drops those), are unchanged."""
    tot = ip_total_length(frame)
    if tot is None or ETH_HLEN + tot >= len(frame):
        return frame
    return frame[:ETH_HLEN + tot]


def stamper_takes(frame: bytes | bytearray, game_port: int) -> bool:
    """Whether the tc BPF stamper (guest-driver/bpf/stamper.bpf.c) forwards this frame
    itself, given it is game traffic to a known guest: an unfragmented IPv4/UDP datagram
    without IP options, complete in the frame.  The shim handles all others."""
    tot = ip_total_length(frame)
    return (tot is not None and frame[14] & 0x0F == 5 and frame[23] == IPPROTO_UDP
            and not int.from_bytes(frame[20:22], "big") & 0x3FFF
            and 28 <= tot and ETH_HLEN + tot <= len(frame)
            and udp_dport(frame) == game_port)


def decode(frame: bytes | bytearray) -> tuple[bytes, int] | None:
    """The decoder's rule: (frame without trailer, stamp) or None to leave it alone."""
    tot = ip_total_length(frame)
    if tot is None or len(frame) != ETH_HLEN + tot + LEN:
        return None
    magic, check, ns = _TRAILER.unpack_from(frame, ETH_HLEN + tot)
    if magic != MAGIC or check != check_word(tot) or ns == 0:
        return None
    return bytes(frame[:ETH_HLEN + tot]), ns


def udp_checksum_offsets(frame: bytes | bytearray) -> tuple[int, int, int] | None:
    """(l3 offset, l4 offset, udp length) of an unfragmented IPv4/UDP frame."""
    if ip_total_length(frame) is None or frame[23] != IPPROTO_UDP:
        return None
    l4 = ETH_HLEN + (frame[14] & 0x0F) * 4
    if len(frame) < l4 + 8:
        return None
    return ETH_HLEN, l4, int.from_bytes(frame[l4 + 4:l4 + 6], "big")


def complete_udp_checksum(frame: bytearray) -> bool:
    """Fill in a full UDP checksum (a veth may hand us a partial one: CSUMNOTREADY)."""
    off = udp_checksum_offsets(frame)
    if off is None:
        return False
    l3, l4, ulen = off
    if l4 + ulen > len(frame) or ulen < 8:
        return False
    frame[l4 + 6:l4 + 8] = b"\0\0"
    data = bytes(frame[l3 + 12:l3 + 20]) + b"\0\x11" + ulen.to_bytes(2, "big")
    data += bytes(frame[l4:l4 + ulen])
    if len(data) % 2:
        data += b"\0"
    # ones'-complement sum over native-order words, folded; byte order is symmetric
    s = sum(memoryview(data).cast("H"))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    c = ~s & 0xFFFF
    frame[l4 + 6:l4 + 8] = (c or 0xFFFF).to_bytes(2, "little")
    return True


def udp_dport(frame: bytes | bytearray) -> int | None:
    off = udp_checksum_offsets(frame)
    return None if off is None else int.from_bytes(frame[off[1] + 2:off[1] + 4], "big")
