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

import csv
import struct
import subprocess
import sys
import time
from collections import Counter

import pytest

from fpsmodel import wire
from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec
from gamebed.topology import CLIENT_IP, CLIENT_MAC
from hostside import trailer
from tests.hostile import FORGED_RANGE, HostileFrames, Target, addressed
from vm import make_testbed

from .conftest import PROG, Pair

SEED = 20261124
PPS = 6000


def write_frames(path, frames) -> None:
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


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def bed(netns_ok, tmp_path, request):
    spec = ExperimentSpec(guest_counts=(3,), modes=("host",), stamper=request.param,
                          placement="dynamic", backend="netns")
    m = Manifest(new_prefix(), state_dir=tmp_path / "state")
    tb = make_testbed(spec, 3, tmp_path / "work", Runner(), m, print)
    yield tb
    tb.mode_stack.close()
    tb.stack.close()
    m.close()
    assert not m.path.exists()


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
    write_frames(tmp_path / "frames.bin", [h.frame for h in hostile])
    seconds = len(hostile) / PPS + 4
    sniffers = {g.index: _sniff(g.netns, g.nic_name, seconds, tmp_path / f"seen{g.index}")
                for g in t.guests}
    r = subprocess.run(["ip", "netns", "exec", t.client_ns, sys.executable, PROG, "sendfile",
                        t.client_nic, str(tmp_path / "frames.bin"), str(PPS)],
                       capture_output=True, text=True, timeout=seconds + 60, check=True)
    print("sender:", r.stdout.strip())
    for p in sniffers.values():
        p.communicate(timeout=seconds + 30)
    return {i: read_frames(tmp_path / f"seen{i}") for i in sniffers}, targets


def _liveness(bed) -> None:
    """A valid input to every guest after the storm: each must be delivered (checked in
    the records), and the shim and servers must still be running."""
    helper, t = Pair("unused"), bed.topo
    codec = wire.Codec(1)
    from .frames import udp_frame
    frames = [udp_frame(CLIENT_MAC, g.nic.mac, CLIENT_IP, g.nic.ip, 6000, wire.GAME_PORT,
                        codec.encode_input(63, 1, time.time_ns(), wire.PlayerInput())).hex()
              for g in t.guests]
    helper.run(t.client_ns, "send", t.client_nic, *frames)
    time.sleep(0.5)
    assert bed.host.shim is not None and bed.host.shim.alive(), "the shim died"
    for ready, proc in bed.backend.servers:
        assert proc.alive(), f"a game server died ({ready.parent})"


def _client_kernel_icmp(f: bytes) -> bool:
    """The client namespace's own ICMP (port unreachable: the servers answer the made-up
    players' source ports) and any kernel's ICMPv6 (router solicitations of the links'
    ends), not frames of the test (its IPv6 frames are UDP)."""
    v4 = (len(f) >= 34 and f[12:14] == b"\x08\x00" and f[23] == 1
          and f[26:30] == bytes(map(int, CLIENT_IP.split("."))))
    v6 = len(f) >= 54 and f[12:14] == b"\x86\xdd" and f[20] == 58
    return v4 or v6


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


def _vlan_input_keys(hostile) -> set[tuple[str, str, str]]:
    """(guest, player, seq) of the VLAN-tagged inputs: one with VLAN 0 (a priority tag)
    reaches its server with the guest's own stamp, never through a stamper."""
    out = set()
    for h in hostile:
        if h.kind.startswith("VLAN"):
            hdr = wire.HEADER.unpack_from(h.frame, 14 + 4 + 20 + 8)
            out.add((str(h.guest), str(hdr[3]), str(hdr[5])))
    return out


def _check_servers(point, targets, hostile) -> int:
    truth: dict[tuple, set[int]] = {}  # replays: one key, several arrivals
    for r in rows(point / "shim_inputs.csv"):
        truth.setdefault((r["guest"], r["player"], r["seq"]), set()).add(int(r["host_ns"]))
    accepted, vlan = 0, _vlan_input_keys(hostile)
    for t in targets:
        for r in rows(point / f"guest{t.index}" / "server_inputs.csv"):
            stamp = int(r["kernel_ns"])
            assert stamp not in FORGED_RANGE, f"a client's stamp reached server {t.index}: {r}"
            if r["verdict"] == "ok":
                accepted += 1
                key = (r["guest"], r["player"], r["seq"])
                assert stamp in truth.get(key, ()) or key in vlan, r
    last = {(str(t.index), "63", "1") for t in targets}
    assert last <= set(truth), "the input sent after the storm was not delivered"
    return accepted


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
        _liveness(bed)
    _check_guest_frames(hostile, seen, targets)
    accepted = _check_servers(point, targets, hostile)
    assert accepted > 1000  # the valid inputs among them were played
    print(f"{n} frames, {len(kinds)} kinds; guests saw "
          f"{ {i: len(v) for i, v in seen.items()} }; servers accepted {accepted}")
