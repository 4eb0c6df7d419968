"""Raw record files (CSV) written by the game server, client and shim.

These schemas are the contract with `analysis/` (docs/records.md): the analyzer
reads only these files, so a report can be rebuilt without the testbed.
All times are CLOCK_REALTIME nanoseconds since the epoch.  No privileges.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SERVER_INPUTS = "server_inputs.csv"
SERVER_INPUT_FIELDS = ("guest", "player", "seq", "client_send_ns", "kernel_ns", "hw_ns",
                       "app_ns", "size", "verdict")
CLIENT_INPUTS = "client_inputs.csv"
CLIENT_INPUT_FIELDS = ("guest", "player", "seq", "sched_ns", "send_ns", "lateness_ns",
                       "left_ns")  # left_ns: encrypted and handed to the kernel (send(2))
CLIENT_UPDATES = "client_updates.csv"
CLIENT_UPDATE_FIELDS = ("guest", "player", "tick", "recv_ns", "server_send_ns", "echo_seq",
                        "echo_kernel_ns", "echo_app_ns", "rtt_ns", "arrive_ns")
# arrive_ns: the kernel's receive stamp on the client's socket (SO_TIMESTAMPNS), before
# any emulated WAN: what the players' tick terms read (analysis/ticks.py)
CLOCK_SYNC = "clock_sync.csv"
CLOCK_SYNC_FIELDS = ("guest", "sample", "t1", "t2", "t3", "t4", "offset_ns", "delay_ns",
                     "chosen", "phase")  # phase 0: before the load, 1: after it,
SYNC_CARRIED = 2  # (phase) the guest's best sample from an earlier point, carried in
SYNC_CARRY_FIELDS = ("guest", "t1", "t2", "t3", "t4")  # a client's --sync-carry file
PLAYER_CLOCK = "player_clock.csv"  # players on other machines (hostside/players.py): each
PLAYER_CLOCK_FIELDS = ("shard", "machine", "guest_first", "guests", "sample", "t1", "t2",
                       "t3", "t4", "offset_ns", "delay_ns", "chosen", "phase")
# remote shard's exchanges with the host's clock (offset_ns: host − player; phase as above)
SHIM_INPUTS = "shim_inputs.csv"
SHIM_INPUT_FIELDS = ("guest", "player", "seq", "host_ns", "forward_ns")


class RecordWriter:
    """Appends rows to one CSV file; a context manager so nothing is lost on exit."""

    def __init__(self, path: str | os.PathLike, fields: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.fields = fields
        self.rows = self._flushed = 0
        self._fh = open(self.path, "w", newline="", buffering=1 << 16)  # noqa: SIM115
        self._w = csv.writer(self._fh)
        self._w.writerow(fields)

    def write(self, *row: Any) -> None:
        self._w.writerow(row)
        self.rows += 1

    def write_int_rows(self, flat: Sequence[int]) -> None:
        """Many rows of integers at once, given row after row in one flat sequence: the
        same text as write() per row (csv's CRLF line ends included) from one format
        operation (the shim's ground truth comes in batches of thousands of rows)."""
        width = len(self.fields)
        if len(flat) % width:
            raise ValueError(f"{len(flat)} values are not whole rows of {width}")
        n = len(flat) // width
        if n:
            self._fh.write((",".join(["%d"] * width) + "\r\n") * n % tuple(flat))
            self.rows += n

    def flush(self) -> None:
        """Hand what is buffered to the kernel: a process killed later loses none of it."""
        if self.rows != self._flushed:
            self._fh.flush()
            self._flushed = self.rows

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic, durable JSON write: a reader never sees half a file, and after a crash
    (of the process or the machine) the file is the old one or the new one, whole."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def sync_dir(path: str | os.PathLike) -> None:
    """Make a directory's entries (new and renamed files) durable, where the file system
    can (some, such as a guest's hostfs, refuse fsync on a directory: nothing to do)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def sync_tree(path: str | os.PathLike) -> int:
    """fsync every file and directory under `path` (a finished point's records, before
    the next point starts); returns how many files were synced."""
    n = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            n += 1
        sync_dir(root)
    return n
