"""Interrupted runs: stop `gamebed run` at random moments and look for what it left (root).

For each backend that works here and each of SIGINT, SIGTERM and SIGKILL, N times
(default 20): start a small sweep (`--guests 1,2`, both modes, 2 s of play), send the
signal at a seeded random moment within the run's usual length, wait for the exit
(after SIGKILL: `gamebed clean`, as a user would), then compare with what was there
before: network namespaces, links, cgroups (every hierarchy), UML/QEMU/game processes,
libvirt domains, files under the state directories (/run/gamebed, /var/lib/gamebed)
and the sysctls a testbed might touch.  Each run has a state directory of its own
(GAMEBED_STATE_DIR), so its manifests name its prefix; only what carries that prefix
or the run's results directory counts, so other work on the machine meanwhile is not
taken for a leftover.  Then the points the run finished before the
signal must be intact and reportable: every point summary.json lists has its
point.json, and `gamebed report` rebuilds a report from them.

Prints one line per run and a table per backend and signal; writes every run's
record to --out/interrupts.json.  Exit 1 if anything was left or a report failed.

Usage: python benchmarks/interrupt_runs.py [--backends netns,uml,libvirt]
           [--per-signal 20] [--seed 1] [--out /tmp/interrupts]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from gamebed.leaks import leftovers

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
# seconds of a run's usual length here: the signal lands anywhere in it
RUN_S = {"netns": 14.0, "uml": 30.0, "libvirt": 60.0}
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/core/rmem_max",
           "net/core/wmem_max", "net/core/netdev_max_backlog", "net/core/bpf_jit_enable",
           "kernel/sched_rt_runtime_us", "net/ipv4/conf/all/rp_filter")
PROC_MARKS = ("linux.uml", "qemu-system", "fpsmodel", "hostside.shim", "gamebed")


def snapshot() -> dict[str, list[str]]:
    """Everything of ours a run could leave behind: every name (tests/support/leaks.py),
    processes of gamebed's kinds, and the sysctls a run may touch."""
    return {**leftovers("", *PROC_MARKS),
            "sysctls": [f"{k}={Path('/proc/sys', k).read_text().strip()}" for k in SYSCTLS
                        if Path("/proc/sys", k).exists()]}


def diff(before: dict, after: dict) -> dict[str, list[str]]:
    return {k: sorted(set(after[k]) - set(before[k])) for k in after
            if set(after[k]) - set(before[k])}


def available(backend: str) -> str | None:
    """Why a backend cannot run here, or None."""
    if backend == "uml":
        from vm import uml_usable
        ok, why = uml_usable()
        return None if ok else why
    if backend == "libvirt":  # gamebed starts the daemons itself where none runs
        missing = [c for c in ("libvirtd", "virsh", "qemu-system-x86_64") if not shutil.which(c)]
        return f"no {', '.join(missing)} (scripts/setup.sh)" if missing else None
    return None


def points_intact(out: Path) -> tuple[int, str]:
    """(points the run finished, problem or "") : listed points complete, report rebuilt."""
    summary = out / "summary.json"
    if not summary.exists():
        return 0, ""
    pts = json.loads(summary.read_text())["points"]
    for p in pts:
        if not (out / p["dir"] / "point.json").exists():
            return len(pts), f"{p['dir']} lacks point.json"
    if not pts:
        return 0, ""
    r = subprocess.run([sys.executable, "-m", "gamebed", "report", str(out)],
                       capture_output=True, text=True, timeout=300)
    return len(pts), "" if r.returncode == 0 else f"report failed: {r.stderr[-300:]}"


def _default_sigint() -> None:  # in the child, before exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_run(backend: str, sig: str, delay: float, out: Path) -> dict:
    before = snapshot()
    cmd = [sys.executable, "-m", "gamebed", "run", "--backend", backend, "--guests", "1,2",
           "--duration", "2", "--out", str(out), "--no-report"]
    t0 = time.monotonic()
    # a state directory of the run's own: its manifests name its prefix, and nothing
    # else's (work going on meanwhile) is taken for this run's
    state = out.parent / f"{out.name}.state"
    env = dict(os.environ, GAMEBED_STATE_DIR=str(state))
    prefixes: set[str] = set()
    # SIGINT as a terminal's ^C: a shell's background job (nohup ... &) would hand the run
    # an ignored SIGINT, which it keeps until its sweep installs its own handler
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)
    while proc.poll() is None and time.monotonic() - t0 < delay:
        prefixes |= {p.stem for p in state.glob("*.json")}
        time.sleep(0.05)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(SIGNALS[sig])
    _, err = proc.communicate(timeout=300)
    rec = {"backend": backend, "signal": sig, "delay_s": round(delay, 2),
           "finished_before_signal": finished_first, "rc": proc.returncode,
           "exit_s": round(time.monotonic() - t0 - delay, 1)}
    if sig == "SIGKILL" and not finished_first:
        c = subprocess.run([sys.executable, "-m", "gamebed", "clean"], capture_output=True,
                           text=True, timeout=300, env=env)
        rec["clean_rc"] = c.returncode
    time.sleep(0.5)
    # only this run's: its prefix (every name it gives carries it) or, for processes,
    # its results directory; so other work on the machine is not taken for a leftover
    marks = [str(out), *prefixes]
    left = {k: [x for x in v if k == "sysctls" or any(m in x for m in marks)]
            for k, v in diff(before, snapshot()).items()}
    left["state_files"] = [*left.get("state_files", []), *map(str, state.glob("*"))]
    rec["left"] = {k: v for k, v in left.items() if v}
    rec["prefixes"] = sorted(prefixes)
    rec["points"], rec["points_problem"] = points_intact(out)
    if proc.returncode not in (0, 130, -9) and not rec["left"]:
        rec["stderr_tail"] = err[-300:]
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="netns,uml,libvirt")
    ap.add_argument("--per-signal", type=int, default=20)
    ap.add_argument("--signals", default=",".join(SIGNALS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/interrupts"))
    a = ap.parse_args(argv)
    rng, records = random.Random(a.seed), []
    shutil.rmtree(a.out, ignore_errors=True)
    for backend in a.backends.split(","):
        if (why := available(backend)) is not None:
            print(f"{backend}: skipped ({why})", flush=True)
            continue
        for sig in a.signals.split(","):
            for i in range(a.per_signal):
                delay = rng.uniform(0.3, RUN_S[backend])
                rec = one_run(backend, sig, delay, a.out / f"{backend}-{sig}-{i:02d}")
                records.append(rec)
                print(json.dumps(rec), flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "interrupts.json").write_text(json.dumps(records, indent=1))
    return report(records)


def report(records: list[dict]) -> int:
    table = defaultdict(lambda: defaultdict(int))
    for r in records:
        t = table[(r["backend"], r["signal"])]
        t["runs"] += 1
        t["interrupted"] += not r["finished_before_signal"]
        t["with_points"] += r["points"] > 0
        t["leftovers"] += bool(r["left"])
        t["bad_points"] += bool(r["points_problem"])
    print("\n| backend | signal | runs | interrupted mid-run | had finished points | "
          "runs with leftovers | points not intact |\n|---|---|---|---|---|---|---|")
    for (b, s), t in table.items():
        print(f"| {b} | {s} | {t['runs']} | {t['interrupted']} | {t['with_points']} | "
              f"{t['leftovers']} | {t['bad_points']} |")
    bad = sum(t["leftovers"] + t["bad_points"] for t in table.values())
    print(f"\n{len(records)} runs; {bad} with leftovers or broken points")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
