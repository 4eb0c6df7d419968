"""The shim's mmapped receive ring (hostside/pring.py) on a real veth: every frame, byte
for byte, in order, with the kernel's stamp and the VLAN tag the kernel took off."""

import socket
import time

from hostside.pring import RxRing
from hostside.shim import open_packet_socket
from tests.support.netns import Pair

from .frames import Ends, udp_frame


def _setns(fd: int) -> None:
    import ctypes
    import os

    if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def test_ring_hands_over_every_frame_with_its_stamp(ns_pair):
    import os

    p = ns_pair
    frames = [udp_frame(Ends(p.mac_a, p.mac_b, p.ip_a, p.ip_b), 4000, 4001, bytes([i]) * (i + 1))
              for i in range(200)]
    tagged = frames[0][:12] + b"\x81\x00\x00\x07" + frames[0][12:]  # VLAN 7
    fd = os.open(f"/run/netns/{p.b}", os.O_RDONLY)
    old = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(fd)
        stamp_switch = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stamp_switch.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS: stamps on
        sock = open_packet_socket(p.nic_b, stamps=True)
        ring = RxRing(sock, frames=64)  # fewer slots than frames: it must wrap around
        t0 = time.time_ns()
        got = []
        helper = Pair("unused")
        for chunk in range(0, len(frames), 50):
            helper.run(p.a, "send", p.nic_a, *(f.hex() for f in frames[chunk:chunk + 50]))
            got += list(ring.read())
        helper.run(p.a, "send", p.nic_a, tagged.hex())
        time.sleep(0.05)
        got += list(ring.read())
        ring.close()
        sock.close()
        stamp_switch.close()
    finally:
        _setns(old)
        os.close(fd)
        os.close(old)
    mine = [g for g in got if not g[3] and g[0][12:14] == b"\x08\x00" and g[0][23] == 17]
    assert [g[0] for g in mine] == frames  # every frame, byte for byte, in order
    stamps = [g[1] for g in mine]
    assert stamps == sorted(stamps) and t0 < stamps[0] and stamps[-1] < time.time_ns()
    vlan = [g for g in got if g[3]]
    assert len(vlan) == 1 and vlan[0][3] == b"\x81\x00\x00\x07"
    assert vlan[0][0][:12] + vlan[0][3] + vlan[0][0][12:] == tagged


def test_reply_filter_refuses_only_what_the_reply_program_takes(ns_pair):
    """A guest port's socket, with the kernel's reply path on (sockfilter.reply_filter_program):
    untagged IPv4 frames to the client's MAC are refused (the tc reply program sends
    them); ARP to it, IPv4 to another MAC, and a tagged frame still reach the shim."""
    import os

    from hostside.sockfilter import attach_filter, reply_filter_program

    p = ns_pair
    client = "02:67:62:00:00:01"
    to_client = udp_frame(Ends(p.mac_a, client, p.ip_a, p.ip_b), 4000, 4001, b"update")
    arp = bytes.fromhex(client.replace(":", "")) + to_client[6:12] + b"\x08\x06" + bytes(28)
    to_other = udp_frame(Ends(p.mac_a, p.mac_b, p.ip_a, p.ip_b), 4000, 4001, b"other")
    tagged = to_client[:12] + b"\x81\x00\x00\x07" + to_client[12:]
    fd = os.open(f"/run/netns/{p.b}", os.O_RDONLY)
    old = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(fd)
        sock = open_packet_socket(p.nic_b, stamps=False)
        attach_filter(sock, reply_filter_program(bytes.fromhex(client.replace(":", ""))))
        ring = RxRing(sock, frames=64)
        Pair("unused").run(p.a, "send", p.nic_a,
                           *(f.hex() for f in (to_client, arp, to_other, tagged, to_client)))
        time.sleep(0.05)
        got = list(ring.read())
        ring.close()
        sock.close()
    finally:
        _setns(old)
        os.close(fd)
        os.close(old)
    frames = [g[0][:12] + g[3] + g[0][12:] if g[3] else g[0] for g in got]
    assert to_client not in frames
    assert arp in frames and to_other in frames and tagged in frames
