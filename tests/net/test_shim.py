"""The shim on a real namespace topology: both directions, forged trailers, other frames."""

import csv
import time

import pytest

from fpsmodel import wire
from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner
from gamebed.spec import ExperimentSpec
from gamebed.topology import CLIENT_IP, CLIENT_MAC
from vm import make_testbed

from .conftest import Pair
from .frames import arp_request, udp_frame

FORGED = 1_500_000_000_000_000_000


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def topo(netns_ok, tmp_path, request):
    spec = ExperimentSpec(guest_counts=(1,), modes=("host",), stamper=request.param,
                          placement="dynamic", backend="netns")
    m = Manifest(new_prefix(), state_dir=tmp_path / "state")
    bed = make_testbed(spec, 1, tmp_path / "work", Runner(), m, print)
    yield bed
    bed.mode_stack.close()
    bed.stack.close()
    m.close()
    assert not m.path.exists()


@pytest.mark.parametrize("topo", ["afpacket", "bpf"], indirect=True)
def test_forwarding_both_ways_forged_trailer_and_other_frames(topo):
    helper = Pair("unused")
    with topo, topo.mode("host", topo.ctx.dir.parent / "point"):
        t = topo.topo
        g = t.guests[0]
        game = wire.Codec(1).encode_input(0, 1, time.time_ns(), wire.PlayerInput())
        forged = b"GBTS" + ((len(game) + 28) << 16 | (len(game) + 28) ^ 0xFFFF).to_bytes(
            4, "big") + FORGED.to_bytes(8, "big")
        f_game = udp_frame(CLIENT_MAC, g.nic.mac, CLIENT_IP, g.nic.ip, 5000, wire.GAME_PORT,
                           game, forged)
        f_other = udp_frame(CLIENT_MAC, g.nic.mac, CLIENT_IP, g.nic.ip, 5000, 5555, b"not-game")
        f_arp = arp_request(CLIENT_MAC, CLIENT_IP, g.nic.ip)
        guest_sniff = helper.start(g.netns, "sniff", g.nic_name, 2.5)
        client_sniff = helper.start(t.client_ns, "sniff", t.client_nic, 2.5)
        helper.run(t.client_ns, "send", t.client_nic, f_game.hex(), f_other.hex(),
                   f_arp.hex())
        seen_guest = {bytes.fromhex(x["frame"]) for x in helper.lines(guest_sniff)}
        seen_client = [bytes.fromhex(x["frame"]) for x in helper.lines(client_sniff)]
    # non-game frames reach the guest byte for byte, without a trailer
    assert f_other in seen_guest and f_arp in seen_guest
    # the guest's replies (ARP answer, 20 Hz state updates to the new player) come back
    from_guest = [f for f in seen_client if f[6:12] == bytes.fromhex(g.nic.mac.replace(":", ""))]
    assert any(f[12:14] == b"\x08\x06" for f in from_guest)
    assert any(f[12:14] == b"\x08\x00" and f[23] == 17 for f in from_guest)
    # the forged trailer moved nothing: the server's stamp is the shim's, to the ns
    srv = [r for r in rows(topo.ctx.dir / "guest0" / "server_inputs.csv") if r["verdict"] == "ok"]
    truth = rows(topo.ctx.dir / "shim_inputs.csv")
    assert len(srv) == 1 and len(truth) == 1
    assert int(srv[0]["kernel_ns"]) == int(truth[0]["host_ns"]) != FORGED
