"""`gamebed launch --count N` / `gamebed launch --destroy`: standing game VMs (root).

Boots N game-server VMs exactly as a `--backend libvirt` or `--backend uml` run
does (the same spec options, host side and backend; servers that never stop by
themselves), waits until every server answers a clock-sync request from the
client namespace, then leaves it all running and prints how to reach it.
Everything is listed in a manifest whose prefix starts with "gl"; `--destroy`
removes exactly what those manifests list.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from gamebed.manifest import STATE_DIR, VM_DIR
from gamebed.proc import Runner, in_netns, python_cmd, require_net_admin, signals_unwind
from gamebed.resources import clean_manifest
from gamebed.run import Layers, Run
from gamebed.spec import ExperimentSpec
from vm import testbeds

LAUNCH_PREFIX = "gl"


LAUNCHABLE = ("uml", "libvirt")


def launch(spec: ExperimentSpec, dry_run: bool = False) -> dict:
    """Start spec.counts[0] VMs in spec.design.modes[0]; leave them running."""
    if spec.backend not in LAUNCHABLE:
        raise ValueError(f"launch starts {' or '.join(LAUNCHABLE)} guests; backend "
                         f"{spec.backend!r} is for `run`")
    if not dry_run:
        require_net_admin()
    count, mode = spec.counts[0], spec.design.modes[0]
    prefix = LAUNCH_PREFIX + secrets.token_hex(3)
    pdir = VM_DIR / prefix / "host"
    run = Run.start(spec, pdir, Layers(testbeds), dry_run, prefix=prefix)
    if not dry_run:
        run.manifest.add(kind="dir", path=str(VM_DIR / prefix))
    bed = run.testbed(count, pdir)
    try:
        with signals_unwind():
            answers = _bring_up(bed, mode, pdir, run.runner)
    except BaseException:
        if not dry_run:  # the testbed tore itself down; drop what launch itself listed
            clean_manifest(run.manifest.path, run.runner)
        raise
    topo = bed.topo
    return {"prefix": prefix, "manifest": str(run.manifest.path), "backend": spec.backend,
            "client_netns": topo.client_ns, "mode": mode,
            "guests": [{"port": g.host_port, "ip": g.nic.ip, "mac": g.nic.mac, "answer": a,
                        **extra}
                       for g, a, extra in zip(topo.guests, answers or [None] * count,
                                              bed.backend.guest_info(), strict=True)],
            "environment": bed.environment(),
            "play": f"ip netns exec {topo.client_ns} gamebed client "
                    + " ".join(f"--server {t}" for t in topo.server_targets())
                    + " --out /tmp/play",
            "destroy": "gamebed launch --destroy"}


def _bring_up(bed, mode: str, pdir: Path, runner: Runner) -> list[dict]:
    """Enter the testbed and the mode, check every server answers; on success keep it
    all running."""
    with bed:
        bed.enter_mode(mode, pdir, idle_exit=0)  # servers that never stop by themselves
        answers: list[dict] = []
        if not runner.dry_run:
            r = runner.run([*in_netns(bed.topo.client_ns),
                            *python_cmd("fpsmodel.ping", *bed.topo.server_targets())],
                           check=False)
            answers = json.loads(r.stdout or "[]")
            if r.returncode != 0:
                raise RuntimeError(f"not every game server answered: {answers or r.stderr}")
        bed.keep_running()  # success: the manifest remembers it all
    return answers


def destroy(state_dir: Path | None = None) -> list[str]:
    """Remove everything every launch manifest lists."""
    require_net_admin()
    runner = Runner()
    done = []
    for path in sorted((state_dir or STATE_DIR).glob(f"{LAUNCH_PREFIX}*.json")):
        done += clean_manifest(path, runner)
    return done or ["nothing launched"]
