"""A memory-mapped TPACKET_V2 receive ring on a packet socket (root, like the shim).

The kernel writes each frame, with its receive stamp (the skb's, which the shim
keeps on for the run) and its aux data (partial checksum, VLAN tag taken off), into
a slot of a ring shared with this process; the shim reads every ready slot on one
wake-up and hands the slot back, with no recvmsg per frame.  V2, not V3: V3 hands
over whole blocks, which holds frames back by milliseconds.  The frames a socket
filter refuses never reach the ring, and PACKET_IGNORE_OUTGOING applies as before.

Setting a ring up waits out an RCU grace period in the kernel (tens of ms): it is
done through libc, which lets go of Python's lock meanwhile, so a shim with dozens of
guest ports sets their rings up at once, from threads (hostside/shim.py).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import struct
from collections.abc import Iterator

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V2 = 1
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 1 << 4, 1 << 6
# struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec, vlan_tci, vlan_tpid
_HDR = struct.Struct("IIIHHIIHH")
_STATUS = struct.Struct("I")
_libc = ctypes.CDLL(None, use_errno=True)  # its calls run without Python's lock


class RxRing:
    """`read()` yields (frame, stamp ns, tp_status, VLAN tag or b"") for every frame
    the kernel has put in the ring since the last call, in arrival order."""

    def __init__(self, sock: socket.socket, frames: int = 1024, frame_size: int = 2048) -> None:
        # a frame slot holds the header and a full-size frame with its VLAN tag
        if frame_size & (frame_size - 1) or frame_size < 2048:
            raise ValueError("frame_size must be a power of two, at least 2048")
        per_block = max(1, mmap.PAGESIZE // frame_size)
        block = per_block * frame_size
        frames = max(per_block, frames - frames % per_block)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        req = struct.pack("IIII", block, frames // per_block, frame_size, frames)
        if _libc.setsockopt(sock.fileno(), SOL_PACKET, PACKET_RX_RING, req, len(req)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"PACKET_RX_RING: {os.strerror(e)}")
        self.sock, self.frames, self.size = sock, frames, frame_size
        self.map = mmap.mmap(sock.fileno(), frames * frame_size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        self.at = 0  # the next slot to look at
        self.read_frames = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int | None = None) -> Iterator[tuple[bytes, int, int, bytes]]:
        m, size = self.map, self.size
        n = 0
        while limit is None or n < limit:
            off = self.at * size
            status, _len, snap, mac, _net, sec, nsec, tci, tpid = _HDR.unpack_from(m, off)
            if not status & TP_STATUS_USER:
                return
            frame = m[off + mac:off + mac + snap]
            tag = b""
            if status & TP_STATUS_VLAN_VALID:
                tag = struct.pack("!HH", tpid if status & TP_STATUS_VLAN_TPID_VALID
                                  else 0x8100, tci)
            _STATUS.pack_into(m, off, TP_STATUS_KERNEL)  # the slot goes back to the kernel
            self.at = (self.at + 1) % self.frames
            n += 1
            self.read_frames += 1
            yield frame, sec * 1_000_000_000 + nsec, status, tag

    def close(self) -> None:
        self.map.close()
