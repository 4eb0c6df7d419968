"""`gamebed pcap POINT_DIR`: the point's uplink frames as a pcapng Wireshark opens (no
privileges; reads only files).

Input: POINT_DIR/uplink.cap, written by the shim with `gamebed run --capture`
(docs/records.md: per frame a little-endian u64 kernel arrival stamp in ns, a u32
length, the frame), and the point's records.  Output: POINT_DIR/capture.pcapng, one
Enhanced Packet Block per frame stamped to the nanosecond (the interface declares
if_tsresol 9), and on each player input a comment with its guest, player, seq, the
stamp the server used, the delay and the stamp error (or that it was lost).

scapy's pcapng writer (2.8) writes microseconds and no if_tsresol; `NsPcapNgWriter`
adds the option and hands it integer nanoseconds, so no stamp is rounded.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from scapy.utils import RawPcapNgWriter

from analysis.records import add_delays, join_inputs, load_json, load_point

CAPTURE = "uplink.cap"
PCAPNG = "capture.pcapng"
RECORD = struct.Struct("<QI")  # hostside/shim.py CAPTURE_RECORD
LINKTYPE_ETHERNET = 1


class NsPcapNgWriter(RawPcapNgWriter):
    """scapy's RawPcapNgWriter with nanosecond stamps: the one interface block carries
    if_tsresol = 9 (10^-9 s) and every packet's timestamp is an integer count of ns."""

    def __init__(self, filename: str, ifname: str) -> None:
        super().__init__(filename)
        self.linktype, self.sync = LINKTYPE_ETHERNET, False
        self.ifname = ifname.encode()
        self.tsresol = 1  # _write_block_epb multiplies by this: the stamps are ns already

    def _write_block_idb(self, linktype: int, ifname: bytes | None = None) -> None:
        body = struct.pack("<HHI", linktype, 0, 262144)
        name = ifname or self.ifname
        opts = struct.pack("<HH", 2, len(name)) + self._add_padding(name)  # if_name
        opts += struct.pack("<HHB3x", 9, 1, 9)  # if_tsresol: 10^-9 s
        opts += struct.pack("<HH", 0, 0)
        self.f.write(self.build_block(struct.pack("<I", 1), body, options=opts))

    def frame(self, data: bytes, stamp_ns: int, comment: str | None = None) -> None:
        self._write_header(None)
        self._write_block_epb(data, ifid=0, timestamp=int(stamp_ns),
                              comments=[comment.encode()] if comment else None)


def read_capture(path: Path) -> Iterator[tuple[int, bytes]]:
    """(stamp ns, frame) per record of an uplink.cap; a truncated last record ends it."""
    with open(path, "rb") as f:
        while head := f.read(RECORD.size):
            if len(head) < RECORD.size:
                return
            stamp, n = RECORD.unpack(head)
            data = f.read(n)
            if len(data) < n:
                return
            yield stamp, data


def input_comments(point_dir: Path) -> dict[int, str]:
    """Per host arrival stamp of a player input, its comment."""
    env = (load_json(Path(point_dir) / "point.json", {}) or {}).get("environment", {})
    j = add_delays(join_inputs(load_point(point_dir, slim=True),
                               shared_clock=bool(env.get("shared_clock")),
                               clock_drifts=bool(env.get("clock_drifts", True))))
    j = j[j["host_ns"].notna()]
    out = {}
    for r in j.itertuples(index=False):
        what = (f"server_stamp_ns={r.server_ns} delay_ns={r.delay_ns:.0f} "
                f"stamp_error_ns={r.stamp_error_ns:.0f}" if r.delivered else "lost")
        out[int(r.host_ns)] = (f"gamebed input guest={r.guest} player={r.player} seq={r.seq} "
                               f"{what}")
    return out


def write_pcapng(point_dir: Path) -> dict:
    """POINT_DIR/capture.pcapng from uplink.cap and the records; returns counts."""
    point_dir = Path(point_dir)
    cap = point_dir / CAPTURE
    if not cap.exists():
        raise FileNotFoundError(f"{cap} is missing: capture a point with `gamebed run "
                                "--capture`")
    comments = input_comments(point_dir)
    out = point_dir / PCAPNG
    w = NsPcapNgWriter(str(out), "uplink")
    frames = commented = 0
    try:
        for stamp, data in read_capture(cap):
            note = comments.get(stamp)
            w.frame(data, stamp, note)
            frames += 1
            commented += note is not None
    finally:
        w.close()
    return {"pcapng": str(out), "frames": frames, "inputs_commented": commented}
