"""`gamebed launch --count N` / `gamebed launch --destroy`: standing game VMs (root).

Boots N game-server VMs exactly as a `--backend libvirt` run point does (client
namespace, host stamper and shim, one tap per VM), waits until every server answers
a clock-sync request from the client namespace, then leaves it all running and
prints how to reach it.  Everything is listed in a manifest whose prefix starts
with "gl"; `--destroy` removes exactly what those manifests list.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from vm.libvirt_vm import VM_DIR
from vm.resources import STATE_DIR, Manifest, clean_manifest
from vm.runner import signals_unwind
from vm.spec import ExperimentSpec
from vm.sysutil import Runner, python_cmd, require_net_admin

LAUNCH_PREFIX = "gl"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def launch(count: int, nic: str = "patched", uri: str = "qemu:///system",
           accel: str = "auto", memory_mib: int = 160, dry_run: bool = False) -> dict:
    from vm.vmpoint import LibvirtPoint

    if not dry_run:
        require_net_admin()
    spec = ExperimentSpec(guests=(count,), backend="libvirt", libvirt_uri=uri, accel=accel,
                          vm_memory_mib=memory_mib)
    runner = Runner(dry_run=dry_run)
    manifest = Manifest(LAUNCH_PREFIX + secrets.token_hex(3), dry_run=dry_run)
    pdir = VM_DIR / manifest.prefix / "host"
    if not dry_run:
        manifest.add(kind="dir", path=str(VM_DIR / manifest.prefix))
    point = LibvirtPoint(spec, count, "host" if nic == "patched" else "guest", pdir, runner,
                         manifest, _progress, idle_exit=0)
    try:
        with signals_unwind():
            answers = _bring_up(point, runner, spec.game_port)
    except BaseException:
        if not dry_run:  # the point tore itself down; drop what launch itself listed
            clean_manifest(manifest.path, runner)
        raise
    return {
"prefix": manifest.prefix, "manifest": str(manifest.path),
            "client_netns": point.client_ns, "domain_type": point.domain_type,
            "vms": [{"name": vm.cfg.name, "tap": g.host_port, "ip": g.ip, "mac": g.mac,
                     "console": str(vm.console), "answer": a}
                    for g, vm, a in zip(point.guests, point.vms,
                                        answers or [None] * count, strict=True)],
            "play": f"ip netns exec {point.client_ns} gamebed client "
                    + " ".join(f"--server {g.ip}:{spec.game_port}" for g in point.guests)
                    + " --out /tmp/play",
            "destroy": "gamebed launch --destroy"}


def _bring_up(point, runner: Runner, port: int) -> list[dict]:
    """Enter the point, check every server answers; on success keep it all running."""
    with point:
        answers: list[dict] = []
        if not runner.dry_run:
            targets = [f"{g.ip}:{port}" for g in point.guests]
            r = runner.run(["ip", "netns", "exec", point.client_ns,
                            *python_cmd("vm.ping", *targets)], check=False)
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
