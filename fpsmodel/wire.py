"""Wire format of the model FPS game (no privileges needed).

Every datagram starts with the same 24-byte plaintext header; the body is
sealed with AES-GCM using the header as associated data, so a flipped bit
anywhere is caught by the 16-byte tag.  Byte offsets are in docs/protocol.md.

The nonce is never sent: it is derived from (type, player, sequence), which
is unique per key because each message type uses its own sequence space.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

GAME_PORT = 27960  # the game's UDP port (Quake III's): every default in gamebed is this one
# the socket option that returns a datagram's kernel receive stamp in ns (Linux value)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

MAGIC = 0xFB
VERSION = 1

MSG_INPUT = 1
MSG_UPDATE = 2
MSG_SYNC_REQ = 3
MSG_SYNC_RESP = 4
MSG_TYPES = (MSG_INPUT, MSG_UPDATE, MSG_SYNC_REQ, MSG_SYNC_RESP)

HEADER = struct.Struct("!BBBBIQQ")  # magic, version, type, player, session, seq, time_ns
HEADER_SIZE = HEADER.size  # 24
# byte offsets of the header's fields: the host side reads them from raw frames, and the
# BPF stamper's GB_HDR_* defines are checked against these (tests/unit/test_formats.py)
HEADER_OFFSETS = {"magic": 0, "version": 1, "type": 2, "player": 3, "session": 4, "seq": 8,
                  "time_ns": 16}
assert struct.calcsize("!BBBBI") == HEADER_OFFSETS["seq"]
TAG_SIZE = 16
INPUT_BLOCK_SIZE = 256
INPUT_PAYLOAD_SIZE = HEADER_SIZE + INPUT_BLOCK_SIZE + TAG_SIZE  # 296, the paper's size
assert INPUT_PAYLOAD_SIZE == 296

MAX_ENTITIES = 8  # in the paper's 296-byte input; a larger input tracks more
_INPUT_FIXED = struct.Struct("!3f3fIBBHI3f3fB3x")  # 64 bytes
_ENTITY = struct.Struct("!HH3fff")  # 24 bytes
assert _INPUT_FIXED.size + MAX_ENTITIES * _ENTITY.size == INPUT_BLOCK_SIZE
# an input's size (UDP payload) is the game's choice, from its fixed part to what fits a
# 1500-byte MTU once the host's 16-byte timestamp trailer is appended (hostside/trailer.py)
INPUT_MIN_SIZE = HEADER_SIZE + _INPUT_FIXED.size + TAG_SIZE  # 104
PORT_MTU = 1500
TRAILER_SIZE = 16
INPUT_MAX_SIZE = PORT_MTU - 20 - 8 - TRAILER_SIZE  # 1456: IPv4 and UDP headers, trailer

_UPDATE_FIXED = struct.Struct("!QQBB6x")  # tick, server_send_ns, n_echo, n_entities
_ECHO = struct.Struct("!B7xQQQ")  # player, last_seq, kernel_ns, app_ns
_STATE = struct.Struct("!HH3f3ff")  # entity id, flags, pos, vel, yaw  (32 bytes)
_SYNC_REQ = struct.Struct("!Q")  # t1
_SYNC_RESP = struct.Struct("!QQQ")  # t1, t2, t3

DEFAULT_PSK = b"gamebed-model-fps-preshared-key!"


class WireError(ValueError):
    """A datagram that must be dropped; `reason` is the counter it goes to."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Header:
    msg_type: int
    player: int
    session: int
    seq: int
    time_ns: int

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.msg_type, self.player, self.session,
                           self.seq, self.time_ns)


def peek_header(payload: bytes | bytearray | memoryview) -> Header | None:
    """The plaintext header of a UDP payload, or None if it is not a gamebed datagram
    (too short, wrong magic or version).  Nothing is decrypted or authenticated: this is
    for the host side, which only routes and logs."""
    if len(payload) < HEADER_SIZE:
        return None
    magic, version, msg_type, player, session, seq, time_ns = HEADER.unpack_from(payload)
    if magic != MAGIC or version != VERSION:
        return None
    return Header(msg_type, player, session, seq, time_ns)


@dataclass(frozen=True)
class Entity:
    ident: int
    flags: int
    pos: tuple[float, float, float]
    yaw: float
    speed: float


@dataclass(frozen=True)
class PlayerInput:
    """The 256-byte user input: what a real FPS client sends every frame."""

    move: tuple[float, float, float] = (0.0, 0.0, 0.0)  # forward, side, up in [-1, 1]
    view: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll (degrees)
    buttons: int = 0
    weapon: int = 0
    impulse: int = 0
    last_update_tick: int = 0
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)  # client-predicted position
    vel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    entities: tuple[Entity, ...] = field(default_factory=tuple)

    def pack(self, size: int = INPUT_BLOCK_SIZE) -> bytes:
        """The block, `size` bytes: as many entities as fit, the rest zero."""
        ents = self.entities[:max_entities(size)]
        out = [_INPUT_FIXED.pack(*self.move, *self.view, self.buttons, self.weapon,
                                 self.impulse, 0, self.last_update_tick, *self.pos,
                                 *self.vel, len(ents))]
        out += [_ENTITY.pack(e.ident, e.flags, *e.pos, e.yaw, e.speed) for e in ents]
        out.append(bytes(size - _INPUT_FIXED.size - _ENTITY.size * len(ents)))
        return b"".join(out)

    @classmethod
    def unpack(cls, block: bytes) -> PlayerInput:
        if len(block) < _INPUT_FIXED.size:
            raise WireError("bad_body", f"{len(block)}-byte input block")
        f = _INPUT_FIXED.unpack_from(block, 0)
        n = f[17]
        if n > max_entities(len(block)):
            raise WireError("bad_body", f"{n} entities")
        ents = tuple(
            Entity(e[0], e[1], (e[2], e[3], e[4]), e[5], e[6])
            for e in (_ENTITY.unpack_from(block, _INPUT_FIXED.size + i * _ENTITY.size)
                      for i in range(n)))
        return cls(move=f[0:3], view=f[3:6], buttons=f[6], weapon=f[7], impulse=f[8],
                   last_update_tick=f[10], pos=f[11:14], vel=f[14:17], entities=ents)


# an update (server → player) must fit one 1500-byte frame: a fragment lost in the
# guest's path (or a path that drops fragments) would lose the whole update
UPDATE_MAX_SIZE = PORT_MTU - 20 - 8  # 1472 bytes of UDP payload


def update_size(n_echo: int, n_state: int) -> int:
    """An update's datagram size for so many echoes and entity states."""
    return HEADER_SIZE + _UPDATE_FIXED.size + n_echo * _ECHO.size + n_state * _STATE.size \
        + TAG_SIZE


def max_states(n_echo: int) -> int:
    """Entity states an update with `n_echo` echoes holds within one frame."""
    return (UPDATE_MAX_SIZE - update_size(n_echo, 0)) // _STATE.size


def max_entities(block_size: int) -> int:
    """Entities an input block of this size holds (8 in the paper's 256 bytes)."""
    return max(0, (block_size - _INPUT_FIXED.size) // _ENTITY.size)


def input_block_size(payload_size: int) -> int:
    """The encrypted block of an input of `payload_size` bytes (UDP payload)."""
    if not INPUT_MIN_SIZE <= payload_size <= INPUT_MAX_SIZE:
        raise ValueError(f"an input is {INPUT_MIN_SIZE}..{INPUT_MAX_SIZE} bytes (its fixed "
                         f"part; a {PORT_MTU}-byte MTU less the {TRAILER_SIZE}-byte trailer), "
                         f"not {payload_size}")
    return payload_size - HEADER_SIZE - TAG_SIZE


@dataclass(frozen=True)
class Echo:
    """Per player: the last input the server took, with its two server stamps."""

    player: int
    last_seq: int
    kernel_ns: int
    app_ns: int


@dataclass(frozen=True)
class EntityState:
    ident: int
    flags: int
    pos: tuple[float, float, float]
    vel: tuple[float, float, float]
    yaw: float


@dataclass(frozen=True)
class StateUpdate:
    tick: int
    server_send_ns: int
    echoes: tuple[Echo, ...]
    states: tuple[EntityState, ...]

    def pack(self) -> bytes:
        out = [_UPDATE_FIXED.pack(self.tick, self.server_send_ns, len(self.echoes),
                                  len(self.states))]
        out += [_ECHO.pack(e.player, e.last_seq, e.kernel_ns, e.app_ns) for e in self.echoes]
        out += [_STATE.pack(s.ident, s.flags, *s.pos, *s.vel, s.yaw) for s in self.states]
        return b"".join(out)

    @classmethod
    def unpack(cls, body: bytes) -> StateUpdate:
        tick, send_ns, n_echo, n_state = _update_fixed(body)
        off = _UPDATE_FIXED.size
        echoes = []
        for _ in range(n_echo):
            echoes.append(Echo(*_ECHO.unpack_from(body, off)))
            off += _ECHO.size
        states = []
        for _ in range(n_state):
            s = _STATE.unpack_from(body, off)
            states.append(EntityState(s[0], s[1], s[2:5], s[5:8], s[8]))
            off += _STATE.size
        return cls(tick, send_ns, tuple(echoes), tuple(states))


def _update_fixed(body: bytes) -> tuple[int, int, int, int]:
    """An update body's fixed part (tick, server_send_ns, echoes, states), once its
    length is checked against the counts it gives."""
    if len(body) < _UPDATE_FIXED.size:
        raise WireError("bad_body", "short update")
    tick, send_ns, n_echo, n_state = _UPDATE_FIXED.unpack_from(body, 0)
    need = _UPDATE_FIXED.size + n_echo * _ECHO.size + n_state * _STATE.size
    if len(body) != need:
        raise WireError("bad_body", f"update body {len(body)} != {need}")
    return tick, send_ns, n_echo, n_state


def update_echo(body: bytes, player: int) -> tuple[int, int, Echo | None]:
    """(tick, server_send_ns, this player's echo or None) of an update's body, checked as
    StateUpdate.unpack checks it but without building its entity states: a player's
    client reads only its own echo (a br30 update's 40 states took 38 µs to build)."""
    tick, send_ns, n_echo, _n_state = _update_fixed(body)
    for off in range(_UPDATE_FIXED.size, _UPDATE_FIXED.size + n_echo * _ECHO.size,
                     _ECHO.size):
        e = _ECHO.unpack_from(body, off)
        if e[0] == player:
            return tick, send_ns, Echo(*e)
    return tick, send_ns, None


def session_key(session: int, psk: bytes = DEFAULT_PSK) -> bytes:
    """Per-session AES-128 key; a server only accepts its own session's key."""
    return hashlib.sha256(psk + struct.pack("!I", session)).digest()[:16]


def _nonce(msg_type: int, player: int, seq: int) -> bytes:
    return struct.pack("!BBHQ", msg_type, player, 0, seq)


class Codec:
    """Seals and opens datagrams of one session."""

    def __init__(self, session: int, psk: bytes = DEFAULT_PSK,
                 input_size: int = INPUT_PAYLOAD_SIZE) -> None:
        self.session = session
        self._aead = AESGCM(session_key(session, psk))
        # the game's input size: what encode_input sends and open accepts (bad_size else)
        self.input_size = input_size
        self._block = input_block_size(input_size)

    def seal(self, header: Header, body: bytes) -> bytes:
        hdr = header.pack()
        nonce = _nonce(header.msg_type, header.player, header.seq)
        return hdr + self._aead.encrypt(nonce, body, hdr)

    def open(self, datagram: bytes) -> tuple[Header, bytes]:
        """Check and decrypt; raises WireError with the drop reason."""
        hdr = parse_header(datagram)
        if hdr.msg_type == MSG_INPUT and len(datagram) != self.input_size:
            raise WireError("bad_size", f"{len(datagram)} != {self.input_size}")
        if hdr.session != self.session:
            raise WireError("unknown_session", str(hdr.session))
        nonce = _nonce(hdr.msg_type, hdr.player, hdr.seq)
        try:
            body = self._aead.decrypt(nonce, datagram[HEADER_SIZE:], datagram[:HEADER_SIZE])
        except InvalidTag:
            raise WireError("bad_tag") from None
        return hdr, body

    # -- typed helpers -------------------------------------------------------
    def encode_input(self, player: int, seq: int, send_ns: int, inp: PlayerInput) -> bytes:
        return self.seal(Header(MSG_INPUT, player, self.session, seq, send_ns),
                         inp.pack(self._block))

    def encode_update(self, player: int, upd: StateUpdate) -> bytes:
        hdr = Header(MSG_UPDATE, player, self.session, upd.tick, upd.server_send_ns)
        return self.seal(hdr, upd.pack())

    def encode_sync_req(self, player: int, seq: int, t1: int) -> bytes:
        return self.seal(Header(MSG_SYNC_REQ, player, self.session, seq, t1), _SYNC_REQ.pack(t1))

    def encode_sync_resp(self, player: int, seq: int, t1: int, t2: int, t3: int) -> bytes:
        hdr = Header(MSG_SYNC_RESP, player, self.session, seq, t3)
        return self.seal(hdr, _SYNC_RESP.pack(t1, t2, t3))


def parse_header(datagram: bytes) -> Header:
    """Plaintext header checks that need no key (size, magic, version, type)."""
    if len(datagram) < HEADER_SIZE + TAG_SIZE:
        raise WireError("bad_size", str(len(datagram)))
    magic, version, msg_type, player, session, seq, time_ns = HEADER.unpack_from(datagram, 0)
    if magic != MAGIC:
        raise WireError("bad_magic", hex(magic))
    if version != VERSION:
        raise WireError("bad_version", str(version))
    if msg_type not in MSG_TYPES:
        raise WireError("bad_type", str(msg_type))
    if msg_type == MSG_INPUT and not INPUT_MIN_SIZE <= len(datagram) <= INPUT_MAX_SIZE:
        raise WireError("bad_size", str(len(datagram)))
    return Header(msg_type, player, session, seq, time_ns)


def decode_sync_req(body: bytes) -> int:
    if len(body) != _SYNC_REQ.size:
        raise WireError("bad_body", "sync request")
    return _SYNC_REQ.unpack(body)[0]


def decode_sync_resp(body: bytes) -> tuple[int, int, int]:
    if len(body) != _SYNC_RESP.size:
        raise WireError("bad_body", "sync response")
    return _SYNC_RESP.unpack(body)
