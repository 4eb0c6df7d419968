"""Links, addresses, neighbours and network namespaces through rtnetlink, not a fork of
`ip` per call (root to run; no privileges to import).

A run makes each guest's namespace, veth, addresses and neighbour entries; as forks of
`ip` that was seven to nine processes per guest.  Here they are netlink requests
(pyroute2) on one socket per namespace, opened from a short-lived thread that enters
the namespace (setns is per thread: nothing forks), and a namespace is made as
`ip netns add` makes it (a thread unshares its network namespace and it is bound to
/run/netns/NAME).

Callers still say what they want in `ip`'s words (`Runner.ip(ns, "link", "set", ...)`):
that line is what a dry run prints (marked `netlink:`) and what the log records, and
`Netlink.do()` carries out exactly the requests of that small grammar:

    netns add NAME | netns del NAME
    link add A [netns NS] mtu M type veth peer name B netns NS2 mtu M
    link set DEV [address MAC] [mtu M] [up]    link del DEV    link show DEV
    addr add IP/PLEN dev DEV
    neigh replace IP lladdr MAC dev DEV [nud permanent]    neigh del IP dev DEV

Anything else is refused (ValueError), so a new call either fits or says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED, MNT_DETACH = 4096, 16384, 1 << 20, 2
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _in_thread(fn):
    """fn() in a new thread, whose namespace changes end with it; its result or error."""
    out: dict = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # carried to the caller
            out["error"] = e
    t = threading.Thread(target=body, name="gamebed-netns")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _shared_netns_dir() -> None:
    """/run/netns as `ip netns add` leaves it: a shared mount point, so a namespace
    bound here is seen in every mount namespace that sees the directory."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    path = str(NETNS_DIR).encode()
    if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    _check(_libc.mount(path, path, b"none", MS_BIND | MS_REC, None), "bind /run/netns")
    _check(_libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None), "share /run/netns")


def netns_add(name: str) -> None:
    """A new network namespace bound to /run/netns/NAME (lo still down)."""
    _shared_netns_dir()
    target = NETNS_DIR / name
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)

    def make() -> None:
        _check(_libc.unshare(CLONE_NEWNET), f"unshare for netns {name}")
        _check(_libc.mount(b"/proc/thread-self/ns/net", str(target).encode(), b"none",
                           MS_BIND, None), f"bind netns {name}")
    try:
        _in_thread(make)
    except OSError:
        target.unlink(missing_ok=True)
        raise


def netns_del(name: str) -> None:
    target = NETNS_DIR / name
    _libc.umount2(str(target).encode(), MNT_DETACH)
    target.unlink(missing_ok=True)


class Netlink:
    """One rtnetlink socket per namespace ('' = the root's), opened when first asked
    for; `do(ns, args)` carries out one `ip` request of the module's grammar."""

    def __init__(self) -> None:
        self._sockets: dict[str, object] = {}
        self._lock = threading.Lock()  # a fault thread may ask while the sweep does

    def close(self) -> None:
        for ipr in self._sockets.values():
            ipr.close()
        self._sockets.clear()

    def _ipr(self, ns: str):
        from pyroute2 import IPRoute

        if ns not in self._sockets:
            if ns:
                fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
                try:
                    sock = _in_thread(lambda: _socket_in(fd))
                finally:
                    os.close(fd)
                self._sockets[ns] = IPRoute(fileno=sock.detach())
            else:
                self._sockets[ns] = IPRoute()
        return self._sockets[ns]

    def forget(self, ns: str) -> None:
        """The namespace is gone: its socket goes too."""
        ipr = self._sockets.pop(ns, None)
        if ipr is not None:
            ipr.close()

    def do(self, ns: str, args: list[str]) -> int:
        """Carry out `ip [-n ns] ARGS`; returns 0, or 1 where `link show` finds nothing.
        What the kernel refuses raises OSError with its errno."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return self._do(ns, args)
        except NetlinkError as e:
            raise OSError(e.code, f"{os.strerror(e.code)} ({e})") from e

    def _do(self, ns: str, args: list[str]) -> int:
        check(args)
        with self._lock:
            obj, verb, rest = args[0], args[1], args[2:]
            if obj == "netns":
                (netns_add if verb == "add" else netns_del)(rest[0])
                if verb == "del":
                    self.forget(rest[0])
                return 0
            return _HANDLERS[(obj, verb)](self, ns, rest)


def check(args: list[str]) -> None:
    """Refuse what the grammar lacks (a dry run too: it prints only what a run can do)."""
    if len(args) < 3 or (args[0], args[1]) not in REQUESTS:
        raise ValueError(f"gamebed/netlink.py has no request for `ip {' '.join(args)}`")


def _socket_in(fd: int):
    import socket

    _check(_libc.setns(fd, CLONE_NEWNET), "setns")
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)  # NETLINK_ROUTE = 0


def _index(ipr, dev: str) -> int | None:
    found = ipr.link_lookup(ifname=dev)
    return found[0] if found else None


def _link_set(nl: Netlink, ns: str, rest: list[str]) -> int:
    ipr = nl._ipr(ns)
    dev, rest = rest[0], rest[1:]
    up = "up" in rest
    rest = [w for w in rest if w != "up"]
    kv = dict(zip(rest[::2], rest[1::2], strict=True))
    attrs: dict = {}
    if "address" in kv:
        attrs["address"] = kv.pop("address")
    if "mtu" in kv:
        attrs["mtu"] = int(kv.pop("mtu"))
    if kv:
        raise ValueError(f"link set: no request for {sorted(kv)}")
    if up:
        attrs["state"] = "up"
    ipr.link("set", index=_need(ipr, dev), **attrs)
    return 0


def _need(ipr, dev: str) -> int:
    idx = _index(ipr, dev)
    if idx is None:
        raise OSError(errno.ENODEV, f"no link {dev}")
    return idx


def _link_add(nl: Netlink, ns: str, rest: list[str]) -> int:
    # A [netns NS] mtu M type veth peer name B netns NS2 mtu M
    name, rest = rest[0], rest[1:]
    peer_at = rest.index("peer")
    mine = dict(zip(rest[:peer_at][::2], rest[:peer_at][1::2], strict=True))
    theirs = dict(zip(rest[peer_at + 1:][::2], rest[peer_at + 1:][1::2], strict=True))
    if mine.get("type") != "veth":
        raise ValueError("link add: only veth pairs")
    where = mine.get("netns", ns)
    peer = {"ifname": theirs["name"], "mtu": int(theirs["mtu"]),
            "net_ns_fd": str(NETNS_DIR / theirs["netns"])}
    nl._ipr(where).link("add", ifname=name, kind="veth", mtu=int(mine["mtu"]), peer=peer)
    return 0


def _link_del(nl: Netlink, ns: str, rest: list[str]) -> int:
    ipr = nl._ipr(ns)
    idx = _index(ipr, rest[0])
    if idx is not None:
        ipr.link("del", index=idx)
    return 0


def _link_show(nl: Netlink, ns: str, rest: list[str]) -> int:
    return 0 if _index(nl._ipr(ns), rest[0]) is not None else 1


def _addr_add(nl: Netlink, ns: str, rest: list[str]) -> int:
    ip, plen = rest[0].split("/")
    kv = dict(zip(rest[1::2], rest[2::2], strict=True))
    ipr = nl._ipr(ns)
    ipr.addr("add", index=_need(ipr, kv["dev"]), address=ip, prefixlen=int(plen))
    return 0


def _neigh(nl: Netlink, ns: str, rest: list[str], verb: str) -> int:
    ip = rest[0]
    kv = dict(zip(rest[1::2], rest[2::2], strict=True))
    ipr = nl._ipr(ns)
    args: dict = {"dst": ip, "ifindex": _need(ipr, kv["dev"])}
    if verb == "replace":
        args["lladdr"] = kv["lladdr"]
        args["state"] = 0x80  # NUD_PERMANENT, `ip neigh`'s default and the only one asked
    ipr.neigh(verb, **args)
    return 0


_HANDLERS = {
    ("link", "set"): _link_set, ("link", "add"): _link_add, ("link", "del"): _link_del,
    ("link", "show"): _link_show, ("addr", "add"): _addr_add,
    ("neigh", "replace"): lambda nl, ns, r: _neigh(nl, ns, r, "replace"),
    ("neigh", "del"): lambda nl, ns, r: _neigh(nl, ns, r, "del"),
}
REQUESTS = {*_HANDLERS, ("netns", "add"), ("netns", "del")}
