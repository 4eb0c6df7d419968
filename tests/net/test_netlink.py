"""Links, addresses, neighbours and namespaces as netlink requests (gamebed/netlink.py,
through `Runner.ip`): each request leaves the kernel state its `ip` line says, as `ip`
itself reads it back; a request the kernel refuses raises with that line; what the
grammar lacks is refused before anything is sent; nothing is left behind."""

import json
import subprocess

import pytest

from gamebed.leaks import leftovers
from gamebed.manifest import new_prefix
from gamebed.proc import CommandError, Runner


def ip_json(ns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-n", ns, *args], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")


@pytest.fixture
def two_namespaces(netns_ok):
    r, prefix = Runner(), new_prefix()
    a, b = f"{prefix}-a", f"{prefix}-b"
    for ns in (a, b):
        r.ip("", "netns", "add", ns)
        r.ip(ns, "link", "set", "lo", "up")
    try:
        yield r, a, b, prefix
    finally:
        for ns in (a, b):
            r.ip("", "netns", "del", ns, check=False)
        r.close()
        assert not any(leftovers(prefix).values())


def test_each_request_leaves_the_state_its_ip_line_says(two_namespaces):
    r, a, b, _ = two_namespaces
    r.ip("", "link", "add", "gbp0", "netns", a, "mtu", 1530, "type", "veth", "peer",
         "name", "gbn0", "netns", b, "mtu", 1530)
    r.ip(a, "link", "set", "gbp0", "up")
    r.ip(b, "link", "set", "gbn0", "address", "02:67:62:01:00:05", "up")
    r.ip(b, "addr", "add", "198.18.1.5/16", "dev", "gbn0")
    r.ip(b, "neigh", "replace", "198.18.0.1", "lladdr", "02:67:62:00:00:01", "dev", "gbn0",
         "nud", "permanent")
    lo = ip_json(a, "link", "show", "lo")[0]
    assert "UP" in lo["flags"]
    port = ip_json(a, "link", "show", "gbp0")[0]
    nic = ip_json(b, "addr", "show", "gbn0")[0]
    assert port["mtu"] == nic["mtu"] == 1530 and "UP" in port["flags"]
    assert nic["address"] == "02:67:62:01:00:05" and "UP" in nic["flags"]
    assert {(x["local"], x["prefixlen"]) for x in nic["addr_info"]
            if x["family"] == "inet"} == {("198.18.1.5", 16)}
    neigh = ip_json(b, "neigh", "show", "dev", "gbn0")
    assert [(n["dst"], n["lladdr"], n["state"]) for n in neigh] == [
        ("198.18.0.1", "02:67:62:00:00:01", ["PERMANENT"])]
    assert r.ip(a, "link", "show", "gbp0", check=False) == 0
    r.ip(b, "neigh", "del", "198.18.0.1", "dev", "gbn0")
    assert ip_json(b, "neigh", "show", "dev", "gbn0") == []
    r.ip(a, "link", "del", "gbp0")
    assert r.ip(a, "link", "show", "gbp0", check=False) == 1
    assert ip_json(b, "link", "show") and not [x for x in ip_json(b, "link", "show")
                                              if x["ifname"] == "gbn0"]  # the pair went


def test_a_refused_request_raises_with_its_line_and_the_kernels_reason(two_namespaces):
    r, a, _, _ = two_namespaces
    with pytest.raises(CommandError, match=r"ip -n \S+-a addr add 198.18.1.9/16 dev nope"):
        r.ip(a, "addr", "add", "198.18.1.9/16", "dev", "nope")
    assert r.ip(a, "addr", "add", "198.18.1.9/16", "dev", "nope", check=False) != 0
    with pytest.raises(CommandError, match="File exists"):
        r.ip("", "netns", "add", a)
    with pytest.raises(ValueError, match="no request for `ip route add"):
        r.ip(a, "route", "add", "default", "dev", "lo")


def test_a_namespace_made_by_netlink_is_one_ip_netns_lists_and_runs_in(two_namespaces):
    _, a, _, _ = two_namespaces
    assert a in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=True).stdout
    inside = subprocess.run(["ip", "netns", "exec", a, "readlink", "/proc/self/ns/net"],
                            capture_output=True, text=True, check=True).stdout
    outside = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True,
                             text=True, check=True).stdout
    assert inside.startswith("net:[") and inside != outside
