"""Small programs the namespace tests run inside a namespace (`ip netns exec`).

  recv IP PORT SECONDS   print one JSON line per UDP datagram: payload hex, SO_TIMESTAMPNS
  sniff IFNAME SECONDS   print one JSON line per frame seen on IFNAME (incoming only)
  send IFNAME HEX...     send raw Ethernet frames on IFNAME
"""

import json
import select
import socket
import struct
import sys
import time

from fpsmodel.wire import SO_TIMESTAMPNS


def recv(ip, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((ip, int(port)))
    print("ready", flush=True)
    end = time.monotonic() + float(seconds)
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
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
    print("ready", flush=True)
    end = time.monotonic() + float(seconds)
    while (left := end - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        data, addr = s.recvfrom(65535)
        if addr[2] != 4:  # not PACKET_OUTGOING
            print(json.dumps({"frame": data.hex()}), flush=True)


def send(ifname, *frames):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    for f in frames:
        s.send(bytes.fromhex(f))
        time.sleep(0.01)


if __name__ == "__main__":
    {"recv": recv, "sniff": sniff, "send": send}[sys.argv[1]](*sys.argv[2:])
