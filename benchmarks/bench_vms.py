"""VM scale benchmark: boot N game VMs at once, time them, weigh them, destroy them.

For each N (default 1, 4, 8, 16): `launch` N VMs (libvirt backend, the gamebed
image, patched virtio_net), i.e. boot them concurrently and wait until every game
server answers a clock-sync request; then read each QEMU's resident memory from
/proc and destroy everything.  Prints one JSON line per N: seconds to all-answering,
QEMU RSS per VM (mean, max), host memory used, and the domain type (kvm/tcg).
Root.  Usage: python benchmarks/bench_vms.py [--counts 1,4,8,16] [--memory 160]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from gamebed.spec import ExperimentSpec
from vm.launch import destroy, launch


def qemu_rss_kib(names: list[str]) -> list[int]:
    """RSS of the QEMU process of each named domain (its cmdline carries guest=NAME)."""
    rss = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "qemu-system" not in cmd or not any(f"guest={n}," in cmd for n in names):
                continue
            for line in (p / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss.append(int(line.split()[1]))
        except OSError:
            continue
    return rss


def mem_used_mib() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = lambda k: int(info[k].split()[0])  # noqa: E731
    return (kib("MemTotal") - kib("MemAvailable")) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,4,8,16")
    ap.add_argument("--memory", type=int, default=160, help="MiB per VM")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_vms: needs root (libvirt domains, taps)", file=sys.stderr)
        return 2
    for n in (int(x) for x in a.counts.split(",")):
        before = mem_used_mib()
        t0 = time.monotonic()
        try:
            info = launch(ExperimentSpec(guest_counts=(n,), modes=("host",), backend="libvirt",
                                         vm_memory_mib=a.memory))
        except Exception as e:  # report the count that failed, then stop growing
            print(json.dumps({"vms": n, "ok": False, "error": str(e).splitlines()[0]}))
            destroy()
            return 1
        up = time.monotonic() - t0
        time.sleep(5)  # let boot-time allocations settle before weighing
        rss = qemu_rss_kib([v["name"] for v in info["guests"]])
        used = mem_used_mib() - before
        destroy()
        print(json.dumps({"vms": n, "ok": True, "domain_type": info["domain_type"],
                          "all_answering_s": round(up, 1), "memory_mib_per_vm": a.memory,
                          "qemu_rss_mib_mean": round(sum(rss) / len(rss) / 1024, 1),
                          "qemu_rss_mib_max": round(max(rss) / 1024, 1),
                          "host_mem_used_mib": round(used)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
