"""Players on a real network (`--wan`): netem on the client's side of the host.

`--wan "delay 30ms 5ms loss 0.5%"` puts a netem qdisc with those arguments on both
directions of the link between the players and the host: the client's NIC
(inputs, towards the host) and the host's uplink (state updates, towards the
players).  The host's arrival stamp splits each input's path: before it is the
network's (netem's delay, jitter, loss, reordering), after it the host's.  Clock
sync must not cross the emulated WAN (an asymmetric delay would bias every offset),
so each direction's qdisc is a two-band prio whose band 1:1 (no netem) takes the
clock-sync messages, picked by a u32 match on the game header's message type, and
band 1:2 (netem) everything else.  The qdiscs live and die with their links, which
the run manifest lists.  A kernel without prio or netem (this project's 6.18 host:
CONFIG_NET_SCH_NETEM unset) is found by trying; the client then emulates the WAN
itself (fpsmodel/wan.py: delay, jitter, loss, rate; clock sync exempt), and the
point's environment says which (`wan_via`).  Parsing needs no privileges; the
commands need root.
"""

from __future__ import annotations

import re

from fpsmodel import wire
from gamebed.proc import in_netns

# netem keywords --wan takes, and how many values each may have after it (lo, hi)
KEYWORDS = {"delay": (1, 3), "loss": (1, 2), "rate": (1, 1), "reorder": (1, 2),
            "duplicate": (1, 2), "corrupt": (1, 2), "limit": (1, 1), "distribution": (1, 1)}
_VALUE = re.compile(r"^\d+(\.\d+)?(%|[a-zA-Z]+)?$|^(normal|pareto|paretonormal|uniform)$")
# the message type's offset from the IPv4 header: 20 (no options) + 8 (UDP) + its place
# in the game's header (fpsmodel/wire.py owns that)
IPV4_HEADER, UDP_HEADER = 20, 8
MSG_TYPE_AT = IPV4_HEADER + UDP_HEADER + wire.HEADER_OFFSETS["type"]
WAN_HELP = 'netem arguments, e.g. "delay 30ms 5ms loss 0.5%" (keywords: ' + \
    ", ".join(KEYWORDS) + ")"


def netem_args(text: str) -> list[str]:
    """The netem arguments of a --wan text, checked: known keywords, each with one to
    a few numeric values; ValueError names what is wrong."""
    words = text.split()
    if not words:
        raise ValueError(f"--wan: empty; expected {WAN_HELP}")
    i = 0
    while i < len(words):
        key = words[i]
        if key not in KEYWORDS:
            raise ValueError(f"--wan: {key!r} is not a netem keyword gamebed takes; "
                             f"expected {WAN_HELP}")
        lo, hi = KEYWORDS[key]
        j = i + 1
        while j < len(words) and j - i - 1 < hi and words[j] not in KEYWORDS:
            if not _VALUE.match(words[j]):
                raise ValueError(f"--wan: {key} {words[j]!r} is not a value (like 30ms, "
                                 "0.5%, 10mbit)")
            j += 1
        if j - i - 1 < lo:
            raise ValueError(f"--wan: {key} needs a value")
        i = j
    return words


def wan_commands(netns: str, dev: str, netem: list[str], sync_type: int) -> list[list[str]]:
    """tc commands giving `dev` (in `netns`; "" = the root namespace) the WAN on egress,
    except for clock-sync messages of type `sync_type`, which bypass it."""
    tc = [*in_netns(netns), "tc"] if netns else ["tc"]
    return [
        [*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "prio", "bands", "2",
         "priomap", *["1"] * 16],
        [*tc, "qdisc", "add", "dev", dev, "parent", "1:2", "handle", "20:", "netem", *netem],
        [*tc, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
         "u32", "match", "u8", str(sync_type), "0xff", "at", str(MSG_TYPE_AT),
         "flowid", "1:1"],
    ]


def remove_root(netns: str, dev: str) -> list[str]:
    """Undo a half-made WAN on `dev` (its root qdisc goes, with what hangs under it)."""
    return [*in_netns(netns), "tc", "qdisc", "del", "dev", dev, "root"]


def client_side(netns: str, dev: str, netem: list[str]) -> list[list[str]]:
    """The players' direction (inputs): clock-sync requests bypass the WAN."""
    return wan_commands(netns, dev, netem, wire.MSG_SYNC_REQ)


def host_side(netns: str, dev: str, netem: list[str]) -> list[list[str]]:
    """The host's direction (state updates): clock-sync answers bypass the WAN."""
    return wan_commands(netns, dev, netem, wire.MSG_SYNC_RESP)
