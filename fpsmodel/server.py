"""The model game server: one session per process, like the paper's (no privileges).

It reads player inputs with `recvmsg`, taking the kernel's arrival stamp from
SO_TIMESTAMPNS ancillary data (the stamp the host-side decoder may have set),
applies them at those stamps with dead reckoning, and sends 20 Hz state updates.
It never crashes on input: every bad datagram is dropped and counted by reason.
"""

from __future__ import annotations

import dataclasses
import math
import os
import select
import signal
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fpsmodel import wire
from fpsmodel.records import SERVER_INPUT_FIELDS, SERVER_INPUTS, RecordWriter, write_json

# Python's socket module lacks these on some builds; values are Linux's (asm-generic).
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
SOF_RX_HW_RAW = 0x4 | 0x40  # SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_RAW_HARDWARE
_TS = struct.Struct("qq")
DISPATCH_MODES = ("epoll", "poll", "select")
DRAIN_BATCH = 8  # datagrams a server reads at least before it looks at the clock
PARKED_WAIT_S = 1.0  # a parked server's longest sleep (a datagram or a signal ends it)
SPEED = 320.0  # units/s at full stick, Quake's default run speed


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = wire.GAME_PORT
    session: int = 1
    guest: int = 0
    max_players: int = 64
    tick_hz: float = 20.0
    dispatch: str = "epoll"
    duration: float | None = None
    idle_exit: float | None = None  # stop this long after the last input (once any came)
    out_dir: Path | None = None
    psk: bytes = wire.DEFAULT_PSK
    work_us: float = 0.0  # simulated game logic: CPU µs per connected player per tick
    input_bytes: int = wire.INPUT_PAYLOAD_SIZE  # the game's input size: others are bad_size
    # one server for many sessions (a VM guest's, kept across points): SIGUSR1 closes this
    # session's records (its summary written: "parked"), SIGUSR2 opens the next one's in
    # the directory this file names, with a fresh game state (vm/guest/uml_agent.py)
    next_file: Path | None = None


@dataclass
class PlayerState:
    addr: tuple[str, int] | None = None
    last_seq: int = -1
    kernel_ns: int = 0
    app_ns: int = 0
    pos: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    vel: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    yaw: float = 0.0
    t_ns: int = 0  # time pos refers to


def advance(p: PlayerState, t_ns: int) -> None:
    """Dead reckoning: carry the entity forward at constant velocity to t_ns."""
    if p.t_ns and t_ns > p.t_ns:
        dt = (t_ns - p.t_ns) / 1e9
        p.pos = [p.pos[i] + p.vel[i] * dt for i in range(3)]
    p.t_ns = max(p.t_ns, t_ns)


def apply_input(p: PlayerState, inp: wire.PlayerInput, t_ns: int) -> None:
    """Reckon to the input's timestamp, then let the input steer from there."""
    advance(p, t_ns)
    yaw = math.radians(inp.view[0])
    fwd, side, up = (max(-1.0, min(1.0, v)) if math.isfinite(v) else 0.0 for v in inp.move)
    p.vel = [SPEED * (fwd * math.cos(yaw) - side * math.sin(yaw)),
             SPEED * (fwd * math.sin(yaw) + side * math.cos(yaw)), SPEED * up]
    p.yaw = inp.view[0] if math.isfinite(inp.view[0]) else p.yaw


class GameLogic:
    """Simulated game-logic CPU: a fixed amount of computation per player per tick.

    The paper's model server did no game logic (work_us 0, the default).  The work is
    a loop whose iteration count is calibrated once at start (the fastest of several
    trial runs), so a tick costs the same CPU whether or not the server is preempted
    in the middle of it: a busy guest's ticks take longer, as real game logic would.
    """

    def __init__(self, work_us: float) -> None:
        self.work_us = work_us
        self.per_us = self._calibrate() if work_us > 0 else 0.0
        self.sink = 0

    @staticmethod
    def _spin(n: int) -> int:
        x = 0
        for i in range(n):
            x ^= i * 2654435761 & 0xFFFF
        return x

    def _calibrate(self, n: int = 20000) -> float:
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter_ns()
            self._spin(n)
            best = min(best, time.perf_counter_ns() - t0)
        return n / max(best / 1000.0, 1e-3)

    def run(self, players: int) -> None:
        if self.work_us > 0 and players:
            self.sink ^= self._spin(int(self.work_us * players * self.per_us))


class Dispatcher:
    """Wait for one readable socket with epoll, poll or select (seed 001's three)."""

    def __init__(self, mode: str, fd: int, wake_fd: int | None = None) -> None:
        """`wake_fd`: a second descriptor whose readability also ends a wait (the
        signal wake-up pipe of a server that parks between sessions)."""
        if mode not in DISPATCH_MODES:
            raise ValueError(f"dispatch must be one of {DISPATCH_MODES}, not {mode!r}")
        self.mode, self.fd, self.wake_fd = mode, fd, wake_fd
        self.fds = [fd] if wake_fd is None else [fd, wake_fd]
        if mode == "epoll":
            self._ep = select.epoll()
            for f in self.fds:
                self._ep.register(f, select.EPOLLIN)
        elif mode == "poll":
            self._p = select.poll()
            for f in self.fds:
                self._p.register(f, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """True once a descriptor is readable (or a signal came), False at the timeout.
        The wake-up pipe is read empty here, whichever loop waits: a byte left in it
        would end every later wait at once (a server spinning at 100% CPU)."""
        timeout = max(0.0, timeout)
        if self.mode == "epoll":
            ready = [f for f, _ in self._ep.poll(timeout)]
        elif self.mode == "poll":
            ready = [f for f, _ in self._p.poll(timeout * 1000.0)]
        else:
            ready = select.select(self.fds, [], [], timeout)[0]
        if self.wake_fd is not None and self.wake_fd in ready:
            _empty(self.wake_fd)
        return bool(ready)

    def close(self) -> None:
        if self.mode == "epoll":
            self._ep.close()


def _empty(fd: int) -> None:
    """Read a non-blocking pipe empty."""
    while True:
        try:
            if not os.read(fd, 512):
                return
        except BlockingIOError:
            return


def kernel_stamps(ancdata: list) -> tuple[int, int]:
    """(software ns, raw hardware ns) from recvmsg ancillary data; 0 where absent."""
    sw = hw = 0
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == wire.SO_TIMESTAMPNS and len(data) >= _TS.size:
            s, ns = _TS.unpack_from(data)
            sw = s * 1_000_000_000 + ns
        elif kind == SO_TIMESTAMPING and len(data) >= 3 * _TS.size:
            s, ns = _TS.unpack_from(data, 2 * _TS.size)
            hw = s * 1_000_000_000 + ns
    return sw, hw


def tick_stats(tick_ns: list[int]) -> dict:
    """The ticks the server achieved: their rate, and the 99th-percentile gap between
    two (a server behind its ticks runs the missed ones back to back, which a mean
    hides)."""
    if len(tick_ns) < 2:
        return {"tick_hz_achieved": None, "tick_gap_p99_ms": None}
    gaps = sorted(b - a for a, b in zip(tick_ns, tick_ns[1:], strict=False))
    p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))]
    return {"tick_hz_achieved": round(len(gaps) / ((tick_ns[-1] - tick_ns[0]) / 1e9), 3),
            "tick_gap_p99_ms": round(p99 / 1e6, 3)}


def open_game_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.setsockopt(socket.SOL_SOCKET, wire.SO_TIMESTAMPNS, 1)
    try:  # raw hardware stamps where a NIC has them; harmless where it doesn't
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_RX_HW_RAW)
    except OSError:
        pass
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class GameServer:
    """One game session.  `run()` returns when the duration ends or stop() is called."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.codec = wire.Codec(cfg.session, cfg.psk, input_size=cfg.input_bytes)
        self.sock = open_game_socket(cfg.host, cfg.port)
        self.port = self.sock.getsockname()[1]
        self.players: dict[int, PlayerState] = {}
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self.sizes: Counter[int] = Counter()
        self.ticks = self.updates_sent = self.sync_answered = 0
        self.tick_ns: list[int] = []  # when each tick of the session ran (monotonic ns)
        # ...and on this guest's wall clock, for the players' tick cross-check over the
        # load window alone (analysis/ticks.py)
        self.tick_wall_ns: list[int] = []
        self._pending: list[tuple[int, int, wire.PlayerInput]] = []
        self._stop = False
        self._park = self._resume = False
        self.parked = False  # between sessions: no ticks, nothing recorded
        self.logic = GameLogic(cfg.work_us)
        self._rec: RecordWriter | None = None
        self._open(cfg.out_dir)
        self._session_start = time.monotonic()

    def _open(self, out_dir: Path | None) -> None:
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            self._rec = RecordWriter(Path(out_dir) / SERVER_INPUTS, SERVER_INPUT_FIELDS)

    def stop(self, *_: object) -> None:
        self._stop = True

    def park(self, *_: object) -> None:
        self._park = True

    def resume(self, *_: object) -> None:
        self._resume = True


    def _between_sessions(self) -> bool:
        """SIGUSR1: this session's records and summary out, a fresh game state; SIGUSR2:
        the next session's records, in the directory cfg.next_file names.  True when a
        new session began."""
        if self._park:
            self._park = False
            self.parked = True
            self.drain()  # what the socket holds was sent before the park
            self._close_session(time.monotonic() - self._session_start)
            self.players.clear()
            self._pending.clear()
            self.dropped.clear()
            self.sizes.clear()
            self.accepted = self.ticks = self.updates_sent = self.sync_answered = 0
            self.tick_ns, self.tick_wall_ns = [], []
        if self._resume and self._rec is None:
            self._resume = False
            out = Path(self.cfg.next_file.read_text().strip())
            self.cfg = dataclasses.replace(self.cfg, out_dir=out)
            self._open(out)
            self._session_start = time.monotonic()
            self.parked = False
            (out / "ready").write_text(f"{self.port}\n")
            return True
        return False

    def handle(self, data: bytes, addr: tuple[str, int], kernel_ns: int, hw_ns: int,
               app_ns: int) -> str:
        """Judge one datagram; returns its verdict ('ok', 'sync' or a drop reason)."""
        try:
            hdr, body = self.codec.open(data)
            if hdr.player >= self.cfg.max_players:
                raise wire.WireError("unknown_player", str(hdr.player))
            if hdr.msg_type == wire.MSG_SYNC_REQ:
                t1 = wire.decode_sync_req(body)
                # the host stamps only inputs, so a sync request's kernel stamp is on
                # this guest's own clock, as t2 must be
                self._answer_sync(hdr, t1, kernel_ns or app_ns, addr)
                return "sync"
            if hdr.msg_type != wire.MSG_INPUT:
                raise wire.WireError("bad_type", f"type {hdr.msg_type} from a client")
            inp = wire.PlayerInput.unpack(body)
            p = self.players.setdefault(hdr.player, PlayerState())
            if hdr.seq == p.last_seq:
                raise wire.WireError("replay", str(hdr.seq))
            if hdr.seq < p.last_seq:
                raise wire.WireError("stale", str(hdr.seq))
        except wire.WireError as e:
            self.dropped[e.reason] += 1
            return e.reason
        except (ValueError, struct.error):  # defence in depth: never die on input
            self.dropped["bad_body"] += 1
            return "bad_body"
        p.addr, p.last_seq, p.kernel_ns, p.app_ns = addr, hdr.seq, kernel_ns, app_ns
        self._pending.append((kernel_ns or app_ns, hdr.player, inp))
        self.accepted += 1
        return "ok"

    def _answer_sync(self, hdr: wire.Header, t1: int, t2: int, addr: tuple[str, int]) -> None:
        p = self.players.setdefault(hdr.player, PlayerState())
        p.addr = addr
        resp = self.codec.encode_sync_resp(hdr.player, hdr.seq, t1, t2, time.time_ns())
        self._send(resp, addr)
        self.sync_answered += 1

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except OSError:
            self.dropped["send_error"] += 1

    def drain(self, until: float | None = None) -> None:
        """Read everything queued on the socket; with `until` (time.monotonic), stop at
        that time once DRAIN_BATCH datagrams are read, though more are queued: on a
        starved CPU inputs can arrive as fast as they are read, and a server that reads
        until its socket is empty then never ticks again (its updates stop)."""
        n = 0
        while True:
            if until is not None and n >= DRAIN_BATCH and time.monotonic() >= until:
                return
            n += 1
            try:
                data, anc, _flags, addr = self.sock.recvmsg(2048, 256)
            except (BlockingIOError, InterruptedError):
                return
            app_ns = time.time_ns()
            kernel_ns, hw_ns = kernel_stamps(anc)
            if len(data) >= wire.HEADER_SIZE and data[2] == wire.MSG_INPUT:
                self.sizes[len(data)] += 1
            verdict = self.handle(data, addr, kernel_ns, hw_ns, app_ns)
            if self._rec is not None and verdict != "sync":
                self._record(data, kernel_ns, hw_ns, app_ns, verdict)

    def _record(self, data: bytes, kernel_ns: int, hw_ns: int, app_ns: int, verdict: str) -> None:
        try:
            h = wire.HEADER.unpack_from(data, 0)
            player, seq, send_ns = h[3], h[5], h[6]
        except struct.error:
            player, seq, send_ns = -1, -1, 0
        self._rec.write(self.cfg.guest, player, seq, send_ns, kernel_ns, hw_ns, app_ns,
                        len(data), verdict)

    def tick(self, tick: int, t_ns: int) -> None:
        """Apply inputs in arrival-stamp order, reckon everyone to the tick, send updates."""
        for stamp, player, inp in sorted(self._pending, key=lambda x: x[0]):
            apply_input(self.players[player], inp, stamp)
        self._pending.clear()
        for p in self.players.values():
            advance(p, t_ns)
        self.logic.run(len(self.players))
        echoes = tuple(wire.Echo(pid, max(p.last_seq, 0), p.kernel_ns, p.app_ns)
                       for pid, p in sorted(self.players.items()))
        states = tuple(wire.EntityState(pid, 0, tuple(p.pos), tuple(p.vel), p.yaw)
                       for pid, p in sorted(self.players.items()))
        whole = wire.update_size(len(echoes), len(states)) <= wire.UPDATE_MAX_SIZE
        for k, (pid, p) in enumerate(sorted(self.players.items())):
            if p.addr is None:
                continue
            if whole:  # everyone's echo and state: the paper's game, and any that fits
                upd = wire.StateUpdate(tick, time.time_ns(), echoes, states)
            else:  # one frame: its own echo, its own state and the players after it
                room = wire.max_states(1)
                near = tuple(states[(k + j) % len(states)] for j in range(min(room,
                                                                              len(states))))
                upd = wire.StateUpdate(tick, time.time_ns(), (echoes[k],), near)
            self._send(self.codec.encode_update(pid, upd), p.addr)
            self.updates_sent += 1
        self.ticks += 1
        self.tick_ns.append(time.monotonic_ns())
        # once this tick's updates are handed to the kernel: what its players can receive
        self.tick_wall_ns.append(time.time_ns())
        if self._rec is not None:
            self._rec.flush()  # a crash (--fault) loses at most one tick of records

    def run(self) -> dict:
        wake, wake_w = self._wake_pipe()
        disp = Dispatcher(self.cfg.dispatch, self.sock.fileno(), wake)
        period = 1.0 / self.cfg.tick_hz
        start = time.monotonic()
        end = start + self.cfg.duration if self.cfg.duration else math.inf
        tick = 0
        seen, last_input = 0, start
        try:
            while not self._stop:
                if (self._park or self._resume) and self._between_sessions():
                    start, tick = time.monotonic(), 0  # a session's ticks count from it
                if self.parked:  # no game, no ticks: a parked guest's CPU stays idle
                    # (woken by a datagram or a signal only: dozens of parked servers
                    # each polling 20 times a second kept a UML host's CPU busy)
                    if disp.wait(PARKED_WAIT_S):
                        self.drain()
                    continue
                now = time.monotonic()
                next_tick = start + (tick + 1) * period
                if now >= end:
                    break
                if now >= next_tick:
                    tick += 1
                    self.tick(tick, time.time_ns())
                    if self.accepted != seen:
                        seen, last_input = self.accepted, now
                    elif seen and self.cfg.idle_exit and now - last_input > self.cfg.idle_exit:
                        break  # the load is over: a VM guest then ships its records
                    # a server that falls behind its ticks (game logic on a starved CPU)
                    # still reads its socket between them, as a real one must, and
                    # ticks again when the next tick is due
                    self.drain(until=start + (tick + 1) * period)
                    continue
                if disp.wait(min(next_tick, end) - now):
                    self.drain(until=next_tick)
            if self._stop:  # told to stop: what the socket holds was sent before, read it
                self.drain()
        finally:
            disp.close()
            if wake is not None:
                signal.set_wakeup_fd(-1)
                os.close(wake)
                os.close(wake_w)
        return self.finish(time.monotonic() - start)

    def _wake_pipe(self) -> tuple[int | None, int | None]:
        """A server of many sessions (cfg.next_file): the ends (read, write) of a pipe
        that each signal writes to (signal.set_wakeup_fd), so that a parked server's
        wait ends at SIGUSR2 or SIGTERM instead of polling its flags."""
        if self.cfg.next_file is None:
            return None, None
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        return r, w

    def finish(self, elapsed: float) -> dict:
        summary = self._close_session(elapsed)
        self.sock.close()
        return summary

    def _close_session(self, elapsed: float) -> dict:
        """This session's summary; its records, when it keeps them, closed and written."""
        summary = {
            "guest": self.cfg.guest, "port": self.port, "dispatch": self.cfg.dispatch,
            "accepted": self.accepted, "dropped": dict(self.dropped),
            "input_sizes": sorted(self.sizes), "ticks": self.ticks,
            "updates_sent": self.updates_sent, "sync_answered": self.sync_answered,
            "players": len(self.players), "elapsed_s": elapsed,
            "work_us_per_player_tick": self.cfg.work_us, **tick_stats(self.tick_ns),
            "tick_wall_ns": self.tick_wall_ns,
        }
        if self._rec is not None:
            self._rec.close()
            self._rec = None
            write_json(Path(self.cfg.out_dir) / "server_summary.json", summary)
        return summary


def serve(cfg: ServerConfig, ready_file: Path | None = None) -> dict:
    """Run one server until its duration ends or SIGTERM/SIGINT; always writes its records."""
    srv = GameServer(cfg)
    signal.signal(signal.SIGTERM, srv.stop)
    signal.signal(signal.SIGINT, srv.stop)
    if cfg.next_file is not None:
        signal.signal(signal.SIGUSR1, srv.park)
        signal.signal(signal.SIGUSR2, srv.resume)
    if ready_file is not None:
        ready_file.write_text(f"{srv.port}\n")
    return srv.run()
