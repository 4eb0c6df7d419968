"""The model game client and latency recorder (no privileges).

One process drives P players against one or many servers.  Each player sends
its 296-byte inputs as a Poisson process (mean 20/s) at the scheduled instants,
and records its own lateness; updates coming back give round-trip delay (from
the servers' echoes), update jitter and loss.  Before the session it runs the
NTP-style clock sync against every server and records offset and uncertainty.
"""

from __future__ import annotations

import heapq
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fpsmodel import wire
from fpsmodel.clientconfig import ClientConfig, Game, Target
from fpsmodel.clocksync import clock_sync_all, clock_sync_rounds
from fpsmodel.punctual import (
    EPOLL_MARGIN_S,
    punctual_timers,
    realtime,
    spin_per_send,
    spin_until,
    wait_exact,
)
from fpsmodel.records import (
    CLIENT_INPUT_FIELDS,
    CLIENT_INPUTS,
    CLIENT_UPDATE_FIELDS,
    CLIENT_UPDATES,
    CLOCK_SYNC,
    CLOCK_SYNC_FIELDS,
    SYNC_CARRIED,
    RecordWriter,
)
from fpsmodel.server import kernel_stamps
from fpsmodel.timing import SyncSample, best_sample, content_rng, input_gaps_ns, player_rng
from fpsmodel.wan import WanLink, WanModel


@dataclass
class Player:
    target: Target
    pid: int
    sock: socket.socket
    codec: wire.Codec
    gaps: object
    rng: object
    seq: int = 0
    sent_at: dict[int, int] = field(default_factory=dict)
    last_echo: int = -1
    last_tick: int = -1
    yaw: float = 0.0
    # the entities this player's client tracks: one is seen anew with each input, and
    # an input carries a random number of them (drawing all 8 anew was half of an
    # input's cost to the load generator)
    seen: list[wire.Entity] = field(default_factory=list)


def open_socket(target: Target) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    # each update's arrival as the kernel saw it: the client's own spins and sends do
    # not widen the gaps between ticks (the players' tick terms read these)
    sock.setsockopt(socket.SOL_SOCKET, wire.SO_TIMESTAMPNS, 1)
    sock.connect((target.host, target.port))
    sock.setblocking(False)
    return sock


def _entity(r, ident: int) -> wire.Entity:
    return wire.Entity(ident, 1, (r.uniform(-2e3, 2e3), r.uniform(-2e3, 2e3), 0.0),
                       r.uniform(0, 360), r.uniform(0, 320))


def make_input(p: Player) -> wire.PlayerInput:
    """A plausible input: steering that wanders, occasional fire and jump."""
    r = p.rng
    p.yaw = (p.yaw + r.gauss(0.0, 8.0)) % 360.0
    while len(p.seen) < wire.MAX_ENTITIES:
        p.seen.append(_entity(r, len(p.seen)))
    i = r.randrange(wire.MAX_ENTITIES)
    p.seen[i] = _entity(r, i)
    ents = tuple(p.seen[:r.randint(0, wire.MAX_ENTITIES)])
    return wire.PlayerInput(
        move=(r.choice((1.0, 1.0, 0.5, 0.0, -1.0)), r.uniform(-1, 1), 0.0),
        view=(p.yaw, r.uniform(-30, 30), 0.0),
        buttons=int(r.random() < 0.2) | (r.random() < 0.05) << 1,
        weapon=r.randint(0, 7), last_update_tick=max(p.last_tick, 0), entities=ents)


class GameClient:
    """Runs the players; `run()` writes the client records and returns a summary dict."""

    def __init__(self, cfg: ClientConfig,
                 progress: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.progress = progress or (lambda _m: None)
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.players: list[Player] = []
        for t in cfg.targets:
            g = t.game or Game(cfg.players, cfg.rate_hz, cfg.input_process, cfg.input_jitter,
                               cfg.input_bytes)
            codec = wire.Codec(t.session, cfg.psk, input_size=g.input_bytes)
            for pid in range(g.players):
                # the schedule has a stream of its own, so it is the seed's whatever the
                # inputs hold and whichever loop sends them (fpsmodel/fastcore.py)
                gaps = input_gaps_ns(g.process, g.rate_hz, player_rng(cfg.seed, t.guest, pid),
                                     g.jitter)
                self.players.append(Player(t, pid, open_socket(t), codec, gaps,
                                           content_rng(cfg.seed, t.guest, pid)))
        self.spin_us = spin_per_send(cfg.spin_us, cfg.spin_share, self.offered_rate())
        self.core, self.core_why = pick_core(cfg)
        self.inputs_w = RecordWriter(out / CLIENT_INPUTS, CLIENT_INPUT_FIELDS)
        self.updates_w = RecordWriter(out / CLIENT_UPDATES, CLIENT_UPDATE_FIELDS)
        self.sync_w = RecordWriter(out / CLOCK_SYNC, CLOCK_SYNC_FIELDS)
        self.sync: dict[int, dict] = {}
        self.encode_ns: list[int] = []  # per input: header stamp to handed to the kernel
        self.wan_lost_updates = 0  # rows of updates the emulated WAN lost (no recv_ns)
        self.errors = 0
        self.wan_up = self.wan_down = None
        if cfg.wan:  # own seeds: the inputs sent are the same with and without a WAN
            model = WanModel.parse(cfg.wan)
            self.wan_up = WanLink(model, cfg.seed * 7919 + 1)
            self.wan_down = WanLink(model, cfg.seed * 7919 + 2)

    def offered_rate(self) -> float:
        """Inputs per second the schedule asks of this client, all players together."""
        return sum(t.game.rate_hz if t.game else self.cfg.rate_hz
                   for t in self.cfg.targets
                   for _ in range(t.game.players if t.game else self.cfg.players))

    def close(self) -> None:
        for w in (self.inputs_w, self.updates_w, self.sync_w):
            w.close()
        for p in self.players:
            p.sock.close()

    def sync_clocks(self, phase: int = 0) -> None:
        """Clock-sync exchange with every server: before the load (phase 0, required) and
        after it (phase 1, best effort), so the analysis can follow a drifting guest clock."""
        first = {}
        for p in self.players:
            first.setdefault(p.target.guest, p)
        peers = {g: (p.sock, p.codec, p.pid) for g, p in first.items()}
        # before the load, one server at a time: the quietest exchange, the best offset;
        # after it, every server at once, bounded (servers may be working off backlogs).
        # A guest with a carried sample is asked at once with the others like it: its
        # tries only confirm the carried offset (_carried), and one at a time they took
        # 20 s of a 48-guest point's load (60 ms a try)
        if phase:
            together = clock_sync_all(peers, self.cfg.end_sync_samples)
        elif self.cfg.sync_all:  # patient: guests just booted answer late at first
            together = clock_sync_all(peers, self.cfg.sync_samples, timeout=0.5,
                                      give_up_after=self.cfg.sync_samples)
        else:
            carry = self.cfg.sync_carry
            together = clock_sync_all({g: v for g, v in peers.items() if g in carry},
                                      self.cfg.carried_sync_samples)
            # a guest whose carried offset its tries refute (its clock moved), or that
            # answered none of them, is synced afresh, one server at a time, like a guest
            # with none
            afresh = {g: v for g, v in peers.items()
                      if g not in carry or not together[g]
                      or self._carried(g, together[g]) is None}
            together.update(clock_sync_rounds(afresh, self.cfg.sync_samples))
        for guest, p in first.items():
            samples = together[guest]
            if not samples:
                if not phase:  # a starved guest: the load goes on without its offset
                    # (host stamps need none); the point records it and says so
                    self.sync[guest] = {"offset_ns": None, "uncertainty_ns": None,
                                        "samples": 0, "carried": False,
                                        "error": f"no answer from {p.target.host}:"
                                                 f"{p.target.port}"}
                    self.progress(f"client: clock sync with guest {guest}: no answer; "
                                  "playing on without its offset")
                continue
            carried = self._carried(guest, samples) if not phase else None
            best, unc = best_sample(samples + ([carried] if carried else []))
            for i, s in enumerate(samples):
                self.sync_w.write(guest, i, s.t1, s.t2, s.t3, s.t4, s.offset_ns, s.delay_ns,
                                  int(s is best), phase)
            if carried is not None:
                s = carried
                self.sync_w.write(guest, len(samples), s.t1, s.t2, s.t3, s.t4, s.offset_ns,
                                  s.delay_ns, int(s is best), SYNC_CARRIED)
            if phase == 0:
                self.sync[guest] = {"offset_ns": best.offset_ns, "uncertainty_ns": unc,
                                    "samples": len(samples), "carried": carried is not None}

    def _carried(self, guest: int, samples: list[SyncSample]) -> SyncSample | None:
        """The guest's carried sample, if this point's own tries agree with it: the two
        offsets within the sum of their uncertainties (else the guest's clock moved, and
        only this point's tries count)."""
        c = self.cfg.sync_carry.get(guest)
        if c is None:
            return None
        own, unc = best_sample(samples)
        return c if abs(own.offset_ns - c.offset_ns) <= unc + max(0, c.delay_ns) // 2 else None

    def _send(self, p: Player, sched_ns: int) -> None:
        now = time.time_ns()  # the header's stamp: authenticated, so before encryption
        data = p.codec.encode_input(p.pid, p.seq, now, make_input(p))
        # when it really left: built, encrypted and handed to the kernel (to the WAN's
        # queue with --wan, the player's own network); delay is measured from here
        left = time.time_ns()
        if self.wan_up is not None:  # leaves once the WAN lets it (_release)
            self.wan_up.put(left, (p, data), len(data) + 42)
        else:
            self._put_on_wire(p, data)
        self.encode_ns.append(left - now)
        self.inputs_w.write(p.target.guest, p.pid, p.seq, sched_ns, now, now - sched_ns, left)
        p.sent_at[p.seq] = now
        p.sent_at.pop(p.seq - 256, None)
        p.seq += 1

    def _put_on_wire(self, p: Player, data: bytes) -> None:
        try:
            p.sock.send(data)
        except OSError:
            self.errors += 1  # recorded as sent: the server side shows it as lost

    def _release(self) -> None:
        """What the emulated WAN lets through by now: inputs onto the wire, updates in."""
        if self.wan_up is None:
            return
        now = time.time_ns()
        for _t, (p, data) in self.wan_up.due(now):
            self._put_on_wire(p, data)
        for t, (p, data, arrive) in self.wan_down.due(now):
            self._on_datagram(p, data, t, arrive)

    def _wan_next_s(self) -> float | None:
        """Seconds until the WAN next has something to let through."""
        if self.wan_up is None:
            return None
        due = [t for t in (self.wan_up.next_ns(), self.wan_down.next_ns()) if t is not None]
        return max(0.0, (min(due) - time.time_ns()) / 1e9) if due else None

    def _receive(self, p: Player) -> None:
        while True:
            try:
                data, anc, _fl, _addr = p.sock.recvmsg(4096, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable before the server is up
                self.errors += 1
                return
            recv_ns = time.time_ns()
            arrive = kernel_stamps(anc)[0] or recv_ns
            if self.wan_down is not None:  # counts as received once the WAN delivers it
                if not self.wan_down.put(recv_ns, (p, data, arrive), len(data) + 42):
                    self._arrived_only(p, data, arrive)
                continue
            self._on_datagram(p, data, recv_ns, arrive)

    def _on_datagram(self, p: Player, data: bytes, recv_ns: int, arrive_ns: int) -> None:
        try:
            hdr, body = p.codec.open(data)
            if hdr.msg_type != wire.MSG_UPDATE:
                return
            tick, send_ns, echo = wire.update_echo(body, p.pid)
        except wire.WireError:
            self.errors += 1
            return
        self._record_update(p, tick, send_ns, echo, (recv_ns, arrive_ns))

    def _arrived_only(self, p: Player, data: bytes, arrive_ns: int) -> None:
        """An update the emulated WAN lost after it reached this host: a row with its
        arrival and no recv_ns, so the players' tick terms, which judge the host's share
        under --wan, count it as the host delivered it (docs/records.md)."""
        try:
            hdr, body = p.codec.open(data)
            if hdr.msg_type != wire.MSG_UPDATE:
                return
            tick = wire.update_echo(body, p.pid)[0]
        except wire.WireError:
            return
        self.updates_w.write(p.target.guest, p.pid, tick, "", "", "", "", "", "", arrive_ns)
        self.wan_lost_updates += 1

    def _record_update(self, p: Player, tick: int, server_send_ns: int,
                       echo: wire.Echo | None, when: tuple[int, int]) -> None:
        recv_ns, arrive_ns = when
        p.last_tick = tick
        rtt = ""
        # app_ns 0: the server has accepted no input of this player yet (the echo is empty)
        if (echo is not None and echo.app_ns and echo.last_seq != p.last_echo
                and echo.last_seq in p.sent_at):
            # round trip minus the server's hold time (both on the server's clock)
            rtt = (recv_ns - p.sent_at[echo.last_seq]) - (server_send_ns - echo.app_ns)
            p.last_echo = echo.last_seq
        self.updates_w.write(p.target.guest, p.pid, tick, recv_ns, server_send_ns,
                             echo.last_seq if echo else "", echo.kernel_ns if echo else "",
                             echo.app_ns if echo else "", rtt, arrive_ns)

    def run(self) -> dict:
        punctual_timers()
        # the policy this process had: a client run in-process (`gamebed play`) must not
        # leave its caller SCHED_FIFO, nor the children the caller starts later
        before = (os.sched_getscheduler(0), os.sched_getparam(0))
        sched = realtime(self.cfg.priority)
        try:
            self.sync_clocks()
            return {**self._loop(), "sched": sched, "spin_us": round(self.spin_us, 1)}
        finally:
            self.close()
            if sched.startswith("fifo"):
                os.sched_setscheduler(0, *before)

    def _send_due(self, heap: list, end: int) -> None:
        """Every input due by now (before the end), in schedule order."""
        now = time.time_ns()
        while heap and heap[0][0] <= now and heap[0][0] < end:
            due, i = heapq.heappop(heap)
            self._send(self.players[i], due)
            heapq.heappush(heap, (due + next(self.players[i].gaps), i))

    def _loop(self) -> dict:
        compiled = None
        if self.core is not None:  # its schedule is made before the load starts
            from fpsmodel.fastcore import CompiledLoad

            compiled = CompiledLoad(self.core, self, int(self.cfg.duration * 1e9))
        start = self._start_ns()
        end = start + int(self.cfg.duration * 1e9)
        if self.cfg.started_file is not None:  # what a fault schedule times itself by
            Path(self.cfg.started_file).write_text(f"{start}\n")
        # let the last updates and echoes arrive (and what the WAN still holds cross it)
        linger = 0.15 + (self.wan_up.m.span_ns / 1e9 if self.wan_up else 0.0)
        if compiled is not None:
            from fpsmodel.fastcore import run_load

            run_load(compiled, start, end, linger)
        else:
            self._python_load(start, end, linger)
        if self.cfg.end_sync_samples:
            self.sync_clocks(phase=1)
        return {"inputs_sent": self.inputs_w.rows,
                "updates_received": self.updates_w.rows - self.wan_lost_updates,
                "start_ns": start, "end_ns": end, "errors": self.errors,
                "wan": None if self.wan_up is None else {
                    "args": " ".join(self.cfg.wan), "inputs_dropped": self.wan_up.dropped,
                    "updates_dropped": self.wan_down.dropped},
                "clock_sync": {str(k): v for k, v in self.sync.items()},
                "encode": percentiles_us(self.encode_ns),
                "core": "compiled" if self.core is not None else f"python: {self.core_why}"}

    def _python_load(self, start: int, end: int, linger: float) -> None:
        """The load by the Python loop (no compiled core, or an emulated WAN)."""
        sel = selectors.DefaultSelector()
        for i, p in enumerate(self.players):
            sel.register(p.sock, selectors.EVENT_READ, i)
        # select(2) on the epoll set's own fd, which is readable when any socket is: one
        # fd to scan, not one per player (200 at two br30 servers, each wait)
        fds = [sel.fileno()] if hasattr(sel, "fileno") else [p.sock.fileno() for p in self.players]
        heap = [(start + next(p.gaps), i) for i, p in enumerate(self.players)]
        heapq.heapify(heap)
        last_note = time.monotonic()
        while True:
            now = time.time_ns()
            if now >= end:
                break
            wait = (min(heap[0][0], end) - now) / 1e9
            wan = self._wan_next_s()
            if wan is not None:
                wait = min(wait, wan)
            for key, _ in self._wait(sel, fds, wait):
                self._receive(self.players[key.data])
                self._send_due(heap, end)  # a burst of updates never holds a send back
            self._release()
            if self.spin_us and heap and heap[0][0] < end:
                spin_until(min(heap[0][0], time.time_ns() + int(self.spin_us * 1e3)))
            self._send_due(heap, end)
            if time.monotonic() - last_note >= 5.0:
                last_note = time.monotonic()
                self.progress(f"client: {self.inputs_w.rows} inputs sent, "
                              f"{self.updates_w.rows} updates received")
        # the schedule is the seed's, whatever the timing: an input due before the end
        # that a late wake-up left unsent goes now (late, and its lateness is recorded),
        # so two runs of one seed send the same inputs
        while heap and heap[0][0] < end:
            due, i = heapq.heappop(heap)
            self._send(self.players[i], due)
            heapq.heappush(heap, (due + next(self.players[i].gaps), i))
        self._linger(sel, linger)
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)  # the end sync reads these sockets itself
        sel.close()

    def _start_ns(self) -> int:
        """When the load starts: now, or, for a shard, when the gate says (every shard
        starts together), waited for exactly."""
        if self.cfg.start_gate is None:
            return time.time_ns()
        start = self.cfg.start_gate()
        if (ahead := (start - time.time_ns()) / 1e9) > 0.002:
            time.sleep(ahead - 0.002)
        spin_until(start)
        return start

    def _wait(self, sel: selectors.BaseSelector, fds: list[int], wait: float) -> list:
        """Wait `wait` s, less the spin (a sleep overshoots by a wake-up), or until a
        socket has data; its events.  epoll's timeouts are whole ms, and one in 50-100
        here lands another 1.2 ms late (measured): wait in epoll until EPOLL_MARGIN_S
        before, then in select(2), whose µs timeout is kept, still reading the sockets."""
        wait -= self.spin_us / 1e6
        if wait > EPOLL_MARGIN_S + 0.001:
            return sel.select(wait - EPOLL_MARGIN_S)
        if wait > 0:
            wait_exact(fds, wait)
        return sel.select(0)

    def _linger(self, sel: selectors.BaseSelector, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            wan = self._wan_next_s()
            for key, _ in sel.select(left if wan is None else min(left, wan)):
                self._receive(self.players[key.data])
            self._release()


def pick_core(cfg: ClientConfig) -> tuple[object | None, str]:
    """The compiled core where asked for and built (fpsmodel/fastcore.py), else None and
    why the Python loop plays: it was asked for, the WAN is emulated here, or the core
    could not be built (then `core = "compiled"` is an error)."""
    if cfg.core == "python":
        return None, "asked for"
    if cfg.wan:
        why = "the compiled core does not emulate a WAN"
    else:
        from fpsmodel.fastcore import library

        lib, why = library()
        if lib is not None:
            return lib, ""
    if cfg.core == "compiled":
        raise RuntimeError(f"the client's compiled core: {why}")
    return None, why


def percentiles_us(ns: list[int]) -> dict:
    """p50 and p99 of a list of ns, in µs (None where empty)."""
    if not ns:
        return {"p50_us": None, "p99_us": None}
    v = sorted(ns)
    return {"p50_us": round(v[len(v) // 2] / 1e3, 3),
            "p99_us": round(v[min(len(v) - 1, int(0.99 * len(v)))] / 1e3, 3)}
