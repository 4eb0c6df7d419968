"""Small programs the namespace tests run inside a namespace (`ip netns exec`).

  recv IP PORT SECONDS   print one JSON line per UDP datagram: payload hex, SO_TIMESTAMPNS
  sniff IFNAME SECONDS   print one JSON line per frame seen on IFNAME (incoming only)
  send IFNAME HEX...     send raw Ethernet frames on IFNAME
  sniffto IFNAME SECONDS PATH   write each incoming frame to PATH (u32 length, frame)
  sendfile IFNAME PATH PPS      send PATH's frames (u32 length, frame) at PPS frames/s
"""

import json
import select
import socket
import struct
import sys
import time

from fpsmodel.wire import SO_TIMESTAMPNS


def readable(s, seconds):
    """Say "ready", then yield each time `s` has something to read, for `seconds`."""
    print("ready", flush=True)
    end = time.monotonic() + float(seconds)
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            return
        yield


def recv(ip, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((ip, int(port)))
    for _ in readable(s, seconds):
        data, anc, _f, _a = s.recvmsg(4096, 256)
        ns = 0
        for lvl, kind, d in anc:
            if lvl == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", d[:16])
                ns = sec * 10**9 + nsec
        print(json.dumps({"payload": data.hex(), "stamp_ns": ns}), flush=True)


def sniff(ifname, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((ifname, 0))
    for _ in readable(s, seconds):
        data, addr = s.recvfrom(65535)
        if addr[2] != 4:  # not PACKET_OUTGOING
            print(json.dumps({"frame": data.hex()}), flush=True)


def send(ifname, *frames):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    for f in frames:
        s.send(bytes.fromhex(f))
        time.sleep(0.01)


def sniffto(ifname, seconds, path):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: no drops in bursts
    s.setsockopt(263, 8, 1)  # PACKET_AUXDATA: the VLAN tag the kernel took off
    s.bind((ifname, 0))
    n = 0
    with open(path, "wb") as out:
        for _ in readable(s, seconds):
            data, anc, _fl, addr = s.recvmsg(65535, 512)
            for level, kind, aux in anc:
                if level == 263 and kind == 8:
                    status, _l, _s, _m, _n, tci, tpid = struct.unpack_from("IIIHHHH", aux)
                    if status & (1 << 4):  # TP_STATUS_VLAN_VALID: the frame as sent
                        tpid = tpid if status & (1 << 6) else 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            if addr[2] != 4:  # not PACKET_OUTGOING
                out.write(struct.pack("<I", len(data)) + data)
                n += 1
    print(json.dumps({"frames": n}), flush=True)


def read_frames(path):
    with open(path, "rb") as f:
        data = f.read()
    i, out = 0, []
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return out


def sendfile(ifname, path, pps):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    gap, t0, errors = 1.0 / float(pps), time.monotonic(), 0
    frames = read_frames(path)
    for i, f in enumerate(frames):
        if (ahead := t0 + i * gap - time.monotonic()) > 0:
            time.sleep(ahead)
        try:
            s.send(f)
        except OSError:  # a frame the kernel refuses to send (too short): counted
            errors += 1
    print(json.dumps({"sent": len(frames) - errors, "refused": errors,
                      "seconds": round(time.monotonic() - t0, 2)}), flush=True)


if __name__ == "__main__":
    {"recv": recv, "sniff": sniff, "send": send, "sniffto": sniffto,
     "sendfile": sendfile}[sys.argv[1]](*sys.argv[2:])
