"""What several guest backends share, in one place (root to run).

- `guest_link()`: a guest's own namespace and the veth from the host side's port
  into it (netns and UML guests; libvirt's are taps that libvirt makes);
- `once()`: a build done once per process (the guest images: every testbed of a
  run boots the same one, even if a source changes mid-run; the next run rebuilds).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import TypeVar

from gamebed.backend import TestbedContext
from gamebed.resources import Netns, Veth
from gamebed.topology import GuestAddr
from hostside.trailer import PORT_MTU

T = TypeVar("T")
_ONCE: dict[str, object] = {}


def guest_link(stack: ExitStack, ctx: TestbedContext, g: GuestAddr) -> None:
    """Guest g's namespace and its link from the host side's port (both up, with room for
    the trailer), owned by `stack`."""
    t, r, m = ctx.topo, ctx.runner, ctx.manifest
    stack.enter_context(Netns(g.netns, r, m))
    stack.enter_context(Veth((t.host_ns, g.host_port), (g.netns, g.nic_name), r, m,
                             mtu=PORT_MTU))
    r.ip(t.host_ns, "link", "set", g.host_port, "up")


def once(key: str, build: Callable[[], T]) -> T:
    """build()'s result, built the first time `key` is asked for in this process."""
    if key not in _ONCE:
        _ONCE[key] = build()
    return _ONCE[key]  # type: ignore[return-value]
