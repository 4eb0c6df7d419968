"""Wire format: sizes, round trips, and every kind of corruption is rejected."""

import dataclasses

import pytest

from fpsmodel import wire


@pytest.fixture
def codec():
    return wire.Codec(7)


def sample_input():
    ents = tuple(wire.Entity(i, 1, (1.0 * i, 2.0, 3.0), 90.0, 250.0) for i in range(5))
    return wire.PlayerInput(move=(1.0, -0.5, 0.0), view=(45.0, -10.0, 0.0), buttons=3,
                            weapon=2, impulse=1, last_update_tick=99, pos=(1.0, 2.0, 3.0),
                            vel=(4.0, 5.0, 6.0), entities=ents)


def test_sizes_add_up_to_the_papers_296():
    assert wire.HEADER_SIZE == 24
    assert len(sample_input().pack()) == wire.INPUT_BLOCK_SIZE == 256
    assert wire.INPUT_PAYLOAD_SIZE == 296


def test_input_round_trip(codec):
    inp = sample_input()
    data = codec.encode_input(3, 123456789012, 1_700_000_000_123_456_789, inp)
    assert len(data) == 296
    hdr, body = codec.open(data)
    assert (hdr.msg_type, hdr.player, hdr.session, hdr.seq) == (wire.MSG_INPUT, 3, 7, 123456789012)
    assert hdr.time_ns == 1_700_000_000_123_456_789
    back = wire.PlayerInput.unpack(body)
    assert back.buttons == 3 and back.weapon == 2 and back.last_update_tick == 99
    assert [e.ident for e in back.entities] == [0, 1, 2, 3, 4]
    assert back.view[0] == pytest.approx(45.0)


def test_the_input_block_is_encrypted(codec):
    inp = sample_input()
    data = codec.encode_input(1, 1, 1, inp)
    assert inp.pack() not in data
    assert inp.pack()[:32] not in data


def test_update_round_trip(codec):
    upd = wire.StateUpdate(
        tick=42, server_send_ns=5,
        echoes=(wire.Echo(0, 10, 111, 222), wire.Echo(1, 11, 333, 444)),
        states=(wire.EntityState(0, 0, (1.0, 2.0, 3.0), (0.5, 0.0, 0.0), 90.0),))
    hdr, body = codec.open(codec.encode_update(1, upd))
    assert hdr.msg_type == wire.MSG_UPDATE and hdr.seq == 42
    assert wire.StateUpdate.unpack(body) == upd


def test_sync_round_trip(codec):
    hdr, body = codec.open(codec.encode_sync_req(2, 5, 1000))
    assert hdr.msg_type == wire.MSG_SYNC_REQ and wire.decode_sync_req(body) == 1000
    hdr, body = codec.open(codec.encode_sync_resp(2, 5, 1000, 2000, 3000))
    assert wire.decode_sync_resp(body) == (1000, 2000, 3000)


def test_every_single_bit_flip_is_rejected(codec):
    data = codec.encode_input(1, 9, 12345, sample_input())
    for i in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(wire.WireError):
                codec.open(bytes(bad))


@pytest.mark.parametrize("size", [0, 1, 23, 39, 295, 297, 1000])
def test_wrong_input_size_rejected(codec, size):
    data = codec.encode_input(1, 1, 1, sample_input())
    bad = (data * 4)[:size]
    with pytest.raises(wire.WireError) as e:
        codec.open(bad)
    assert e.value.reason in ("bad_size",)


@pytest.mark.parametrize("field,value,reason", [
    (0, 0x00, "bad_magic"), (1, 9, "bad_version"), (2, 77, "bad_type")])
def test_header_checks(codec, field, value, reason):
    bad = bytearray(codec.encode_input(1, 1, 1, sample_input()))
    bad[field] = value
    with pytest.raises(wire.WireError) as e:
        codec.open(bytes(bad))
    assert e.value.reason == reason


def test_other_session_and_other_key_rejected(codec):
    data = wire.Codec(8).encode_input(1, 1, 1, sample_input())
    with pytest.raises(wire.WireError) as e:
        codec.open(data)
    assert e.value.reason == "unknown_session"
    forged = wire.Codec(7, psk=b"not the key").encode_input(1, 1, 1, sample_input())
    with pytest.raises(wire.WireError) as e:
        codec.open(forged)
    assert e.value.reason == "bad_tag"


def test_header_is_authenticated(codec):
    # re-labelling a genuine input as another player's must fail the tag
    data = bytearray(codec.encode_input(1, 1, 1, sample_input()))
    data[3] = 2
    with pytest.raises(wire.WireError) as e:
        codec.open(bytes(data))
    assert e.value.reason == "bad_tag"


def test_too_many_entities_rejected():
    block = bytearray(sample_input().pack())
    block[60] = 200  # entity count
    with pytest.raises(wire.WireError):
        wire.PlayerInput.unpack(bytes(block))


def test_update_body_length_checked():
    upd = wire.StateUpdate(1, 2, (wire.Echo(0, 1, 2, 3),), ())
    body = upd.pack()
    with pytest.raises(wire.WireError):
        wire.StateUpdate.unpack(body[:-1])
    with pytest.raises(wire.WireError):
        wire.StateUpdate.unpack(body + b"\0")


def test_update_echo_reads_what_unpack_reads():
    """The client's reader gives its player's echo, tick and send time as the full unpack
    does, checks the body's length as strictly, and None for a player not echoed."""
    states = tuple(wire.EntityState(i, 0, (1.0, 2.0, 3.0), (0.0, 0.0, 0.0), 9.0)
                   for i in range(wire.max_states(3)))
    upd = wire.StateUpdate(7, 99, (wire.Echo(0, 1, 2, 3), wire.Echo(4, 5, 6, 7),
                                   wire.Echo(9, 8, 7, 6)), states)
    body = upd.pack()
    full = wire.StateUpdate.unpack(body)
    for e in full.echoes:
        assert wire.update_echo(body, e.player) == (full.tick, full.server_send_ns, e)
    assert wire.update_echo(body, 1) == (7, 99, None)
    for bad in (body[:-1], body + b"\0", body[:10]):
        with pytest.raises(wire.WireError):
            wire.update_echo(bad, 0)


def test_entities_truncated_to_max():
    many = dataclasses.replace(sample_input(), entities=sample_input().entities * 3)
    assert len(wire.PlayerInput.unpack(many.pack()).entities) == wire.MAX_ENTITIES


@pytest.mark.parametrize("size", [wire.INPUT_MIN_SIZE, 200, 296, 1200 + 16, wire.INPUT_MAX_SIZE])
def test_an_input_of_any_size_the_mtu_allows_round_trips(size):
    c = wire.Codec(5, input_size=size)
    inp = sample_input()
    data = c.encode_input(1, 9, 123, inp)
    assert len(data) == size
    hdr, body = c.open(data)
    back = wire.PlayerInput.unpack(body)
    assert back.move == pytest.approx(inp.move) and hdr.seq == 9
    # as many of its entities as the block holds
    assert len(back.entities) == min(len(inp.entities), wire.max_entities(size - 40))


def test_input_size_limits_follow_the_mtu_and_the_trailer():
    from hostside import trailer

    # a full input plus the host's trailer must fit a standard 1500-byte MTU frame
    assert wire.TRAILER_SIZE == trailer.LEN and wire.PORT_MTU == trailer.ETH_DATA_LEN
    assert wire.INPUT_MAX_SIZE + 20 + 8 + trailer.LEN == 1500
    for bad in (wire.INPUT_MIN_SIZE - 1, wire.INPUT_MAX_SIZE + 1):
        with pytest.raises(ValueError, match="an input is 104..1456 bytes"):
            wire.Codec(1, input_size=bad)


def test_a_server_expecting_one_size_refuses_another():
    big, small = wire.Codec(5, input_size=600), wire.Codec(5)
    with pytest.raises(wire.WireError) as e:
        small.open(big.encode_input(1, 1, 1, sample_input()))
    assert e.value.reason == "bad_size"
