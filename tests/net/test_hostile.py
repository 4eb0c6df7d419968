"""Hostile frames through the namespace path: host side (BPF stamper + shim, or the
AF_PACKET shim alone) and the guests' tc BPF decoders, with game servers behind them.

Seeded and reproducible (tests/hostile.py, scapy).  What must hold:
- nothing crashes or stalls: the shim and every server are alive afterwards and a
  valid input sent then is delivered with its host stamp, to the nanosecond;
- no stamp from a client byte reaches a server: no server record carries a stamp in
  the forged range, and every accepted input's stamp is the host's ground truth;
- no frame reaches a guest it was not addressed to, and nothing a client appended
  after an IPv4 datagram reaches one (every frame a guest saw is a sent frame cut
  to its IP length, or that plus the host's own trailer);
- non-game traffic (UDP to other ports, ARP) arrives byte for byte.
"""

import subprocess
import sys
import time
from collections import Counter

import pytest

from gamebed.topology import CLIENT_IP, CLIENT_MAC
from hostside import trailer
from tests.hostile import (
    FORGED_RANGE,
    HostileFrames,
    Target,
    addressed,
    check_server_records,
    liveness_frames,
    read_frames,
    send_frames,
)
from tests.support.netns import PROG, netns_testbed

SEED = 20261124
PPS = 6000


@pytest.fixture
def bed(netns_ok, tmp_path, request):
    with netns_testbed(tmp_path, request.param, 3) as made:
        yield made


def _sniff(ns: str, nic: str, seconds: float, path) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, PROG, "sniffto", nic,
                          str(seconds), str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def _send_through(bed, tmp_path, hostile) -> tuple[dict[int, list[bytes]], list[Target]]:
    """Send every frame from the client, sniffing each guest's NIC; then one valid
    input per guest (liveness).  Returns what each guest saw, and the targets."""
    t = bed.topo
    targets = [Target(g.index, g.nic.mac, g.nic.ip) for g in t.guests]
    seconds = len(hostile) / PPS + 4
    sniffers = {g.index: _sniff(g.netns, g.nic_name, seconds, tmp_path / f"seen{g.index}")
                for g in t.guests}
    print("sender:", send_frames(t.client_ns, t.client_nic, [h.frame for h in hostile],
                                 tmp_path / "frames.bin", PPS))
    for p in sniffers.values():
        p.communicate(timeout=seconds + 30)
    send_frames(t.client_ns, t.client_nic, liveness_frames(targets, CLIENT_MAC, CLIENT_IP,
                                                           t.game_port),
                tmp_path / "live.bin", 100)
    time.sleep(0.5)
    # nothing crashed: the shim and every server still run
    assert bed.host.shim is not None and bed.host.shim.alive(), "the shim died"
    for ready, proc in bed.backend.servers.values():
        assert proc.alive(), f"a game server died ({ready.parent})"
    return {i: read_frames(tmp_path / f"seen{i}") for i in sniffers}, targets


def _client_kernel_icmp(f: bytes) -> bool:
    """The client namespace's own ICMP (port unreachable: the servers answer the made-up
    players' source ports) and any kernel's ICMPv6 (router solicitations of the links'
    ends; MLD reports, which come behind a hop-by-hop header), not frames of the test
    (its IPv6 frames are UDP with no extension header)."""
    v4 = (len(f) >= 34 and f[12:14] == b"\x08\x00" and f[23] == 1
          and f[26:30] == bytes(map(int, CLIENT_IP.split("."))))
    if len(f) < 54 or f[12:14] != b"\x86\xdd":
        return v4
    nxt = f[20]
    if nxt == 0 and len(f) >= 56:  # hop-by-hop: its next header is its first byte
        nxt = f[54]
    return nxt == 58


def _check_guest_frames(hostile, seen, targets) -> None:
    for t in targets:
        allowed = {trailer.cut_to_ip_length(h.frame) for h in hostile if addressed(h, t)}
        for f in seen[t.index]:
            if f in allowed or _client_kernel_icmp(f):
                continue
            dec = trailer.decode(f)  # the host's own trailer on a frame it was sent
            assert dec is not None and dec[0] in allowed, \
                f"guest {t.index} got a frame it was not sent or not addressed: {f[:64].hex()}"
            assert dec[1] not in FORGED_RANGE, "a forged trailer reached a guest"
        must = Counter(trailer.cut_to_ip_length(h.frame) for h in hostile
                       if h.deliver and (h.broadcast or h.guest == t.index))
        missing = must - Counter(seen[t.index])
        assert not missing, f"guest {t.index}: {sum(missing.values())} non-game frames " \
                            f"did not arrive byte for byte"


@pytest.mark.parametrize("bed,n", [("bpf", 100_000), ("afpacket", 20_000)],
                         indirect=["bed"])
def test_hostile_frames_through_host_side_and_decoders(bed, tmp_path, n):
    point = tmp_path / "point"
    with bed, bed.mode("host", point):
        t = bed.topo
        gen = HostileFrames(SEED, [Target(g.index, g.nic.mac, g.nic.ip) for g in t.guests],
                            CLIENT_MAC, CLIENT_IP, t.game_port)
        hostile = gen.stream(n, pool=min(n, 8000))
        kinds = Counter(h.kind for h in hostile)
        assert len(kinds) >= 17, kinds  # every kind is in the stream
        seen, targets = _send_through(bed, tmp_path, hostile)
    _check_guest_frames(hostile, seen, targets)
    accepted = check_server_records(point, [t.index for t in targets], hostile)
    assert accepted > 1000  # the valid inputs among them were played
    print(f"{n} frames, {len(kinds)} kinds; guests saw "
          f"{ {i: len(v) for i, v in seen.items()} }; servers accepted {accepted}")
