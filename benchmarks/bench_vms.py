"""VM scale benchmark: boot N game VMs at once, time them, weigh them, destroy them.

For each backend and N: `launch` N guests, i.e. boot them concurrently and wait
until every game server answers a clock-sync request; then weigh them and destroy
everything.  Prints one JSON line per (backend, N): seconds to all-answering,
memory per guest and host memory used.  UML guests are weighed at the end of a
--load s load of the model game on all of them (the figure a sweep's largest count
leaves), as the PSS of every process in each guest's cgroup.

- uml (default N = 1, 16, 48): user-mode Linux guests; per guest the RSS of its
  kernel process and the PSS of all its processes (its guest processes share the
  kernel's memory mapping: PSS counts each page once);
- libvirt (default N = 1, 4, 8, 16): QEMU VMs (the gamebed image, patched
  virtio_net), QEMU's RSS per VM, and the domain type (kvm/tcg).

Root.  Usage: python benchmarks/bench_vms.py [--backends uml,libvirt]
              [--uml-counts 1,16,48] [--counts 1,4,8,16] [--memory 160]
              [--uml-mode auto|seccomp|ptrace]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gamebed import cgroups
from gamebed.resources import pss_mib
from gamebed.spec import UML_MODES, ExperimentSpec, default
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


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def play_load(info: dict, seconds: float) -> None:
    """The model game's load on every launched guest for `seconds` (host stamps)."""
    cmd = info["play"].replace("gamebed client", f"{sys.executable} -m fpsmodel client "
                               f"--duration {seconds:g}").split()
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 120)


def guest_pss_mib(prefix: str, n: int) -> list[float]:
    """Each UML guest's PSS: every process in its cgroup (vm/uml.py names them)."""
    return [round(pss_mib(cgroups.pids_of(f"{prefix}-ug{i}")), 1) for i in range(n)]


def bench_one(backend: str, n: int, memory: int, uml_mode: str = "auto",
              load_s: float = 0.0) -> dict:
    before = mem_used_mib()
    t0 = time.monotonic()
    info = launch(ExperimentSpec.of(guest_counts=(n,), modes=("host",), backend=backend,
                                 vm_memory_mib=memory, uml_mode=uml_mode))
    up = time.monotonic() - t0
    if load_s and backend == "uml":  # weighed at the end of a load, as a sweep runs them
        play_load(info, load_s)
    else:
        time.sleep(5)  # let boot-time allocations settle before weighing
    out = {"backend": backend, "vms": n, "ok": True, "all_answering_s": round(up, 1),
           "memory_mib_per_vm": memory}
    env = info["environment"]
    if backend == "libvirt":
        rss = qemu_rss_kib([v["name"] for v in info["guests"]])
        out["domain_type"] = env.get("domain_type")
    else:
        rss = [rss_kib(g["pid"]) for g in info["guests"]]
        out.update({k: env.get(k) for k in ("pss_mib_per_guest", "uml_mode",
                                            "guest_kernel", "guest_kernel_digest")})
        pss = guest_pss_mib(info["prefix"], n)
        out.update(pss_mib_mean=round(sum(pss) / n, 1), pss_mib_max=max(pss),
                   pss_after=f"a {load_s:g} s load" if load_s else "boot")
    out.update({"rss_mib_mean": round(sum(rss) / len(rss) / 1024, 1),
                "rss_mib_max": round(max(rss) / 1024, 1),
                "host_mem_used_mib": round(mem_used_mib() - before)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="uml,libvirt")
    ap.add_argument("--uml-counts", default="1,16,48")
    ap.add_argument("--counts", default="1,4,8,16", help="libvirt VM counts")
    ap.add_argument("--memory", type=int, default=default("vm_memory_mib"), help="MiB per VM")
    ap.add_argument("--load", type=float, default=10.0, metavar="S",
                    help="uml: play S seconds of the model game on every guest before "
                         "weighing them (default %(default)s; 0: weigh after boot)")
    ap.add_argument("--uml-mode", choices=UML_MODES, default=default("uml_mode"),
                    help="uml: auto, seccomp or ptrace (gamebed run --uml-mode)")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_vms: needs root (namespaces, cgroups, libvirt domains, taps)",
              file=sys.stderr)
        return 2
    rc = 0
    for backend in a.backends.split(","):
        counts = a.uml_counts if backend == "uml" else a.counts
        for n in (int(x) for x in counts.split(",")):
            try:
                row = bench_one(backend, n, a.memory, a.uml_mode, a.load)
            except Exception as e:  # report the count that failed, then stop growing
                row = {"backend": backend, "vms": n, "ok": False,
                       "error": str(e).splitlines()[0]}
                rc = 1
            finally:
                destroy()
            print(json.dumps(row), flush=True)
            if not row["ok"]:
                break
    return rc


if __name__ == "__main__":
    sys.exit(main())
