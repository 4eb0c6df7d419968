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
import sys
from pathlib import Path

from gamebed.manifest import STATE_DIR, VM_DIR, Manifest
from gamebed.proc import Runner, in_netns, python_cmd, require_net_admin
from gamebed.resources import clean_manifest
from gamebed.spec import ExperimentSpec
from gamebed.sweep import signals_unwind
from vm import make_testbed

LAUNCH_PREFIX = "gl"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


LAUNCHABLE = ("uml", "libvirt")


def _backend(name: str):
    """The backend with servers that run until their guest is destroyed."""
    if name == "libvirt":
        from vm.libvirt_backend import LibvirtGuests

        return lambda ctx: LibvirtGuests(ctx, idle_exit=0)
    from vm.uml import UmlGuests

    return lambda ctx: UmlGuests(ctx, idle_exit=0)


def launch(spec: ExperimentSpec, dry_run: bool = False) -> dict:
    """Start spec.counts[0] VMs in spec.modes[0]; leave them running."""
    if spec.backend not in LAUNCHABLE:
        raise ValueError(f"launch starts {' or '.join(LAUNCHABLE)} guests; backend "
                         f"{spec.backend!r} is for `run`")
    if not dry_run:
        require_net_admin()
    count, mode = spec.counts[0], spec.modes[0]
    runner = Runner(dry_run=dry_run)
    manifest = Manifest(LAUNCH_PREFIX + secrets.token_hex(3), dry_run=dry_run)
    pdir = VM_DIR / manifest.prefix / "host"
    if not dry_run:
        manifest.add(kind="dir", path=str(VM_DIR / manifest.prefix))
    bed = make_testbed(spec, count, pdir, runner, manifest, _progress,
                       backend=_backend(spec.backend))
    try:
        with signals_unwind():
            answers = _bring_up(bed, mode, pdir, runner)
    except BaseException:
        if not dry_run:  # the testbed tore itself down; drop what launch itself listed
            clean_manifest(manifest.path, runner)
        raise
    topo = bed.topo
    return {"prefix": manifest.prefix, "manifest": str(manifest.path), "backend": spec.backend,
            "client_netns": topo.client_ns, "mode": mode,
            "guests": [{"port": g.host_port, "ip": g.nic.ip, "mac": g.nic.mac, "answer": a,
                        **extra}
                       for g, a, extra in zip(topo.guests, answers or [None] * count,
                                              _guest_info(bed.backend), strict=True)],
            **_backend_info(bed.backend),
            "play": f"ip netns exec {topo.client_ns} gamebed client "
                    + " ".join(f"--server {t}" for t in topo.server_targets())
                    + " --out /tmp/play",
            "destroy": "gamebed launch --destroy"}


def _guest_info(backend) -> list[dict]:
    if backend.name == "libvirt":
        return [{"name": vm.cfg.name, "console": str(vm.console)} for vm in backend.vms]
    return [{"pid": p.pid, "netns": g.netns,
             "console": str(backend.work / f"g{g.index}" / "console.log")}
            for g, p in zip(backend.ctx.topo.guests, backend.guests, strict=True)]


def _backend_info(backend) -> dict:
    if backend.name == "libvirt":
        a = backend.accel
        return {"domain_type": a.domain_type if a else None,
                "accel_reason": a.reason if a else None}
    return {"boot_s": backend.boot_s, **backend.memory}


def _bring_up(bed, mode: str, pdir: Path, runner: Runner) -> list[dict]:
    """Enter the testbed and the mode, check every server answers; on success keep it
    all running."""
    with bed:
        bed.enter_mode(mode, pdir)
        answers: list[dict] = []
        if not runner.dry_run:
            r = runner.run([*in_netns(bed.topo.client_ns),
                            *python_cmd("fpsmodel.ping", *bed.topo.server_targets())],
                           check=False)
            answers = json.loads(r.stdout or "[]")
            if r.returncode != 0:
                raise RuntimeError(f"not every game server answered: {answers or r.stderr}")
        bed.mode_stack.pop_all()  # success: leave it running; the manifest remembers it
        bed.stack.pop_all()
    return answers


def destroy(state_dir: Path | None = None) -> list[str]:
    """Remove everything every launch manifest lists."""
    require_net_admin()
    runner = Runner()
    done = []
    for path in sorted((state_dir or STATE_DIR).glob(f"{LAUNCH_PREFIX}*.json")):
        done += clean_manifest(path, runner)
    return done or ["nothing launched"]
