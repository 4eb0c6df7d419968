"""Host→guest path benchmark (root): Linux bridge vs AF_PACKET shim vs BPF stamper.

One topology (client ns ── host ns ── guest ns, veths), five ways through the host
namespace, measured in one run: the plain Linux bridge; the AF_PACKET shim alone,
reading its mmapped TPACKET_V2 receive rings (as `gamebed run` does) or, to compare,
one recvmsg per frame;
the BPF stamper with its ground truth read from the shim's packet socket (every
input also copied to the shim); the BPF stamper with its ground truth in its ring
buffer (the shim's socket filtered: what `gamebed run` uses).  Figures: one-way
delay client send → guest kernel stamp (SO_TIMESTAMPNS in the guest, no decoder)
at 1 kpps and 10 kpps, p50 and p99, each the median of --repeats runs (the paths
take turns within a repeat, so drift hits all alike); and each path's highest
offered rate with < 0.1% loss, on a ladder of rates raised until the bridge itself
loses (or the sender cannot offer more: then the table says so); the ladder's
sender and receiver are blast.c (sendmmsg/recvmmsg, built with clang), since a
Python sender offers less than the paths carry.  Ratios are to
the bridge.  Placement: the forwarder on CPU 0, sender and receiver on CPU 1; for the
rate ladder RPS also moves the kernel's forwarding and the guest's receive to CPU 0
(else they run in the sender's softirq, on the sender's CPU, and cap what it offers).
Usage: sudo .venv/bin/python benchmarks/bench_paths.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner, in_netns, ip_cmd, pinned, require_net_admin
from gamebed.spec import ExperimentSpec
from gamebed.sweep import signals_unwind
from hostside.host import HostSide
from hostside.point import point_context
from vm.netns import NetnsGuests

PROG = str(Path(__file__).with_name("pathprog.py"))
BLAST_SRC = Path(__file__).with_name("blast.c")


def build_blast() -> str:
    """The C load generator for the rate ladder (clang, cached by its source's digest)."""
    import hashlib
    import shutil

    digest = hashlib.sha256(BLAST_SRC.read_bytes()).hexdigest()[:12]
    out = Path(__file__).resolve().parent.parent / "build" / "bench" / f"blast-{digest}"
    if not out.exists():
        clang = shutil.which("clang") or shutil.which("cc")
        if not clang:
            raise SystemExit("bench_paths: clang is needed for the load generator "
                             "(scripts/setup.sh installs it)")
        out.parent.mkdir(parents=True, exist_ok=True)
        Runner().run([clang, "-O2", "-Wall", "-o", str(out), str(BLAST_SRC)])
    return str(out)


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

    def steer_softirq(self, on: bool) -> None:
        """RPS on the uplink and the guest's NIC: the kernel's forwarding and the guest's
        receive run on the host side's CPU, not in the sender's softirq on its own CPU,
        so the sender offers more than it could while also forwarding (the rate ladder
        only: the extra hop between CPUs would add to the latency figures)."""
        cpus = self.ctx.placement.host_cpus
        mask = format(sum(1 << int(c) for c in (cpus or "0").split(",")), "x") if on else "0"
        t = self.ctx.topo
        for ns, dev in ((t.host_ns, t.uplink), (self.g.netns, self.g.nic_name)):
            self.r.run([*in_netns(ns), "tee", f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"],
                       input=mask)

    def measure_rate(self, blast: str, rate: float, seconds: float) -> dict:
        """Loss at one offered rate, with the C sender and receiver (sendmmsg/recvmmsg)."""
        t, ip = self.ctx.topo, self.g.nic.ip
        cpus = self.ctx.placement.guest_cpus
        def cmd(ns: str, *args: object) -> list[str]:
            return [*in_netns(ns), *pinned(cpus, [blast, *map(str, args)])]

        # the receiver ends once the sender is done (0.5 s quiet); the cap is far off
        rx = subprocess.Popen(cmd(self.g.netns, "recv", ip, t.game_port, 4 * seconds + 5),
                              stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(cmd(t.client_ns, "send", ip, t.game_port, rate, seconds),
                            capture_output=True, text=True, check=True)
        got = json.loads(rx.communicate()[0].strip().splitlines()[-1])
        got.update(json.loads(tx.stdout))
        got["loss"] = 1 - got["received"] / got["sent"]
        return got

    def measure(self, rate: float, seconds: float) -> dict:
        t, ip = self.ctx.topo, self.g.nic.ip
        rx = subprocess.Popen(self.prog(self.g.netns, "recv", ip, t.game_port, 4 * seconds + 5),
                              stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(self.prog(t.client_ns, "send", ip, t.game_port, rate, seconds),
                            capture_output=True, text=True, check=True)
        got = json.loads(rx.communicate()[0].strip().splitlines()[-1])
        tx_out = json.loads(tx.stdout)
        sent = got["sent"] = tx_out["sent"]
        got["elapsed"] = tx_out["elapsed"]
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
def shim(t: Topo, stamper: str, truth: str = "ring", rx_ring: bool = True):
    """The host side as a run has it: the shim alone, or the BPF stamper beside it."""
    t.host.attach(stamper, truth, rx_ring)
    try:
        yield
    finally:
        t.host.detach()


PATHS = {"bridge": lambda t: bridge(t), "shim (afpacket)": lambda t: shim(t, "afpacket"),
         "shim (recvmsg)": lambda t: shim(t, "afpacket", rx_ring=False),
         "bpf+packet-log": lambda t: shim(t, "bpf", "packet"),
         "bpf+ring-log": lambda t: shim(t, "bpf", "ring")}


def ladder(top: float) -> list[float]:
    rates, r = [], 20_000.0
    while r <= top:
        rates.append(r)
        r = round(r * 1.5, -3)
    return rates


def rate_limits(t: Topo, rates: list[float], seconds: float, blast: str) -> tuple[dict, str]:
    """Each path's highest rate with < 0.1% loss; the bridge goes first and sets how far
    the ladder goes (the first rate it loses at, or where the sender falls short)."""
    best, note, stop = {n: 0.0 for n in PATHS}, "", rates[-1] if rates else 0.0
    t.steer_softirq(True)
    for name, path in PATHS.items():
        if not rates:
            break
        with path(t):
            time.sleep(0.3)
            for rate in rates:
                if rate > stop:
                    break
                res = t.measure_rate(blast, rate, seconds)
                offered = res["sent"] / res["elapsed"]
                print(f"      {name}: {rate:8.0f} pps asked, {offered:8.0f} offered: loss "
                      f"{100 * res['loss']:.3f}%", flush=True)
                if name == "bridge" and offered < 0.9 * rate:
                    note = (f"the sender offers at most about {offered:.0f} pps here: rates "
                            "above it are not the paths' limits")
                    stop = rate
                if res["loss"] >= 0.001:
                    if name == "bridge":
                        stop = rate
                    break
                best[name] = min(rate, round(offered, -2))  # what was really offered
    t.steer_softirq(False)
    if rates and not note and stop == rates[-1] and best.get("bridge") == rates[-1]:
        note = "the bridge lost nothing up to the ladder's top: raise --max-rate"
    return best, note


def latency_rounds(t: Topo, repeats: int, seconds: float) -> dict[str, dict[str, list]]:
    figs: dict[str, dict[str, list]] = {n: {} for n in PATHS}
    for k in range(repeats):
        for name, path in PATHS.items():
            with path(t):
                time.sleep(0.3)
                for rate, tag in ((1000, "1k"), (10000, "10k")):
                    r = t.measure(rate, seconds)
                    for stat in ("p50", "p99"):
                        figs[name].setdefault(f"{tag} {stat}", []).append(r[stat])
                    figs[name].setdefault(f"{tag} loss", []).append(r["loss"])
            f = figs[name]
            print(f"[{k + 1}/{repeats}] {name}: 1 kpps p50 {f['1k p50'][-1]:.1f} p99 "
                  f"{f['1k p99'][-1]:.1f} us; 10 kpps p50 {f['10k p50'][-1]:.1f} p99 "
                  f"{f['10k p99'][-1]:.1f} us", flush=True)
    return figs


def table(figs: dict, best: dict, note: str, repeats: int) -> None:
    cols = ("1k p50", "1k p99", "10k p50", "10k p99")
    med = {n: {c: statistics.median(f[c]) for c in cols} for n, f in figs.items()}
    b = med["bridge"]
    print(f"\nmedians of {repeats} repeats (µs, client send -> guest kernel SO_TIMESTAMPNS); "
          "x = ratio to the bridge")
    print(f"{'path':<17}" + "".join(f"{c:>16}" for c in cols) + f"{'max pps <0.1% loss':>24}")
    for n, m in med.items():
        cells = "".join(f"{m[c]:8.1f} ({m[c] / b[c]:4.2f}x)" for c in cols)
        ratio = best[n] / best["bridge"] if best["bridge"] else float("nan")
        print(f"{n:<17}{cells}{best[n]:15.0f} ({ratio:4.2f}x)")
    if note:
        print(f"note: {note}")
    print(json.dumps({"medians_us": med, "max_rate_pps": best, "repeats": repeats,
                      "note": note}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="per latency measurement")
    ap.add_argument("--rate-seconds", type=float, default=2.0, help="per rate step")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-rate", type=float, default=2_000_000,
                    help="the ladder's top (it stops earlier where the bridge loses)")
    ap.add_argument("--paths", default=",".join(PATHS),
                    help="which paths, comma-separated (default all; the bridge is needed "
                         "for the ratios)")
    a = ap.parse_args()
    for name in set(PATHS) - set(a.paths.split(",")):
        del PATHS[name]
    require_net_admin()
    blast = build_blast()
    tmp = Path(tempfile.mkdtemp(prefix="gb-bench-paths-"))
    m = Manifest(new_prefix())
    # placement restricted: the forwarder on CPU 0, sender and receiver on the others
    ctx = point_context(ExperimentSpec(guest_counts=(1,), modes=("guest",)), 1, "guest", tmp,
                        Runner(), m, print, host_in_root_ns=False)
    with signals_unwind(), ExitStack() as stack:  # SIGTERM tears down like ^C
        stack.callback(m.close)  # the manifest file goes once its entries are gone
        t = Topo(stack, ctx)
        figs = latency_rounds(t, a.repeats, a.seconds)
        best, note = rate_limits(t, ladder(a.max_rate), a.rate_seconds, blast)
    table(figs, best, note, a.repeats)


if __name__ == "__main__":
    main()
