"""Build Ethernet/IPv4/UDP frames for the namespace tests."""

import socket
import struct
from typing import NamedTuple


class Ends(NamedTuple):
    """Both ends of a frame: MACs and IPv4 addresses, as text."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str


def _ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def udp_frame(ends: Ends, sport: int, dport: int, payload: bytes, extra: bytes = b"",
              options: bytes = b"") -> bytes:
    """A frame with a correct IP checksum, UDP checksum 0 (none), IP `options` (a
    multiple of 4 bytes), and `extra` bytes after the IP datagram (what a forging
    client would append)."""
    src_mac, dst_mac, src_ip, dst_ip = ends
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hlen = 20 + len(options)
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | hlen // 4, 0, hlen + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip)) + options
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + udp + extra


def arp_request(src_mac: str, src_ip: str, target_ip: str) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac(src_mac),
                       socket.inet_aton(src_ip), b"\0" * 6, socket.inet_aton(target_ip))
    return b"\xff" * 6 + mac(src_mac) + b"\x08\x06" + body


def icmp_echo(ends: Ends, ident: int, ip_total: int, extra: bytes = b"") -> bytes:
    """An ICMP echo request whose IP datagram is `ip_total` bytes, plus `extra` after it."""
    src_mac, dst_mac, src_ip, dst_ip = ends
    payload = bytes(range(256)) * ((ip_total - 28) // 256 + 1)
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + payload[:ip_total - 28]
    icmp = icmp[:2] + struct.pack("!H", _ip_checksum(icmp + b"\0" * (len(icmp) % 2))) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_total, 1, 0, 64, 1, 0,
                     socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + icmp + extra
