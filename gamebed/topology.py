"""The topology of one measurement point, as a value (no privileges).

    client ns ──veth── host side: uplink, stamper, shim ──port i── guest i

Built once per point from the spec and the run's name prefix, and shared by the
host side (hostside/host.py) and every guest backend (vm/), so all of them agree
on names and addresses.  A guest's own NIC address (MAC, IP) is kept apart from
the host-side port that feeds it: the port is a veth end or a tap in the host's
namespace, the NIC is inside the guest.  Addresses are in 198.18.0.0/15 (RFC
2544's benchmarking range) and exist only inside the run's own namespaces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLIENT_IP = "198.18.0.1"
CLIENT_MAC = "02:67:62:00:00:01"
PREFIX_LEN = 16


@dataclass(frozen=True)
class Nic:
    ip: str
    mac: str


def guest_nic(i: int) -> Nic:
    return Nic(f"198.18.{1 + i // 250}.{1 + i % 250}",
               f"02:67:62:01:{i >> 8 & 0xff:02x}:{i & 0xff:02x}")


@dataclass(frozen=True)
class GuestAddr:
    index: int
    nic: Nic  # the guest's own NIC
    host_port: str  # the interface in the host's namespace that feeds that NIC
    netns: str  # the guest's own namespace, for backends that give it one
    nic_name: str  # the NIC's name inside that namespace


@dataclass(frozen=True)
class Topology:
    prefix: str
    host_ns: str  # '' = the root namespace (where libvirt puts its taps)
    client_ns: str
    client_nic: str
    uplink: str  # the host's end of the client's link
    client: Nic
    game_port: int
    guests: tuple[GuestAddr, ...]

    @classmethod
    def build(cls, prefix: str, n_guests: int, game_port: int,
              host_in_root_ns: bool = False) -> Topology:
        p = prefix
        guests = tuple(GuestAddr(i, guest_nic(i), f"{p}g{i}", f"{p}-g{i}", f"{p}e{i}")
                       for i in range(n_guests))
        return cls(p, "" if host_in_root_ns else f"{p}-host", f"{p}-client", f"{p}c",
                   f"{p}u", Nic(CLIENT_IP, CLIENT_MAC), game_port, guests)

    def server_targets(self) -> list[str]:
        """HOST:PORT of every guest's game server, in guest order."""
        return [f"{g.nic.ip}:{self.game_port}" for g in self.guests]


@dataclass(frozen=True)
class Placement:
    """Which CPUs the host side and the guests run on (taskset lists; None = float)."""

    name: str
    host_cpus: str | None
    guest_cpus: str | None

    @classmethod
    def from_spec(cls, placement: str) -> Placement:
        if placement == "dynamic":
            return cls(placement, None, None)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise RuntimeError("restricted placement needs 2+ CPUs (shim on one, guests on "
                               "the rest); use --placement dynamic on this machine")
        return cls(placement, str(cpus[0]), ",".join(map(str, cpus[1:])))

    def guest_cpu_list(self) -> tuple[int, ...]:
        """The CPUs the guests may run on (every usable one where they float)."""
        if self.guest_cpus is None:
            return tuple(sorted(os.sched_getaffinity(0)))
        return tuple(int(c) for c in self.guest_cpus.split(","))
