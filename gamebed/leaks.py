"""What a run could leave behind, by its prefix: the one leak check of the tests and of
benchmarks/interrupt_runs.py (reads /proc, /sys and `ip`/`virsh`; root to see it all).

Every object a run makes carries its prefix (gamebed/manifest.py): namespaces, links,
cgroups, guests' processes, libvirt domains, files under the VM and state directories.
The tests compare a run's `leftovers(prefix)` with NOTHING; the interrupt benchmark
diffs `leftovers("")` (every name) before and after its runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from gamebed import cgroups
from gamebed.manifest import STATE_DIR, VM_DIR

KINDS = ("netns", "links", "cgroups", "processes", "domains", "vm_files", "state_files")
NOTHING = {k: [] for k in KINDS}


def _words(cmd: list[str]) -> list[str]:
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.stdout.split() if r.returncode == 0 else []


def _netns_inodes(names: list[str]) -> set[str]:
    out = set()
    for n in names:
        try:
            out.add(f"net:[{os.stat(f'/run/netns/{n}').st_ino}]")
        except OSError:
            pass
    return out


def _processes(marks: tuple[str, ...], netns: list[str]) -> list[str]:
    """Processes in one of the run's namespaces, or whose command line names the prefix
    or another mark (a results directory: a server's --out), this process and its parent
    aside."""
    me, inodes, out = {os.getpid(), os.getppid()}, _netns_inodes(netns), []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in me:
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            ns = os.readlink(p / "ns" / "net")
        except OSError:
            continue
        if ns in inodes or any(m.encode() in cmd for m in marks):
            line = cmd.replace(b"\0", b" ").decode(errors="replace")[:200]
            out.append(f"{p.name} {line}")
    return sorted(out)


def leftovers(prefix: str, *marks: str) -> dict[str, list[str]]:
    """Everything named with `prefix` that exists now (`marks`: more strings that name a
    run's processes); prefix "" takes every name (the interrupt benchmark's before and
    after)."""
    domains = (_words(["virsh", "-c", "qemu:///system", "list", "--all", "--name"])
               if shutil.which("virsh") else [])
    netns = sorted(n for n in _words(["ip", "netns", "list"]) if n.startswith(prefix))
    return {
        "netns": netns,
        "links": sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix)),
        "cgroups": cgroups.leftovers(prefix),
        "processes": _processes(tuple(m for m in (prefix, *marks) if m), netns),
        "domains": sorted(d for d in domains if d.startswith(prefix)),
        "vm_files": sorted(str(p) for p in VM_DIR.glob(f"{prefix}*") if p.name != "cache"),
        "state_files": sorted(str(p) for p in STATE_DIR.glob(f"{prefix}*")),
    }
