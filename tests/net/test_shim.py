"""The shim on a real namespace topology: both directions, forged trailers, other frames."""

import csv
import time

import pytest

from fpsmodel import wire
from gamebed.topology import CLIENT_IP, CLIENT_MAC
from tests.support.netns import Pair, netns_testbed

from .frames import Ends, arp_request, udp_frame

FORGED = 1_500_000_000_000_000_000


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def topo(netns_ok, tmp_path, request):
    with netns_testbed(tmp_path, request.param, 1) as made:
        yield made


def forged_trailer(datagram_len: int) -> bytes:
    """A trailer a client appends itself: valid magic, check word and stamp."""
    tot = datagram_len
    return b"GBTS" + ((tot << 16) | (tot ^ 0xFFFF)).to_bytes(4, "big") + FORGED.to_bytes(8, "big")


@pytest.mark.parametrize("topo", ["afpacket", "bpf"], indirect=True)
def test_forwarding_both_ways_forged_trailer_and_other_frames(topo):
    helper = Pair("unused")
    with topo, topo.mode("host", topo.ctx.work_dir.parent / "point"):
        t = topo.topo
        g = t.guests[0]
        ends = Ends(CLIENT_MAC, g.nic.mac, CLIENT_IP, g.nic.ip)
        codec = wire.Codec(1)
        game = codec.encode_input(0, 1, time.time_ns(), wire.PlayerInput())
        f_game = udp_frame(ends, 5000, wire.GAME_PORT,
                           game, forged_trailer(len(game) + 28))
        # an input with IP options: the BPF stamper leaves it to the shim, which must
        # still stamp and deliver it (player 1, so it is its own first input)
        opts = b"\x01\x01\x01\x00"
        game_o = codec.encode_input(1, 1, time.time_ns(), wire.PlayerInput())
        f_opts = udp_frame(ends, 5001, wire.GAME_PORT,
                           game_o, options=opts)
        # a clock-sync request with a forged trailer: it must arrive cut, so the guest's
        # decoder cannot make the forged stamp its t2
        sync = codec.encode_sync_req(2, 0, time.time_ns())
        f_sync = udp_frame(ends, 5002, wire.GAME_PORT,
                           sync, forged_trailer(len(sync) + 28))
        f_other = udp_frame(ends, 5000, 5555, b"not-game")
        f_other_forged = udp_frame(ends, 5000, 5556,
                                   b"not-game", forged_trailer(36))
        f_arp = arp_request(CLIENT_MAC, CLIENT_IP, g.nic.ip)
        guest_sniff = helper.start(g.netns, "sniff", g.nic_name, 2.5)
        client_sniff = helper.start(t.client_ns, "sniff", t.client_nic, 2.5)
        helper.run(t.client_ns, "send", t.client_nic, f_game.hex(), f_opts.hex(), f_sync.hex(),
                   f_other.hex(), f_other_forged.hex(), f_arp.hex())
        seen_guest = {bytes.fromhex(x["frame"]) for x in helper.lines(guest_sniff)}
        seen_client = [bytes.fromhex(x["frame"]) for x in helper.lines(client_sniff)]
    # non-game frames reach the guest byte for byte, without a trailer
    assert f_other in seen_guest and f_arp in seen_guest
    # every frame forwarded to a guest is cut to its IP total length
    assert f_sync[:-16] in seen_guest and f_sync not in seen_guest
    assert f_other_forged[:-16] in seen_guest and f_other_forged not in seen_guest
    # the guest's replies (ARP answer, 20 Hz state updates to the new player) come back
    from_guest = [f for f in seen_client if f[6:12] == bytes.fromhex(g.nic.mac.replace(":", ""))]
    assert any(f[12:14] == b"\x08\x06" for f in from_guest)
    assert any(f[12:14] == b"\x08\x00" and f[23] == 17 for f in from_guest)
    # the forged trailer moved nothing: the server's stamp is the shim's, to the ns; the
    # input with IP options was stamped and delivered too
    srv = {r["player"]: r for r in rows(topo.point.dir / "guest0" / "server_inputs.csv")
           if r["verdict"] == "ok"}
    truth = {r["player"]: r for r in rows(topo.point.dir / "shim_inputs.csv")}
    assert set(srv) == set(truth) == {"0", "1"}
    for player in ("0", "1"):
        assert int(srv[player]["kernel_ns"]) == int(truth[player]["host_ns"]) != FORGED


@pytest.mark.parametrize("topo", ["bpf"], indirect=True)
def test_stamper_ground_truth_from_its_ring_buffer(topo):
    """Every input the stamper forwards is in shim_inputs.csv with the stamp the server
    got, read from the stamper's ring buffer; the shim's filtered socket saw none of
    them; no input left with a zero stamp and no record was dropped."""
    import json

    helper = Pair("unused")
    n = 300
    with topo, topo.mode("host", topo.ctx.work_dir.parent / "point"):
        t = topo.topo
        g = t.guests[0]
        ends = Ends(CLIENT_MAC, g.nic.mac, CLIENT_IP, g.nic.ip)
        codec = wire.Codec(1)
        frames = [udp_frame(ends, 5000, wire.GAME_PORT,
                            codec.encode_input(0, seq, time.time_ns(), wire.PlayerInput()))
                  for seq in range(1, n + 1)]
        helper.run(t.client_ns, "send", t.client_nic, *(f.hex() for f in frames))
        time.sleep(0.5)
    shim = json.loads((topo.point.dir / "shim_summary.json").read_text())
    assert shim["truth_source"] == "ring buffer"
    assert shim["stamper_counters"]["inputs"] == n
    assert shim["zero_stamp_inputs"] == 0 and shim["ring_drops"] == 0
    # the headroom figure: whole 32-byte records, never more than were sent
    assert shim["ring_bytes"] == 1 << 26
    assert shim["ring_peak_fill"] % 32 == 0 and 32 <= shim["ring_peak_fill"] <= 32 * n
    assert shim["counters"].get("game_logged", 0) == 0  # no input reached the socket
    truth = {int(r["seq"]): int(r["host_ns"]) for r in rows(topo.point.dir / "shim_inputs.csv")}
    srv = {int(r["seq"]): int(r["kernel_ns"])
           for r in rows(topo.point.dir / "guest0" / "server_inputs.csv") if r["verdict"] == "ok"}
    assert len(truth) == n and set(truth) == set(range(1, n + 1))
    assert len(srv) == n and srv == truth  # the server's stamps are the logged ones, to the ns
    assert not (topo.point.dir / "shim_inputs.spool").exists()  # spooled, converted, gone
