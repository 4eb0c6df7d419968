"""The BPF stamper's ground truth on its way to shim_inputs.csv, without root: ring
records parsed in batches and spooled raw (hostside/ringbuf.py), rows written in one
format operation (fpsmodel/records.py), checked against the per-record ways they
replace."""

from __future__ import annotations

import csv
import mmap
import os
import struct
import time

import numpy as np
import pytest

from fpsmodel.records import SHIM_INPUT_FIELDS, RecordWriter
from hostside.ringbuf import RECORD, RINGBUF_BUSY, RINGBUF_DISCARD, TruthSpool, U64Cell, parse_span


def rec(stamp: int, seq: int, ip: bytes, player: int, flags: int = 0) -> bytes:
    return struct.pack("<II", RECORD.size | flags, 0) + RECORD.pack(stamp, seq, ip, player)


def test_committed_records_parse_up_to_the_first_reserved_one():
    ip1, ip2 = bytes([198, 18, 1, 1]), bytes([198, 18, 1, 2])
    span = (rec(10, 1, ip1, 0) + rec(11, 2, ip2, 3) + rec(12, 3, ip1, 1, RINGBUF_DISCARD)
            + rec(13, 4, ip2, 2) + rec(14, 5, ip1, 0, RINGBUF_BUSY) + rec(15, 6, ip1, 0))
    got, used = parse_span(memoryview(span))
    assert got["stamp_ns"].tolist() == [10, 11, 13]
    assert got["seq"].tolist() == [1, 2, 4]
    assert got["player"].tolist() == [0, 3, 2]
    assert [int(d).to_bytes(4, "little") for d in got["daddr"]] == [ip1, ip2, ip2]
    assert used == 4 * 32  # the discarded record is consumed, the reserved one is not


def test_a_record_of_another_length_is_skipped_by_its_length():
    odd = struct.pack("<II", 5, 0) + b"abcde" + bytes(3)  # 8 + 5, padded to 16
    span = rec(1, 1, bytes(4), 0) + odd + rec(2, 2, bytes(4), 1)
    got, used = parse_span(span)
    assert got["seq"].tolist() == [1, 2]
    assert used == len(span)


def test_an_empty_span_gives_no_records():
    got, used = parse_span(b"")
    assert len(got) == 0 and used == 0


def test_records_are_copied_out_of_the_ring():
    buf = bytearray(rec(7, 9, bytes(4), 1))
    got, _ = parse_span(memoryview(buf))
    buf[:] = bytes(len(buf))  # the kernel reuses the space once the consumer moves
    assert got["seq"].tolist() == [9] and got["stamp_ns"].tolist() == [7]


def test_int_rows_write_the_same_text_as_row_by_row(tmp_path):
    rows = [(0, 1, 2**63 + 5, 1_700_000_000_123_456_789, 0), (3, 0, 0, 1, 0)]
    with RecordWriter(tmp_path / "a.csv", SHIM_INPUT_FIELDS) as w:
        for r in rows:
            w.write(*r)
    with RecordWriter(tmp_path / "b.csv", SHIM_INPUT_FIELDS) as w:
        w.write_int_rows([v for r in rows for v in r])
        assert w.rows == 2
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    with open(tmp_path / "b.csv", newline="") as f:
        assert [tuple(map(int, r)) for r in list(csv.reader(f))[1:]] == rows


def test_int_rows_refuse_a_partial_row(tmp_path):
    with RecordWriter(tmp_path / "c.csv", SHIM_INPUT_FIELDS) as w, \
            pytest.raises(ValueError, match="not whole rows"):
        w.write_int_rows([1, 2, 3])


def test_spooled_records_become_the_rows_the_shim_wrote_one_by_one(tmp_path, monkeypatch):
    a, b, stranger = bytes([198, 18, 1, 1]), bytes([198, 18, 1, 2]), bytes([10, 9, 9, 9])
    records = [(1_700_000_000_000_000_001 + i, 100 + i, (a, b, stranger)[i % 3], i % 4)
               for i in range(10)]
    monkeypatch.setattr(TruthSpool, "CHUNK", 4)  # several conversion steps
    spool = TruthSpool(tmp_path / "s.spool")
    for lo, hi in ((0, 3), (3, 4), (4, 10)):  # batches as the drains read them
        spool.add(parse_span(b"".join(rec(*r) for r in records[lo:hi]))[0])
    with RecordWriter(tmp_path / "got.csv", SHIM_INPUT_FIELDS) as w:
        unknown = spool.write_csv(w, {a: 0, b: 1})
    assert unknown == 3  # the records for 10.9.9.9
    assert not (tmp_path / "s.spool").exists()
    with RecordWriter(tmp_path / "want.csv", SHIM_INPUT_FIELDS) as w:
        for stamp, seq, ip, player in records:
            if ip != stranger:
                w.write({a: 0, b: 1}[ip], player, seq, stamp, 0)
    assert (tmp_path / "got.csv").read_bytes() == (tmp_path / "want.csv").read_bytes()


def test_the_consumer_position_is_never_seen_half_written():
    """The ring's consumer position, written by the drainer while the stamper reads
    it on another CPU: every value read is one that was written (a zeroed or
    half-written position makes the kernel take the ring for full).  The reader copies
    the field in a C loop, some 10^8 reads in the window; struct.pack_into, which the
    drainer used to write it with, shows about one read in eight torn here."""
    a, b = 0x0123456789ABCDEF, 0xFEDCBA9876543210  # every byte differs
    shared = mmap.mmap(-1, mmap.PAGESIZE)
    cell = U64Cell(shared)
    cell.set(a)
    pid = os.fork()
    if pid == 0:  # the drainer: writes a and b in turn
        try:
            end = time.monotonic() + 0.4
            while time.monotonic() < end:
                for v in (a, b) * 500:
                    cell.set(v)
        finally:
            os._exit(0)
    seen = np.frombuffer(shared, np.uint64, count=1)
    reads = torn = 0
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        got = np.broadcast_to(seen, (1 << 16,)).copy()
        reads += len(got)
        torn += int(((got != a) & (got != b)).sum())
    os.waitpid(pid, 0)
    assert reads > 1_000_000 and torn == 0
    assert cell.get() in (a, b)
    del seen
    cell.release()
    shared.close()  # no export left behind: the ring's maps close after release()
