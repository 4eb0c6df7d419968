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
offered rate with < 0.1% loss, also the median of --repeats, on a ladder of rates
(x1.25 from 20 kpps) raised for each path until it loses or the sender cannot offer
more (then the table marks it *: the path's limit is at least that); the ladder's
sender and sink are blast.c (built with clang): whole frames by sendmmsg from a
packet socket without a send buffer to hold it back (a frame the host has no room
for is lost, as a remote player's would be, not delayed), counted where they reach
the guest's UDP layer, so the sender has its CPU to itself and offers up to about
550 kpps here.  The ground truth is checked on the
ladder too: ring-buffer drops, zero stamps or inputs without a row are printed.  Ratios are to
the bridge.  Placement: the forwarder on CPU 0, sender and receiver on CPU 1; for the
rate ladder RPS also moves the kernel's forwarding and the guest's receive to CPU 0
(else they run in the sender's softirq, on the sender's CPU, and cap what it
offers), with a larger backlog (Topo.steer_softirq).
Usage: sudo .venv/bin/python benchmarks/bench_paths.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gamebed.backend import Point
from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner, in_netns, ip_cmd, pinned, require_net_admin, signals_unwind
from gamebed.progress import Progress
from gamebed.run import Layers, Run
from gamebed.spec import ExperimentSpec
from gamebed.topology import Topology
from hostside.host import HostSide
from vm.netns import NetnsGuests
from vm.testbed import testbed_context

PROG = str(Path(__file__).with_name("pathprog.py"))
BLAST_SRC = Path(__file__).with_name("blast.c")
BACKLOG_SYSCTL = Path("/proc/sys/net/core/netdev_max_backlog")
BACKLOG = 10_000  # frames per CPU waiting for the forwarding softirq, on the ladder


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
        topo = dataclasses.replace(ctx.topo, guests=Topology.build(
            ctx.topo.prefix, 1, ctx.topo.game_port).guests)
        # one point for every path: its directory gets each shim's summary in turn
        self.point = Point("guest", ctx.work_dir, ctx.spec, topo)
        self.host = stack.enter_context(HostSide(ctx, topo.guests))
        guests = NetnsGuests(ctx)
        stack.callback(guests.stop)
        self.g = topo.guests[0]
        guests.guest_network(stack, self.g)
        cpus = ctx.placement.guest_cpus

        def prog(ns: str, *args: object) -> list[str]:
            return [*in_netns(ns), *pinned(cpus, [sys.executable, PROG, *map(str, args)])]

        self.prog = prog

    def steer_softirq(self, on: bool) -> None:
        """For the rate ladder: RPS on the uplink and the guest's NIC, so the kernel's
        forwarding and the guest's receive run on the host side's CPU, not in the
        sender's softirq on its own CPU (there they capped what it offers, at about 112
        kpps here); and a backlog of BACKLOG frames per CPU instead of 1,000, so a
        stall of the forwarding CPU (this machine is itself a VM) is not what the
        ladder measures: a path loses there when it cannot keep up.  Off again: RPS
        off, the backlog as found (the latency figures are taken without)."""
        cpus = self.ctx.placement.host_cpus
        mask = format(sum(1 << int(c) for c in (cpus or "0").split(",")), "x") if on else "0"
        t = self.ctx.topo
        for ns, dev in ((t.host_ns, t.uplink), (self.g.netns, self.g.nic_name)):
            self.r.run([*in_netns(ns), "tee", f"/sys/class/net/{dev}/queues/rx-0/rps_cpus"],
                       input=mask)
        if on:
            self._backlog = BACKLOG_SYSCTL.read_text().strip()
        self.r.run(["sysctl", "-w", f"net.core.netdev_max_backlog="
                    f"{BACKLOG if on else self._backlog}"])

    def measure_rate(self, blast: str, rate: float, seconds: float) -> dict:
        """Loss at one offered rate: blast.c sends whole frames from a packet socket
        with no send buffer to hold it back (a frame the uplink's ring has no room for
        is lost, as a remote player's would be), and counts what reached the guest's
        UDP layer (its sink reads nothing: the sender's CPU is the sender's)."""
        t, ip = self.ctx.topo, self.g.nic.ip
        cpus = self.ctx.placement.guest_cpus
        def cmd(ns: str, *args: object) -> list[str]:
            return [*in_netns(ns), *pinned(cpus, [blast, *map(str, args)])]

        # the receiver ends once the sender is done (0.5 s quiet); the cap is far off
        rx = subprocess.Popen(cmd(self.g.netns, "sink", ip, t.game_port, 4 * seconds + 5),
                              stdout=subprocess.PIPE, text=True)
        assert rx.stdout.readline().strip() == "ready"
        tx = subprocess.run(cmd(t.client_ns, "raw", t.client_nic, t.client.mac, self.g.nic.mac,
                                t.client.ip, ip, t.game_port, rate, seconds),
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
    t.host.attach(t.point, stamper, truth, rx_ring)
    try:
        yield
    finally:
        t.host.detach()


PATHS = {"bridge": lambda t: bridge(t), "shim (afpacket)": lambda t: shim(t, "afpacket"),
         "shim (recvmsg)": lambda t: shim(t, "afpacket", rx_ring=False),
         "bpf+packet-log": lambda t: shim(t, "bpf", "packet"),
         "bpf+ring-log": lambda t: shim(t, "bpf", "ring")}


def ladder(top: float) -> list[float]:
    """Offered rates from 20 kpps up in steps of 1.25x, to `top`."""
    rates, r = [], 20_000.0
    while r <= top:
        rates.append(r)
        r = round(r * 1.25, -3)
    return rates


def rate_limit(t: Topo, name: str, rates: list[float], seconds: float, blast: str
               ) -> tuple[float, bool, str]:
    """One path's highest rate with < 0.1% loss on the ladder (what was really offered
    there), whether the sender ran short first (then it is the sender's limit, the path
    carried all it got), and what of the ground truth was lost on the way."""
    best, short, delivered = 0.0, True, 0  # short until a loss: sender or ladder ran out
    with PATHS[name](t):
        time.sleep(0.3)
        for rate in rates:
            res = t.measure_rate(blast, rate, seconds)
            delivered += res["received"]
            offered = res["sent"] / res["elapsed"]
            print(f"      {name}: {rate:8.0f} pps asked, {offered:8.0f} offered: loss "
                  f"{100 * res['loss']:.3f}%", flush=True)
            if res["loss"] >= 0.001:
                short = False
                break
            best = min(rate, round(offered, -2))  # what was really offered
            if offered < 0.9 * rate:
                break  # the sender's limit: higher steps would measure it again
    return best, short, truth_lost(t, delivered) if name != "bridge" else ""


def rate_limits(t: Topo, rates: list[float], seconds: float, blast: str, repeats: int
                ) -> tuple[dict, dict, str]:
    """Each path's highest clean rate, median of `repeats` ladders (the paths take turns
    within a repeat), every path raised until it loses or the sender runs short; and
    per path whether the sender ran short first in most repeats."""
    found: dict[str, list] = {n: [] for n in PATHS}
    notes: list[str] = []
    t.steer_softirq(True)
    try:
        for k in range(repeats):
            for name in PATHS:
                best, short, lost = rate_limit(t, name, rates, seconds, blast)
                found[name].append((best, short))
                print(f"[{k + 1}/{repeats}] {name}: {best:.0f} pps with < 0.1% loss"
                      + (" (the sender's limit)" if short else ""), flush=True)
                if lost:
                    notes.append(f"{name}, repeat {k + 1}: {lost}")
    finally:
        t.steer_softirq(False)
    med = {n: statistics.median(b for b, _ in f) for n, f in found.items()}
    short = {n: sum(s for _, s in f) * 2 > len(f) for n, f in found.items()}
    if any(short.values()):
        notes.append("* = the path lost nothing up to what the sender could offer (or "
                     "the ladder's top): its limit is at least that")
    return med, short, "; ".join(notes)


def truth_lost(t: Topo, delivered: int) -> str:
    """What the shim's summary says was lost of the ground truth on a ladder that
    delivered `delivered` inputs ('' for nothing): ring-buffer drops, inputs forwarded
    with a zero stamp, inputs delivered without a row (every path logs each one)."""
    path = t.point.dir / "shim_summary.json"
    s = json.loads(path.read_text())
    path.unlink()  # the next path's shim writes its own
    if s.get("ring_bytes"):  # how near the ring came to full, and why
        print(f"      truth ring: peak fill {100 * s['ring_peak_fill'] / s['ring_bytes']:.1f}% "
              f"of {s['ring_bytes'] >> 20} MiB, longest gap between drains "
              f"{s['ring_longest_drain_gap_s']:.3f} s; drops of a full-looking ring "
              f"{s['stamper_counters'].get('ring_drops_full', 0)}", flush=True)
    lost = {"ring-buffer drops": s.get("ring_drops", 0),
            "zero-stamp inputs": s.get("zero_stamp_inputs", 0),
            "inputs delivered without a truth row": max(0, delivered
                                                         - s["ground_truth_rows"])}
    return ", ".join(f"{v} {k}" for k, v in lost.items() if v)


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


def table(figs: dict, best: dict, short: dict, note: str, repeats: int) -> None:
    cols = ("1k p50", "1k p99", "10k p50", "10k p99")
    med = {n: {c: statistics.median(f[c]) for c in cols} for n, f in figs.items()}
    b = med["bridge"]
    print(f"\nmedians of {repeats} repeats (µs, client send -> guest kernel SO_TIMESTAMPNS); "
          "x = ratio to the bridge")
    print(f"{'path':<17}" + "".join(f"{c:>16}" for c in cols) + f"{'max pps <0.1% loss':>24}")
    for n, m in med.items():
        cells = "".join(f"{m[c]:8.1f} ({m[c] / b[c]:4.2f}x)" for c in cols)
        ratio = best[n] / best["bridge"] if best["bridge"] else float("nan")
        mark = "*" if short.get(n) else " "
        print(f"{n:<17}{cells}{best[n]:14.0f}{mark} ({ratio:4.2f}x)")
    if note:
        print(f"note: {note}")
    print(json.dumps({"medians_us": med, "max_rate_pps": best, "sender_limited": short,
                      "repeats": repeats, "note": note}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="per latency measurement")
    ap.add_argument("--rate-seconds", type=float, default=2.0, help="per rate step")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-rate", type=float, default=2_000_000,
                    help="the ladder's top (a path's ladder stops earlier where it loses "
                         "or the sender runs short)")
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
    spec = ExperimentSpec.of(guest_counts=(1,), modes=("guest",))
    run = Run(spec, tmp, Layers(testbeds=lambda *_: None), Runner(), m, Progress())
    ctx = testbed_context(run, tmp, host_in_root_ns=False)
    with signals_unwind(), ExitStack() as stack:  # SIGTERM tears down like ^C
        stack.callback(m.close)  # the manifest file goes once its entries are gone
        t = Topo(stack, ctx)
        figs = latency_rounds(t, a.repeats, a.seconds)
        best, short, note = rate_limits(t, ladder(a.max_rate), a.rate_seconds, blast,
                                        a.repeats)
    table(figs, best, short, note, a.repeats)


if __name__ == "__main__":
    main()
