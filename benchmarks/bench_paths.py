"""Host→guest path benchmark (root): Linux bridge vs AF_PACKET shim vs BPF stamper.

One topology (client ns ── host ns ── guest ns, veths), three ways through the
host namespace, measured in one run: one-way delay client send → guest kernel
stamp (SO_TIMESTAMPNS in the guest, no decoder) at 1 kpps and 10 kpps, and each
path's highest rate with < 0.1% loss.  Placement: the forwarder on CPU 0, sender
and receiver on CPU 1.  Usage: sudo .venv/bin/python benchmarks/bench_paths.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner, in_netns, ip_cmd, pinned, require_net_admin
from gamebed.spec import ExperimentSpec
from hostside.host import HostSide
from hostside.point import point_context
from vm.netns import NetnsGuests

PROG = str(Path(__file__).with_name("pathprog.py"))


class Topo:
    """The run's own topology (gamebed/topology.py), host side and one namespace guest."""

    def __init__(self, stack: ExitStack, ctx) -> None:
        self.ctx, self.r = ctx, ctx.runner
        self.host = stack.enter_context(HostSide(ctx))
        guests = NetnsGuests(ctx)
        stack.callback(guests.stop)
        self.g = ctx.topo.guests[0]
        guests.build_guest_network(self.g)
        cpus = ctx.placement.guest_cpus

        def prog(ns: str, *args: object) -> list[str]:
            return [*in_netns(ns), *pinned(cpus, [sys.executable, PROG, *map(str, args)])]

        self.prog = prog

    def measure(self, rate: float, seconds: float) -> dict:
        t, ip = self.ctx.topo, self.g.nic.ip
        rx = subprocess.Popen(self.prog(self.g.netns, "recv", ip, t.game_port, seconds + 1.5),
                              stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(self.prog(t.client_ns, "send", ip, t.game_port, rate, seconds),
                            capture_output=True, text=True, check=True)
        got = json.loads(rx.communicate()[0].strip().splitlines()[-1])
        sent = json.loads(tx.stdout)["sent"]
        got["sent"] = sent
        got["loss"] = 1 - got["received"] / sent
        return got


@contextmanager
def bridge(t: Topo):
    h = t.ctx.topo.host_ns
    t.r.run(ip_cmd(h, "link", "add", "br0", "type", "bridge"))
    for dev in (t.ctx.topo.uplink, t.g.host_port):
        t.r.run(ip_cmd(h, "link", "set", dev, "master", "br0"))
    t.r.run(ip_cmd(h, "link", "set", "br0", "up"))
    try:
        yield
    finally:
        t.r.run(ip_cmd(h, "link", "del", "br0"))


@contextmanager
def shim(t: Topo, stamper: str):
    """The host side as a run has it: the shim alone, or the BPF stamper beside it."""
    t.host.attach(stamper)
    try:
        yield
    finally:
        t.host.detach()


def max_rate(t: Topo, rates: list[float], seconds: float) -> float:
    best = 0.0
    for rate in rates:
        res = t.measure(rate, seconds)
        print(f"      {rate:8.0f} pps: loss {100 * res['loss']:.3f}%", flush=True)
        if res["loss"] >= 0.001:
            break
        best = rate
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--max-rates", default="20000,40000,60000,80000,100000,120000")
    a = ap.parse_args()
    require_net_admin()
    tmp = Path(tempfile.mkdtemp(prefix="gb-bench-paths-"))
    m = Manifest(new_prefix())
    # placement restricted: the forwarder on CPU 0, sender and receiver on the others
    ctx = point_context(ExperimentSpec(guest_counts=(1,), modes=("guest",)), 1, "guest", tmp,
                        Runner(), m, print, host_in_root_ns=False)
    results = {}
    paths = {"bridge": lambda t: bridge(t), "shim (afpacket)": lambda t: shim(t, "afpacket"),
             "bpf stamper": lambda t: shim(t, "bpf")}
    with ExitStack() as stack:
        stack.callback(m.close)  # the manifest file goes once its entries are gone
        t = Topo(stack, ctx)
        for name, ctx in paths.items():
            with ctx(t):
                time.sleep(0.3)
                r1 = t.measure(1000, a.seconds)
                r10 = t.measure(10000, a.seconds)
                print(f"{name}: 1 kpps p50 {r1['p50']:.1f} us p99 {r1['p99']:.1f} us; "
                      f"10 kpps p50 {r10['p50']:.1f} us p99 {r10['p99']:.1f} us", flush=True)
                top = max_rate(t, [float(x) for x in a.max_rates.split(",")], a.seconds)
                results[name] = (r1, r10, top)
    b1, b10, _ = results["bridge"]
    print(f"\n{'path':<16} {'1k p50':>8} {'1k p99':>8} {'10k p50':>8} {'10k p99':>8} "
          f"{'x bridge (1k p50)':>18} {'max pps <0.1% loss':>19}")
    for name, (r1, r10, top) in results.items():
        print(f"{name:<16} {r1['p50']:8.1f} {r1['p99']:8.1f} {r10['p50']:8.1f} {r10['p99']:8.1f}"
              f" {r1['p50'] / b1['p50']:18.2f} {top:19.0f}")
    print("(delays in us, client send -> guest kernel SO_TIMESTAMPNS; max rate is the highest "
          "offered rate tried without >= 0.1% loss)")


if __name__ == "__main__":
    main()
