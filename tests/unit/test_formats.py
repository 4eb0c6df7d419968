"""One owner per format: the trailer (hostside/trailer.py) and the game header
(fpsmodel/wire.py).  The C copies — the BPF programs and both kernel patches — are
checked against those owners here, and the trailer codec and the shim's frame
classification are tested from bytes.  No root."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fpsmodel import wire
from hostside import trailer
from hostside.shim import classify
from tests.net.frames import Ends, arp_request, udp_frame

ROOT = Path(__file__).resolve().parents[2]
GD = ROOT / "guest-driver"
C_SOURCES = {"trailer.h": GD / "bpf" / "trailer.h",
             "virtio_net.patch": GD / "virtio_net" / "virtio_net.patch",
             "tun.patch": GD / "host" / "tun.patch"}


def defines(path: Path) -> dict[str, int]:
    """#define NAME <integer> (hex or decimal, optional u suffix) of a C file or patch."""
    out = {}
    for m in re.finditer(r"^\+?#define\s+(\w+)\s+(0x[0-9A-Fa-f]+|\d+)u?\b", path.read_text(),
                         re.M):
        out[m.group(1)] = int(m.group(2), 0)
    return out


@pytest.mark.parametrize("name", sorted(C_SOURCES))
def test_trailer_constants_in_c_match_the_owner(name):
    d = defines(C_SOURCES[name])
    assert d["GB_TRAILER_MAGIC"] == trailer.MAGIC
    assert d["GB_TRAILER_LEN"] == trailer.LEN
    if "GB_ETH_HLEN" in d:
        assert d["GB_ETH_HLEN"] == trailer.ETH_HLEN
    text = C_SOURCES[name].read_text()
    # the check word: tot_len << 16 | (tot_len ^ 0xffff), as trailer.check_word computes
    assert re.search(r"<< 16\)? \| \((tot|tot_len) \^ 0x[fF]{4}u?\)", text), name


def test_check_word_is_the_documented_formula():
    for tot in (20, 324, 1500, 0xFFFF):
        assert trailer.check_word(tot) == (tot << 16) | (tot ^ 0xFFFF)


def test_stamper_game_header_matches_wire():
    d = defines(GD / "bpf" / "stamper.bpf.c")
    assert d["GB_GAME_MAGIC"] == wire.MAGIC
    assert d["GB_MSG_INPUT"] == wire.MSG_INPUT
    assert d["GB_HDR_MAGIC_OFF"] == wire.HEADER_OFFSETS["magic"]
    assert d["GB_HDR_TYPE_OFF"] == wire.HEADER_OFFSETS["type"]
    hdr = wire.Header(wire.MSG_INPUT, 7, 1, 99, 5).pack()
    assert hdr[wire.HEADER_OFFSETS["magic"]] == wire.MAGIC
    assert hdr[wire.HEADER_OFFSETS["type"]] == wire.MSG_INPUT
    assert hdr[wire.HEADER_OFFSETS["player"]] == 7
    assert int.from_bytes(hdr[8:16], "big") == 99


def test_stamper_stats_keys_match_the_names_the_host_reads():
    from hostside.ringbuf import STATS

    text = (GD / "bpf" / "stamper.bpf.c").read_text()
    body = re.search(r"enum \{([^}]*GB_STAT_N)\s*\}", text).group(1)
    keys = [k.strip() for k in body.split(",")]
    assert keys[-1] == "GB_STAT_N"
    assert [k.removeprefix("GB_STAT_").lower() for k in keys[:-1]] == list(STATS)


def test_game_port_and_so_timestampns_have_one_definition():
    hits = {}
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        text = path.read_text()
        for pattern in (r"\b27960\b", r"^SO_TIMESTAMPNS\s*="):
            if re.search(pattern, text, re.M):
                hits.setdefault(pattern, []).append(str(path.relative_to(ROOT)))
    assert hits == {r"\b27960\b": ["fpsmodel/wire.py"],
                    r"^SO_TIMESTAMPNS\s*=": ["fpsmodel/wire.py"]}


# -- the trailer codec --------------------------------------------------------------------

def game(extra: bytes = b"", payload: bytes = b"x" * 40) -> bytes:
    return udp_frame(Ends("02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.1",
                          "198.18.1.1"), 5000, wire.GAME_PORT, payload, extra)


@given(st.binary(max_size=400), st.integers(1, 2**64 - 1), st.binary(max_size=40))
def test_append_then_decode_round_trips_and_drops_client_bytes(payload, stamp, junk):
    f = game(junk, payload)
    out = trailer.append(f, stamp)
    assert len(out) == len(f) - len(junk) + trailer.LEN
    frame, ns = trailer.decode(out)
    assert ns == stamp and frame == f[:len(f) - len(junk)]


def test_decode_refuses_what_is_not_exactly_one_valid_trailer():
    f = game()
    ok = trailer.append(f, 123)
    assert trailer.decode(f) is None  # no trailer
    assert trailer.decode(ok + b"\0") is None  # one byte too many
    assert trailer.decode(trailer.append(f, 0)) is None  # a zero stamp means none
    bad_magic = bytearray(ok)
    bad_magic[-16] ^= 1
    assert trailer.decode(bytes(bad_magic)) is None
    bad_check = bytearray(ok)
    bad_check[-12] ^= 1
    assert trailer.decode(bytes(bad_check)) is None
    assert trailer.decode(arp_request("02:00:00:00:00:01", "198.18.0.1", "198.18.1.1")) is None
    with pytest.raises(ValueError):
        trailer.append(f[:30], 5)  # tot_len says more than the frame holds


def test_udp_checksum_completion_gives_a_valid_sum():
    f = bytearray(game())
    assert trailer.complete_udp_checksum(f)
    l4 = 14 + 20
    pseudo = f[26:34] + b"\0\x11" + f[l4 + 4:l4 + 6] + f[l4:]
    if len(pseudo) % 2:
        pseudo += b"\0"
    s = sum(int.from_bytes(pseudo[i:i + 2], "big") for i in range(0, len(pseudo), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert s == 0xFFFF


# -- the shim's frame classification ------------------------------------------------------

BY_IP = {socket.inet_aton("198.18.1.1"): 0, socket.inet_aton("198.18.1.2"): 1}


def _udp(payload: bytes, dport: int = wire.GAME_PORT, dst: str = "198.18.1.1") -> bytes:
    return udp_frame(Ends("02:00:00:00:00:01", "02:00:00:00:00:02", "198.18.0.1", dst), 5000, dport,
                     payload)


def test_classify_player_input_sync_and_other_traffic():
    codec = wire.Codec(1)
    inp = _udp(codec.encode_input(3, 42, 1, wire.PlayerInput()), dst="198.18.1.2")
    g = classify(inp, wire.GAME_PORT, BY_IP)
    assert g.guest == 1 and g.is_input and (g.header.player, g.header.seq) == (3, 42)
    sync = classify(_udp(codec.encode_sync_req(0, 1, 5)), wire.GAME_PORT, BY_IP)
    assert sync.guest == 0 and not sync.is_input
    assert classify(_udp(b"\0" * 40), wire.GAME_PORT, BY_IP).header is None  # bad magic
    assert classify(_udp(b"x" * 40, dport=5555), wire.GAME_PORT, BY_IP) is None
    assert classify(_udp(b"x" * 40, dst="198.18.9.9"), wire.GAME_PORT, BY_IP) is None
    arp = arp_request("02:00:00:00:00:01", "198.18.0.1", "198.18.1.1")
    assert classify(arp, wire.GAME_PORT, BY_IP) is None
    frag = bytearray(inp)
    frag[20] |= 0x20  # more fragments
    assert classify(bytes(frag), wire.GAME_PORT, BY_IP) is None
