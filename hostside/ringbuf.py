"""The BPF stamper's ground truth, read from its ring buffer in batches (root: bpf(2)).

The stamper (guest-driver/bpf/stamper.bpf.c) writes one record per stamped input
into the ring buffer `gb_truth` and counts into the array `gb_stats`.  This module
finds both maps through the attached program's id (as `tc -j filter show` prints
it), maps the ring buffer (consumer page read-write, producer page and data
read-only, the data mapped twice by the kernel so a record never wraps) and reads
every committed record since the last read: no system call and no copy per
frame, and no wake-up, since the stamper writes with BPF_RB_NO_WAKEUP.  A batch is
read as one numpy array (`parse_span`), not a Python object per record, and kept
as raw records in a spool file (`TruthSpool`) that becomes shim_inputs.csv when the
load is over: the host side's CPU is also the one that forwards, and at the rates
the stamper carries (300 kpps here) a Python loop per record, or even formatting
CSV rows during the load (about 0.5 µs a row), took a share of it that the plain
bridge does not pay.

Ring layout (kernel/bpf/ringbuf.c): page 0 holds consumer_pos, page 1
producer_pos, data follows; each record has an 8-byte header (u32 length with the
BUSY bit 31 and DISCARD bit 30, u32 page offset) and is padded to 8 bytes.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

NR_BPF = 321  # x86_64
BPF_MAP_LOOKUP_ELEM, BPF_PROG_GET_FD_BY_ID, BPF_MAP_GET_FD_BY_ID = 1, 13, 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_TYPE_RINGBUF = 27
RINGBUF_BUSY, RINGBUF_DISCARD = 1 << 31, 1 << 30
RECORD = struct.Struct("<QQ4sB3x")  # stamp_ns, seq, daddr (network order), player
# a record as it lies in the ring: the kernel's 8-byte header, then RECORD, padded to 32
RECORD_DTYPE = np.dtype([("len", "<u4"), ("pg_off", "<u4"), ("stamp_ns", "<u8"),
                         ("seq", "<u8"), ("daddr", "<u4"), ("player", "u1"), ("pad", "V3")])
# gb_stats keys 0.. (stamper.bpf.c's GB_STAT_*): ring_drops_full counts the drops of a
# ring that looked full (the drainer fell behind, or its consumer position read wrong;
# the other drops: the ring's lock gave up)
STATS = ("inputs", "zero_stamp", "ring_drops", "ring_drops_full")
_libc = ctypes.CDLL(None, use_errno=True)


def _bpf(cmd: int, attr: bytes) -> tuple[int, bytes]:
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(NR_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return r, buf.raw


def _info(fd: int, size: int, fill: bytes = b"") -> bytes:
    info = ctypes.create_string_buffer(fill.ljust(size, b"\0"), size)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, size, ctypes.addressof(info)))
    return info.raw


def prog_maps(prog_id: int) -> dict[str, tuple[int, int, int]]:
    """{map name: (fd, type, max_entries)} of the maps the program with this id uses."""
    pfd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("III", prog_id, 0, 0))
    try:
        ids = (ctypes.c_uint32 * 64)()
        # struct bpf_prog_info: nr_map_ids at 52, map_ids (u64 pointer) at 56
        fill = bytes(52) + struct.pack("<IQ", 64, ctypes.addressof(ids))
        raw = _info(pfd, 256, fill)
        n = min(struct.unpack_from("I", raw, 52)[0], 64)
    finally:
        os.close(pfd)
    maps = {}
    for map_id in ids[:n]:
        fd, _ = _bpf(BPF_MAP_GET_FD_BY_ID, struct.pack("III", map_id, 0, 0))
        # struct bpf_map_info: type 0, id 4, key_size 8, value_size 12, max_entries 16,
        # map_flags 20, name[16] 24
        raw = _info(fd, 88)
        name = raw[24:40].split(b"\0", 1)[0].decode()
        maps[name] = (fd, struct.unpack_from("I", raw, 0)[0],
                      struct.unpack_from("I", raw, 16)[0])
    return maps


def parse_span(span: memoryview | bytes) -> tuple[np.ndarray, int]:
    """The committed records at the start of `span` (ring data from the consumer
    position on) and how many bytes they and any discarded records take.  Stops at the
    first record still reserved (BUSY): the next read takes it.  Records of another
    length are skipped by their length."""
    parts, pos, size = [], 0, RECORD_DTYPE.itemsize
    while len(span) - pos >= 8:
        n = (len(span) - pos) // size
        arr = np.frombuffer(span, RECORD_DTYPE, count=n, offset=pos)
        ok = arr["len"] == RECORD.size  # committed, kept, and ours
        k = n if ok.all() else int(np.argmin(ok))
        if k:
            parts.append(arr[:k].copy())
            pos += k * size
            if k == n:
                continue
        head = struct.unpack_from("<I", span, pos)[0]
        if head & RINGBUF_BUSY:
            break
        pos += ((head & ~(RINGBUF_BUSY | RINGBUF_DISCARD)) + 8 + 7) & ~7
    if not parts:
        return np.empty(0, RECORD_DTYPE), pos
    return (parts[0] if len(parts) == 1 else np.concatenate(parts)), pos


class U64Cell:
    """An aligned u64 the kernel shares (the ring's consumer and producer positions),
    read with one 8-byte load and written with one 8-byte store.  Not struct: its
    pack_into zeroes the field and then writes it byte by byte, and a stamper that
    reads the consumer position in that window (a softirq on the drainer's own CPU,
    or another CPU) sees 0, takes the ring for full and drops records."""

    def __init__(self, buf: mmap.mmap | memoryview, offset: int = 0) -> None:
        self._a = np.frombuffer(buf, np.uint64, count=1, offset=offset)

    def get(self) -> int:
        return int(self._a[0])

    def set(self, value: int) -> None:
        self._a[0] = value

    def release(self) -> None:
        self._a = None  # the buffer's export goes, so its mmap can close


class TruthSpool:
    """The ring's records, raw, in a file until the load is over (one write per batch,
    no formatting); `write_csv` then turns them into shim_inputs.csv rows."""

    CHUNK = 1 << 20  # records per conversion step: memory stays bounded on long runs

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "wb")  # noqa: SIM115

    def add(self, records: np.ndarray) -> None:
        self._fh.write(records.tobytes())

    def write_csv(self, writer, by_ip: Mapping[bytes, int]) -> int:
        """Every spooled record as a row (guest, player, seq, host_ns, 0) of `writer` (a
        fpsmodel.records.RecordWriter); returns how many named no known guest (not
        written).  The spool file goes afterwards."""
        self._fh.close()
        unknown, size = 0, RECORD_DTYPE.itemsize
        with open(self.path, "rb") as f:
            while chunk := f.read(self.CHUNK * size):
                rec = np.frombuffer(chunk, RECORD_DTYPE)
                guest = np.full(len(rec), -1, dtype=np.int64)
                for ip, g in by_ip.items():  # daddr: network-order bytes read as <u4
                    guest[rec["daddr"] == int.from_bytes(ip, "little")] = g
                known = guest >= 0
                unknown += int((~known).sum())
                rec, guest = rec[known], guest[known]
                cols = (guest, rec["player"], rec["seq"], rec["stamp_ns"], np.zeros(len(rec)))
                writer.write_int_rows(np.column_stack([c.astype(np.uint64) for c in cols])
                                      .ravel().tolist())
        self.path.unlink()
        return unknown


class TruthRing:
    """The stamper's records and counters; a context manager that closes its maps."""

    def __init__(self, prog_id: int) -> None:
        self.maps = prog_maps(prog_id)
        try:
            fd, kind, size = self.maps["gb_truth"]
            if kind != BPF_MAP_TYPE_RINGBUF:
                raise ValueError(f"program {prog_id}'s gb_truth is not a ring buffer")
            self.stats_fd = self.maps["gb_stats"][0]
        except (KeyError, ValueError) as e:
            self.close()
            raise RuntimeError(f"BPF program {prog_id} is not gamebed's stamper with a "
                               f"truth ring ({e})") from None
        page = mmap.PAGESIZE
        self.mask = size - 1
        self.cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                              offset=page)
        self.data = memoryview(self.prod)[page:]
        self.cons_pos, self.prod_pos = U64Cell(self.cons), U64Cell(self.prod)
        self.page, self.size = page, size
        self.peak_fill = 0  # the most bytes ever waiting at a read: the ring's headroom

    def read(self) -> np.ndarray:
        """Every record committed since the last read (RECORD_DTYPE; `daddr` is the
        address's network-order bytes read as a little-endian u32), copied out: their
        space goes back to the kernel at once."""
        cons, prod = self.cons_pos.get(), self.prod_pos.get()
        off = cons & self.mask  # the data is mapped twice: [off, off + prod - cons) is whole
        self.peak_fill = max(self.peak_fill, prod - cons)
        records, used = parse_span(self.data[off:off + (prod - cons)])
        if used:
            self.cons_pos.set(cons + used)
        return records

    def stats(self) -> dict[str, int]:
        out = {}
        for key, name in enumerate(STATS):
            k, v = ctypes.c_uint32(key), ctypes.c_uint64(0)
            _bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("I4xQQ", self.stats_fd, ctypes.addressof(k),
                                                  ctypes.addressof(v)))
            out[name] = v.value
        return out

    def close(self) -> None:
        for attr in ("cons_pos", "prod_pos", "data", "prod", "cons"):
            obj = self.__dict__.pop(attr, None)
            if obj is not None:
                obj.close() if isinstance(obj, mmap.mmap) else obj.release()
        for fd, _kind, _size in self.maps.values():
            os.close(fd)
        self.maps = {}

    def __enter__(self) -> TruthRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
