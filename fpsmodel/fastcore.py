"""The client's compiled core (fpsmodel/fastclient.c): built on first use, loaded with
ctypes, and driven slice by slice (no privileges; a C compiler and OpenSSL's libcrypto
headers to build it).

Python keeps what it did: the schedule (every input's due time and player, from the
seed, before the load), the sockets, the clock sync and the records.  The core sends
each input on time and takes every update, recording both in memory; the records are
written after the load (every input's and every update's: the players' SLA reads
them), the updates opened and their echoes matched then.  Where the core cannot be
built, or for what it does not do (an emulated WAN on the client), the Python loop
runs instead, and the client's summary says which ran and why (`core`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from fpsmodel import wire

SRC = Path(__file__).with_name("fastclient.c")
SLICE_NS = 5_000_000_000  # the core returns this often: a progress note, then on
BUF_BYTES = 8 << 20  # updates' bytes between two returns
UPD_CAP = 1 << 16

SENT = np.dtype([("sched", "<i8"), ("send", "<i8"), ("left", "<i8"), ("player", "<i4"),
                 ("pad", "<i4"), ("seq", "<u8")])
UPD = np.dtype([("recv", "<i8"), ("arrive", "<i8"), ("off", "<i8"), ("player", "<i4"),
                ("len", "<i4")])


class CPlayer(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int32), ("guest", ctypes.c_int32), ("pid", ctypes.c_int32),
                ("target", ctypes.c_int32), ("session", ctypes.c_uint32),
                ("block", ctypes.c_int32), ("seq", ctypes.c_uint64),
                ("last_tick", ctypes.c_int64), ("rng", ctypes.c_uint64),
                ("yaw", ctypes.c_float), ("seen", ctypes.c_int32),
                ("ents", ctypes.c_ubyte * 192)]


class CRun(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in ("end", "stop", "spin_ns", "n", "next")] + [
        ("due", ctypes.c_void_p), ("who", ctypes.c_void_p), ("players", ctypes.c_void_p),
        ("core", ctypes.c_void_p), ("epfd", ctypes.c_int32), ("pad", ctypes.c_int32),
        ("sent", ctypes.c_void_p), ("sent_cap", ctypes.c_int64), ("nsent", ctypes.c_int64),
        ("upd", ctypes.c_void_p), ("upd_cap", ctypes.c_int64), ("nupd", ctypes.c_int64),
        ("buf", ctypes.c_void_p), ("buf_cap", ctypes.c_int64), ("buf_used", ctypes.c_int64),
        ("errors", ctypes.c_int64)]


# the records both sides read, in the order of fastclient.c's layout table: a struct,
# then its fields (each size and offset is checked before the core is used)
LAYOUT = ((CPlayer, [f[0] for f in CPlayer._fields_]), (SENT, SENT.names),
          (UPD, UPD.names), (CRun, [f[0] for f in CRun._fields_]))


def expected_layout(layout=LAYOUT) -> list[int]:
    """What fastclient.c's gb_layout() must report: each struct's size, then each
    field's offset, as this module defines them (ctypes structures, numpy dtypes)."""
    out = []
    for kind, names in layout:
        if isinstance(kind, np.dtype):
            out += [kind.itemsize, *(kind.fields[n][1] for n in names)]
        else:
            out += [ctypes.sizeof(kind), *(getattr(kind, n).offset for n in names)]
    return out


def layout_problem(lib: ctypes.CDLL, want: list[int] | None = None) -> str | None:
    """Why the core's records cannot be trusted (its layout differs from this module's),
    or None."""
    want = expected_layout() if want is None else want
    buf = (ctypes.c_int64 * (len(want) + 8))()
    lib.gb_layout.restype = ctypes.c_int64
    n = lib.gb_layout(buf, len(buf))
    got = list(buf[:min(n, len(buf))])
    if got == want:
        return None
    where = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                 min(len(got), len(want)))
    return (f"the core's record layout differs from fpsmodel/fastcore.py's (entry {where} "
            f"of {len(want)}: the core has {got[where] if where < len(got) else 'none'}, "
            f"Python {want[where] if where < len(want) else 'none'}); keep fastclient.c's "
            "structs and LAYOUT in step")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fpsmodel"


_LIB: tuple[ctypes.CDLL | None, str] | None = None


def library() -> tuple[ctypes.CDLL | None, str]:
    """The built core, or None and why it could not be built (once per process)."""
    global _LIB
    if _LIB is None:
        _LIB = _build()
    return _LIB


def compile_library(src_path: Path, libs: tuple[str, ...] = (),
                    needs: str = "gcc") -> tuple[ctypes.CDLL | None, str]:
    """A C file built into a shared library on first use, cached by its source's digest
    (so every clone on the machine reuses it), and loaded; or None and why not."""
    src = src_path.read_bytes()
    so = cache_dir() / f"{src_path.stem}-{hashlib.sha256(src).hexdigest()[:16]}.so"
    if not so.exists():
        so.parent.mkdir(parents=True, exist_ok=True)
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        try:
            r = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC",
                                "-o", str(tmp), str(src_path), *libs],
                               capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"no C compiler ({e}); install {needs}"
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["?"])[0]
            return None, f"{src_path.name} did not build ({why}); install {needs}"
        tmp.replace(so)  # atomic: a concurrent user sees the whole library or none
    return ctypes.CDLL(str(so)), ""


def _build() -> tuple[ctypes.CDLL | None, str]:
    lib, why = compile_library(SRC, ("-lcrypto",), "gcc and libssl-dev")
    if lib is None:
        return None, why.replace("fastclient.c did not build", "the core did not build")
    why = layout_problem(lib)
    if why:
        return None, why
    lib.gb_new.restype = ctypes.c_void_p
    lib.gb_new.argtypes = [ctypes.c_int, ctypes.c_char_p]
    lib.gb_free.argtypes = [ctypes.c_void_p]
    lib.gb_run.argtypes = [ctypes.POINTER(CRun)]
    lib.gb_epoll.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib, ""


def schedule(gaps: list, duration_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Every input due in the load: (ns after its start, player index), in time order,
    ties by player (the Python loop's heap order).  `gaps`: each player's gap iterator."""
    times, who = [], []
    for i, g in enumerate(gaps):
        t, mine = 0, []
        while (t := t + next(g)) < duration_ns:
            mine.append(t)
        times.append(np.asarray(mine, dtype=np.int64))
        who.append(np.full(len(mine), i, dtype=np.int32))
    due, idx = np.concatenate(times or [np.zeros(0, np.int64)]), np.concatenate(
        who or [np.zeros(0, np.int32)])
    order = np.argsort(due, kind="stable")
    return np.ascontiguousarray(due[order]), np.ascontiguousarray(idx[order])


class CompiledLoad:
    """One load through the core: its players, schedule and records in memory."""

    def __init__(self, lib: ctypes.CDLL, client, duration_ns: int) -> None:
        self.lib, self.client = lib, client
        players = client.players
        targets = list(dict.fromkeys(p.target for p in players))  # each its own session
        tindex = {t: k for k, t in enumerate(targets)}
        keys = b"".join(wire.session_key(t.session, client.cfg.psk) for t in targets)
        self.core = lib.gb_new(len(targets), keys)
        if not self.core:
            raise RuntimeError("the client's core could not set up AES-GCM")
        self.cp = (CPlayer * len(players))()
        for i, p in enumerate(players):
            c = self.cp[i]
            c.fd, c.guest, c.pid, c.target = p.sock.fileno(), p.target.guest, p.pid, \
                tindex[p.target]
            c.session, c.last_tick = p.target.session, -1
            c.block = wire.input_block_size(p.codec.input_size)
            c.rng = int.from_bytes(hashlib.sha256(
                f"gamebed:{client.cfg.seed}:{p.target.guest}:{p.pid}:input".encode())
                .digest()[:8], "little")
        # before the load starts: its schedule is ready when it does
        self.due, self.who = schedule([p.gaps for p in players], duration_ns)
        self.sent = np.zeros(len(self.due), SENT)
        self.upd = np.zeros(UPD_CAP, UPD)
        self.buf = np.zeros(BUF_BYTES, np.uint8)
        for a in (self.sent, self.upd, self.buf):  # every page faulted in now, not in
            a.fill(1)  # the load (calloc's pages are mapped on first write)
        self.chunks: list[tuple[np.ndarray, bytes]] = []
        self.run = CRun(spin_ns=int(client.spin_us * 1e3), n=len(self.due),
                        due=self.due.ctypes.data, who=self.who.ctypes.data,
                        players=ctypes.addressof(self.cp), core=self.core,
                        epfd=lib.gb_epoll(ctypes.addressof(self.cp), len(players)),
                        sent=self.sent.ctypes.data, sent_cap=len(self.sent),
                        upd=self.upd.ctypes.data, upd_cap=UPD_CAP,
                        buf=self.buf.ctypes.data, buf_cap=BUF_BYTES)
        if self.run.epfd < 0:
            raise OSError("the client's core could not make its epoll set")

    def play(self, start: int, end: int, stop: int) -> None:
        """The load from `start` to `end`, and what arrives until `stop` after it."""
        self.due += start  # in place: the core reads this array
        self.run.end = end
        at = start
        while at < stop:
            at = min(at + SLICE_NS, stop)
            self.run.stop = at
            while (rc := self.lib.gb_run(ctypes.byref(self.run))) == 1:
                self._stash()  # the update buffers were full: keep them, go on
            if rc < 0:
                raise RuntimeError("the client's core failed to seal an input")
            self._stash()
            self.client.progress(f"client: {self.run.nsent} inputs sent, "
                                 f"{sum(len(u) for u, _ in self.chunks)} updates received")

    def _stash(self) -> None:
        n, used = self.run.nupd, self.run.buf_used
        if n:
            self.chunks.append((self.upd[:n].copy(), self.buf[:used].tobytes()))
        self.run.nupd = self.run.buf_used = 0

    def close(self) -> None:
        if self.run.epfd >= 0:
            os.close(self.run.epfd)
        self.lib.gb_free(self.core)

    def record(self) -> None:
        """Every input and update into the client's records (after the load)."""
        c, s = self.client, self.sent[:self.run.nsent]
        guests = np.array([p.target.guest for p in c.players], np.int64)
        pids = np.array([p.pid for p in c.players], np.int64)
        pl = s["player"].astype(np.int64)
        rows = np.column_stack([guests[pl], pids[pl], s["seq"].astype(np.int64), s["sched"],
                                s["send"], s["send"] - s["sched"], s["left"]])
        c.inputs_w.write_int_rows(rows.ravel().tolist())
        self._record_unsent()
        c.encode_ns = (s["left"] - s["send"]).tolist()
        c.errors += int(self.run.errors)
        # each player's inputs in send order: one stable sort, not a scan per player
        order = np.argsort(pl, kind="stable")
        bounds = np.searchsorted(pl[order], np.arange(len(c.players) + 1))
        seqs, sends = s["seq"][order].tolist(), s["send"][order].tolist()
        for i, p in enumerate(c.players):
            a, b = int(bounds[i]), int(bounds[i + 1])
            p.sent_at = dict(zip(seqs[a:b], sends[a:b], strict=True))
            p.seq = int(seqs[b - 1]) + 1 if b > a else 0
        for upd, data in self.chunks:
            for u in upd.tolist():
                recv, arrive, off, player, n = u
                c._on_datagram(c.players[player], data[off:off + n], recv, arrive)


    def _record_unsent(self) -> None:
        """Inputs due in the load that the core had not sent when it stopped: recorded
        with no send time, late by at least the time from their due time to the stop
        (as the Python loop's late inputs are), never dropped."""
        c, r = self.client, self.run
        due, who = self.due[r.next:], self.who[r.next:]
        left = due < r.end
        for t, i in zip(due[left].tolist(), who[left].tolist(), strict=True):
            p = c.players[i]
            c.inputs_w.write(p.target.guest, p.pid, "", t, "", r.stop - t, "")


def run_load(load: CompiledLoad, start: int, end: int, linger_s: float) -> None:
    """One prepared load through the compiled core, recorded after it."""
    client = load.client
    try:
        load.play(start, end, end + int(linger_s * 1e9))
    finally:
        load.close()
    t0 = time.monotonic()
    load.record()
    client.progress(f"client: records written in {time.monotonic() - t0:.1f} s")
