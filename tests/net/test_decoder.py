"""The tc BPF decoder on a veth pair: exact host stamps, everything else untouched."""

import time

import pytest

from fpsmodel.wire import GAME_PORT
from gamebed.proc import Runner
from hostside import bpf, trailer

from .frames import Ends, udp_frame

PORT = GAME_PORT
STAMP = 1_600_000_000_123_456_789  # 2020: far from "now", so a guest stamp can't match


@pytest.fixture
def decoded(ns_pair):
    r = Runner()
    bpf.attach_ingress(r, ns_pair.b, ns_pair.nic_b, bpf.build("decoder", r))
    return ns_pair


def frame(p, payload, extra=b""):
    return udp_frame(Ends(p.mac_a, p.mac_b, p.ip_a, p.ip_b), 5000, PORT, payload, extra)


def deliver(p, frames):
    rx = p.start(p.b, "recv", p.ip_b, PORT, 2)
    p.run(p.a, "send", p.nic_a, *[f.hex() for f in frames])
    return p.lines(rx)


def test_decoder_sets_the_exact_host_stamp_and_trims(decoded):
    p = decoded
    f = trailer.append(frame(p, b"hello-game"), STAMP)
    got = deliver(p, [f])
    assert len(got) == 1
    assert got[0]["stamp_ns"] == STAMP  # to the nanosecond
    assert bytes.fromhex(got[0]["payload"]) == b"hello-game"


def test_frames_without_a_valid_trailer_keep_the_guest_stamp(decoded):
    p = decoded
    good = trailer.append(frame(p, b"x1"), STAMP)
    bad_check = bytearray(trailer.append(frame(p, b"x2"), STAMP))
    bad_check[-12] ^= 0xFF
    misplaced = trailer.append(frame(p, b"x3"), STAMP) + b"\0"  # not exactly after tot_len
    zero = trailer.append(frame(p, b"x4"), 0)
    plain = frame(p, b"x5")
    before = time.time_ns()
    got = {bytes.fromhex(g["payload"]): g["stamp_ns"]
           for g in deliver(p, [bytes(bad_check), misplaced, zero, plain, good])}
    assert set(got) == {b"x1", b"x2", b"x3", b"x4", b"x5"}  # nothing lost or mangled
    assert got[b"x1"] == STAMP
    for k in (b"x2", b"x3", b"x4", b"x5"):
        assert got[k] >= before and got[k] != STAMP


def test_without_decoder_the_trailer_is_ignored(ns_pair):
    p = ns_pair
    before = time.time_ns()
    got = deliver(p, [trailer.append(frame(p, b"plain-guest"), STAMP)])
    assert bytes.fromhex(got[0]["payload"]) == b"plain-guest"
    assert got[0]["stamp_ns"] >= before
