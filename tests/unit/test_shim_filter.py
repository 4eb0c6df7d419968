"""The shim's classic socket filter refuses exactly the frames the BPF stamper forwards as
player inputs (so no input wakes the shim, and no other frame is lost to it): checked by
running the program in a small classic-BPF interpreter on generated frames."""

import struct
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from fpsmodel import wire
from hostside import trailer
from hostside.sockfilter import input_filter_program

PORT = wire.GAME_PORT
GUESTS = [bytes([198, 18, 1, i]) for i in range(1, 4)]


def run_cbpf(prog, pkt: bytes) -> int:
    """The opcodes the filter uses, as the kernel runs them (a load past the end: 0)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code in (0x28, 0x30, 0x20):
            size = {0x28: 2, 0x30: 1, 0x20: 4}[code]
            if k + size > len(pkt):
                return 0
            a = int.from_bytes(pkt[k:k + size], "big")
        elif code == 0x80:
            a = len(pkt)
        elif code == 0x54:
            a &= k
        elif code == 0x04:
            a = (a + k) & 0xFFFFFFFF
        elif code == 0x07:
            x = a
        elif code == 0x05:
            pc += k
        elif code == 0x06:
            return k
        else:
            cond = {0x15: a == k, 0x45: bool(a & k), 0x35: a >= k, 0x3D: a >= x}[code]
            pc += jt if cond else jf


def stamper_forwards_as_input(f: bytes) -> bool:
    """stamper.bpf.c's rule for the frames it stamps, in Python."""
    if len(f) < 58 or not trailer.stamper_takes(f, PORT) or f[30:34] not in GUESTS:
        return False
    return f[42] == wire.MAGIC and f[44] == wire.MSG_INPUT


class Shape(NamedTuple):
    """What a generated frame looks like, field by field."""

    ethertype: int
    ihl: int
    proto: int
    frag: int
    dport: int
    dst: bytes
    magic: int
    mtype: int
    payload_len: int
    tot_delta: int  # the IP total length's error
    cut: int  # bytes cut off the end


def frame(shape: Shape) -> bytes:
    ethertype, ihl, proto, frag, dport, dst, magic, mtype, payload_len, tot_delta, cut = shape
    payload = bytes([magic, 1, mtype]) + bytes(max(0, payload_len - 3))
    payload = payload[:payload_len]
    opts = bytes(4 * (ihl - 5))
    tot = 20 + len(opts) + 8 + len(payload) + tot_delta
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot & 0xFFFF, 0, frag, 64, proto, 0,
                     bytes([10, 0, 0, 1]), dst) + opts
    udp = struct.pack("!HHHH", 5000, dport, 8 + len(payload), 0)
    f = b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + ip + udp + payload
    return f[:len(f) - cut] if cut < len(f) else f[:14]


frames = st.builds(
    Shape, st.sampled_from([0x0800, 0x0806, 0x86DD, 0x8100]), st.sampled_from([5, 5, 5, 6]),
    st.sampled_from([17, 17, 6]), st.sampled_from([0, 0, 0x2000, 0x0001, 0x4000]),
    st.sampled_from([PORT, PORT, PORT + 1]), st.sampled_from([*GUESTS, bytes([10, 0, 0, 9])]),
    st.sampled_from([wire.MAGIC, wire.MAGIC, 0]),
    st.sampled_from([wire.MSG_INPUT, wire.MSG_INPUT, wire.MSG_SYNC_REQ]),
    st.integers(0, 300), st.sampled_from([0, 0, 16, -8, 40]), st.sampled_from([0, 0, 0, 5, 40])
).map(frame)


@settings(max_examples=3000, deadline=None)
@given(frames)
def test_filter_refuses_exactly_the_stamped_inputs(f):
    prog = input_filter_program(PORT, GUESTS)
    assert (run_cbpf(prog, f) == 0) == stamper_forwards_as_input(f)


def test_filter_on_known_frames_and_many_guests():
    prog = input_filter_program(PORT, [bytes([198, 18, 1, i]) for i in range(1, 251)])
    assert len(prog) < 4096 and all(jt < 256 and jf < 256 for _, jt, jf, _ in prog)
    game = frame(Shape(0x0800, 5, 17, 0, PORT, bytes([198, 18, 1, 250]), wire.MAGIC,
                       wire.MSG_INPUT, 296, 0, 0))
    assert run_cbpf(prog, game) == 0  # the last guest's input: refused
    sync = frame(Shape(0x0800, 5, 17, 0, PORT, bytes([198, 18, 1, 1]), wire.MAGIC,
                       wire.MSG_SYNC_REQ, 40, 0, 0))
    assert run_cbpf(prog, sync) > 0  # clock sync still reaches the shim
    assert run_cbpf(prog, b"\xff" * 42) > 0  # an ARP-sized frame: accepted, not dropped


def test_a_guests_frame_is_named_by_its_ethertype_and_destination():
    from hostside.shim import reply_kind

    client = bytes.fromhex("02aabbccddee")
    src = bytes.fromhex("020000000001")
    assert reply_kind(client + src + b"\x08\x00" + b"\0" * 40, client) == "ipv4 to client"
    assert reply_kind(b"\xff" * 6 + src + b"\x08\x06" + b"\0" * 40, client) == "arp broadcast"
    assert reply_kind(bytes.fromhex("333300000016") + src + b"\x86\xdd", client) \
        == "ipv6 multicast"
    tagged = client + src + b"\x81\x00\x00\x05\x08\x00" + b"\0" * 40
    assert reply_kind(tagged, client) == "ipv4 to client"
    assert reply_kind(src + src + b"\x88\xcc", client) == "0x88cc to other"
