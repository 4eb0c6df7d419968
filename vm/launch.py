"""`gamebed launch --count N` / `gamebed launch --destroy`: standing game VMs (root).

Boots N game-server VMs exactly as a `--backend libvirt` run point does (the same
spec options, host side and backend), waits until every server answers a
clock-sync request from the client namespace, then leaves it all running and
prints how to reach it.  Everything is listed in a manifest whose prefix starts
with "gl"; `--destroy` removes exactly what those manifests list.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from gamebed.manifest import STATE_DIR, Manifest
from gamebed.proc import Runner, in_netns, python_cmd, require_net_admin
from gamebed.resources import clean_manifest
from gamebed.spec import ExperimentSpec
from gamebed.sweep import signals_unwind
from vm import make_point
from vm.libvirt_backend import LibvirtGuests
from vm.libvirt_vm import VM_DIR

LAUNCH_PREFIX = "gl"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def launch(spec: ExperimentSpec, dry_run: bool = False) -> dict:
    """Start spec.guest_counts[0] VMs in spec.modes[0]; leave them running."""
    if spec.backend != "libvirt":
        raise ValueError(f"launch starts libvirt VMs; backend {spec.backend!r} is for `run`")
    if not dry_run:
        require_net_admin()
    count, mode = spec.guest_counts[0], spec.modes[0]
    runner = Runner(dry_run=dry_run)
    manifest = Manifest(LAUNCH_PREFIX + secrets.token_hex(3), dry_run=dry_run)
    pdir = VM_DIR / manifest.prefix / "host"
    if not dry_run:
        manifest.add(kind="dir", path=str(VM_DIR / manifest.prefix))
    point = make_point(spec, count, mode, pdir, runner, manifest, _progress,
                       backend=lambda ctx: LibvirtGuests(ctx, idle_exit=0))
    try:
        with signals_unwind():
            answers = _bring_up(point, runner)
    except BaseException:
        if not dry_run:  # the point tore itself down; drop what launch itself listed
            clean_manifest(manifest.path, runner)
        raise
    topo, guests = point.topo, point.backend
    return {"prefix": manifest.prefix, "manifest": str(manifest.path),
            "client_netns": topo.client_ns, "mode": mode,
            "domain_type": guests.accel.domain_type if guests.accel else None,
            "accel_reason": guests.accel.reason if guests.accel else None,
            "vms": [{"name": vm.cfg.name, "tap": g.host_port, "ip": g.nic.ip,
                     "mac": g.nic.mac, "console": str(vm.console), "answer": a}
                    for g, vm, a in zip(topo.guests, guests.vms,
                                        answers or [None] * count, strict=True)],
            "play": f"ip netns exec {topo.client_ns} gamebed client "
                    + " ".join(f"--server {t}" for t in topo.server_targets())
                    + " --out /tmp/play",
            "destroy": "gamebed launch --destroy"}


def _bring_up(point, runner: Runner) -> list[dict]:
    """Enter the point, check every server answers; on success keep it all running."""
    with point:
        answers: list[dict] = []
        if not runner.dry_run:
            r = runner.run([*in_netns(point.topo.client_ns),
                            *python_cmd("fpsmodel.ping", *point.topo.server_targets())],
                           check=False)
            answers = json.loads(r.stdout or "[]")
            if r.returncode != 0:
                raise RuntimeError(f"not every game server answered: {answers or r.stderr}")
        point.stack.pop_all()  # success: leave it running; the manifest remembers it
    return answers


def destroy(state_dir: Path | None = None) -> list[str]:
    """Remove everything every launch manifest lists."""
    require_net_admin()
    runner = Runner()
    done = []
    for path in sorted((state_dir or STATE_DIR).glob(f"{LAUNCH_PREFIX}*.json")):
        done += clean_manifest(path, runner)
    return done or ["nothing launched"]
