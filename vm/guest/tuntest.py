"""Inside a guest (root): the patched tun.ko appends the gamebed trailer to tap frames.

Loads /lib/gamebed/tun.ko with gb_trailer=1 gb_port=<the game port>, opens a tap, sends UDP
datagrams out of it from a local socket and reads the frames back from the tap fd.
Prints one JSON object: per case, the frame's layout and trailer fields.
Runs in the guest image: the stdlib, fpsmodel.wire and hostside.trailer (the formats'
owners, both in /opt/gamebed).  The tap's addresses never leave the guest.
"""

import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import time

from fpsmodel.wire import GAME_PORT
from hostside.trailer import MAGIC, check_word

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
PEER, PEER_MAC = "198.19.200.2", "02:00:00:00:00:02"
PARAM = "/sys/module/tun/parameters/gb_trailer"


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def udp_checksum_ok(ip: bytes) -> bool:
    ihl = (ip[0] & 0xF) * 4
    udp = ip[ihl:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    data = pseudo + udp + (b"\0" if len(udp) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF or struct.unpack("!H", udp[6:8])[0] == 0


def exchange(fd: int, sock: socket.socket, port: int) -> dict:
    payload = os.urandom(296)
    t0 = time.time_ns()
    sock.sendto(payload, (PEER, port))
    while select.select([fd], [], [], 2.0)[0]:
        frame = os.read(fd, 4096)
        t1 = time.time_ns()
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue  # not IPv4/UDP (none expected: static neighbour, no IPv6)
        tot = struct.unpack("!H", frame[16:18])[0]
        out = {"port": port, "frame_len": len(frame), "ip_tot_len": tot,
               "extra": len(frame) - 14 - tot, "payload_ok": frame[42:42 + 296] == payload,
               "udp_checksum_ok": udp_checksum_ok(frame[14:14 + tot]), "t0": t0, "t1": t1}
        if out["extra"] == 16:
            magic, check, stamp = struct.unpack("!IIQ", frame[14 + tot:])
            out.update(magic_ok=magic == MAGIC, check_ok=check == check_word(tot),
                       stamp=stamp, stamp_in_window=t0 <= stamp <= t1)
        return out
    return {"port": port, "error": "no frame on the tap within 2 s"}


def main() -> None:
    sh("insmod", "/lib/gamebed/tun.ko", "gb_trailer=1", f"gb_port={GAME_PORT}")
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"gbtap0", IFF_TAP | IFF_NO_PI))
    sh("ip", "link", "set", "gbtap0", "up")
    sh("ip", "addr", "add", "198.19.200.1/24", "dev", "gbtap0")
    sh("ip", "neigh", "replace", PEER, "lladdr", PEER_MAC, "dev", "gbtap0", "nud", "permanent")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    result = {"game_port": exchange(fd, sock, GAME_PORT), "other_port": exchange(fd, sock, 9)}
    with open(PARAM, "w") as f:
        f.write("0")
    result["disabled"] = exchange(fd, sock, GAME_PORT)
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    result["dmesg"] = [line for line in dmesg.splitlines() if "gamebed" in line]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
