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

from hostside import bpf
from vm.netns import CLIENT_IP, CLIENT_MAC, GUEST_MTU, guest_ip, guest_mac
from vm.resources import Manifest, Netns, Veth, new_prefix
from vm.sysutil import Process, Runner, python_cmd, require_net_admin, wait_for

PROG = str(Path(__file__).with_name("pathprog.py"))
PORT = 27960


class Topo:
    def __init__(self, stack: ExitStack, runner: Runner, m: Manifest) -> None:
        p = m.prefix
        self.r, self.m = runner, m
        self.h, self.c, self.g = f"{p}-host", f"{p}-client", f"{p}-g0"
        self.up, self.cn, self.gp, self.gn = f"{p}u", f"{p}c", f"{p}g0", f"{p}e0"
        for ns in (self.h, self.c, self.g):
            stack.enter_context(Netns(ns, runner, m))
        stack.enter_context(Veth((self.h, self.up), (self.c, self.cn), runner, m))
        stack.enter_context(Veth((self.h, self.gp), (self.g, self.gn), runner, m, mtu=GUEST_MTU))
        ip = lambda ns, *a: runner.run(["ip", "-n", ns, *a])  # noqa: E731
        ip(self.c, "link", "set", self.cn, "address", CLIENT_MAC, "up")
        ip(self.c, "addr", "add", f"{CLIENT_IP}/16", "dev", self.cn)
        ip(self.g, "link", "set", self.gn, "address", guest_mac(0), "up")
        ip(self.g, "addr", "add", f"{guest_ip(0)}/16", "dev", self.gn)
        ip(self.c, "neigh", "replace", guest_ip(0), "lladdr", guest_mac(0), "dev", self.cn)
        ip(self.g, "neigh", "replace", CLIENT_IP, "lladdr", CLIENT_MAC, "dev", self.gn)
        for dev in (self.up, self.gp):
            ip(self.h, "link", "set", dev, "up")

    def measure(self, rate: float, seconds: float) -> dict:
        rx = subprocess.Popen(["ip", "netns", "exec", self.g, "taskset", "-c", "1",
                               sys.executable, PROG, "recv", guest_ip(0), str(PORT),
                               str(seconds + 1.5)],
                              stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(["ip", "netns", "exec", self.c, "taskset", "-c", "1",
                             sys.executable, PROG, "send", guest_ip(0), str(PORT), str(rate),
                             str(seconds)],
                            capture_output=True, text=True, check=True)
        got = json.loads(rx.communicate()[0].strip().splitlines()[-1])
        sent = json.loads(tx.stdout)["sent"]
        got["sent"] = sent
        got["loss"] = 1 - got["received"] / sent
        return got


@contextmanager
def bridge(t: Topo):
    t.r.run(["ip", "-n", t.h, "link", "add", "br0", "type", "bridge"])
    for dev in (t.up, t.gp):
        t.r.run(["ip", "-n", t.h, "link", "set", dev, "master", "br0"])
    t.r.run(["ip", "-n", t.h, "link", "set", "br0", "up"])
    try:
        yield
    finally:
        t.r.run(["ip", "-n", t.h, "link", "del", "br0"])


@contextmanager
def shim(t: Topo, stamper: str, tmp: Path):
    ready = tmp / f"{stamper}.ready"
    if stamper == "bpf":
        bpf.write_guest_table(tmp, PORT, [(guest_ip(0), int(t.r.run(
            ["ip", "netns", "exec", t.h, "cat", f"/sys/class/net/{t.gp}/ifindex"]).stdout))])
        bpf.attach_ingress(t.r, t.h, t.up, bpf.build("stamper", t.r, tmp, tmp))
    args = ["ip", "netns", "exec", t.h, "taskset", "-c", "0", *python_cmd(
        "hostside.shim", "--uplink", t.up, "--guest", f"0,{t.gp},{guest_ip(0)},{guest_mac(0)}",
        "--stamper", stamper, "--out", tmp / stamper, "--ready-file", ready)]
    with Process(args, t.r, log_path=tmp / f"{stamper}.log"):
        wait_for(ready.exists, 20, "shim")
        try:
            yield
        finally:
            if stamper == "bpf":
                bpf.detach(t.r, t.h, t.up)


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
    runner = Runner()
    m = Manifest(new_prefix())
    results = {}
    paths = {"bridge": lambda t: bridge(t), "shim (afpacket)": lambda t: shim(t, "afpacket", tmp),
             "bpf stamper": lambda t: shim(t, "bpf", tmp)}
    with ExitStack() as stack:
        stack.callback(m.close)  # the manifest file goes once its entries are gone
        t = Topo(stack, runner, m)
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
