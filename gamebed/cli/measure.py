"""The `gamebed` commands that build and measure (root): run, image, launch, clean.
Each parses only; the run object (gamebed/run.py) wires a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gamebed.cli.options import add_guest_args, add_run_args, command, spec_from_args
from gamebed.spec import MODES, ExperimentSpec


def layers(spec: ExperimentSpec):
    """What vm/ and analysis/ hand a run of `spec` (gamebed/run.py Layers)."""
    import vm
    from analysis.capacity import Sla, search_step
    from analysis.load import machine_speed
    from analysis.point import summarizer
    from gamebed.run import Layers

    search = (search_step(Sla.of_run(spec.to_dict()), spec.design.search_max) if spec.searching
              else None)
    if spec.searching and spec.game.mix:  # a mixed host: every profile under its own SLA
        from analysis.mix import mix_search_step

        search = mix_search_step(spec.to_dict(), spec.design.search_max)
    return Layers(vm.testbeds, summarizer(spec.design.capture), search,
                  vm.boot_s_per_guest(spec.backend), speed=machine_speed)

def cmd_run(a: argparse.Namespace) -> int:
    """the sweep: guest counts x timestamp modes (root)

    Build N guests, play, record, tear down; for every guest count and mode. Writes
    DIR/summary.json, raw records per point, and the report.
    """
    from gamebed.run import Run
    from gamebed.sweep import run_sweep
    from vm import resolve_backend

    if a.max_guests is not None and a.guests != "auto":
        raise ValueError("--max-guests bounds a search: use it with --guests auto")
    spec, why = resolve_backend(spec_from_args(a), dry_run=a.dry_run)
    print(f"backend: {spec.backend} ({why})", file=sys.stderr)
    if a.guests == "auto":
        spec = spec.searching_up_to(a.max_guests, a.repeat)
    summary = run_sweep(Run.start(spec, a.out, layers(spec), a.dry_run, why), a.resume,
                        a.overwrite)
    if a.dry_run:
        return 0
    if not a.no_report:
        from analysis.report import write_report

        paths = write_report(a.out)
        print(f"report: {paths['html']}", file=sys.stderr)
    print(f"results in {a.out} ({len(summary['points'])} points; summary.json)")
    return 0

def cmd_image(a: argparse.Namespace) -> int:
    """build the guest kernel and images (root; cached)

    uml: gamebed's own user-mode Linux kernel (the newest fixed Debian sid linux-source,
    else bookworm's 6.1 with gamebed's fix; about 3 min on 2 cores) and its root disk.
    libvirt: Debian bookworm root (mmdebstrap) + fpsmodel + the patched virtio_net/tun
    modules + the cloud kernel, as a qcow2 base. Each is rebuilt only when an input changes.
    """
    from gamebed.proc import Runner
    from vm import image, uml_image, uml_kernel

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    out = {}
    if a.only in (None, "uml"):
        k = uml_kernel.ensure(progress=say, force=a.force)
        out["uml_kernel"] = {"binary": str(k.binary), **k.info}
        u = uml_image.build(Runner(), progress=say, force=a.force)
        out["uml_root"] = {"dir": str(u.dir), **u.info}
    if a.only in (None, "libvirt"):
        img = image.build(Runner(), progress=say, force=a.force)
        out["libvirt"] = {"dir": str(img.dir), **img.info}
    print(json.dumps(out, indent=2))
    return 0

def cmd_launch(a: argparse.Namespace) -> int:
    """start N game VMs and leave them running (root)

    Boot N game-server VMs behind the host stamper and shim, wait until each server answers,
    print how to reach them. `launch --destroy` removes every launched VM and tap.
    """
    from vm.launch import destroy, launch

    if a.destroy:
        for line in destroy():
            print(line)
        return 0
    from vm import resolve_backend

    spec, _ = resolve_backend(spec_from_args(a).replace(guest_counts=(a.count,),
                                                        modes=(a.mode,)), dry_run=a.dry_run)
    info = launch(spec, dry_run=a.dry_run)
    print(json.dumps(info, indent=2))
    return 0

def cmd_clean(a: argparse.Namespace) -> int:
    """remove what a killed run's manifest lists (root)"""
    from gamebed.manifest import STATE_DIR
    from gamebed.proc import Runner, require_net_admin
    from gamebed.resources import clean_manifest

    paths = a.manifest or sorted(STATE_DIR.glob("*.json"))
    if not paths:
        print(f"nothing to clean: no run manifests in {STATE_DIR}")
        return 0
    require_net_admin()
    for path in paths:
        for line in clean_manifest(Path(path), Runner()):
            print(line)
        print(f"cleaned {path}")
    return 0

def add_run(sub) -> None:
    p = command(sub, "run", cmd_run)
    add_run_args(p)

def add_image(sub) -> None:
    p = command(sub, "image", cmd_image)
    p.add_argument("action", choices=("build",))
    p.add_argument("--only", choices=("uml", "libvirt"), help="build one backend's only")
    p.add_argument("--force", action="store_true",
                   help="rebuild even if cached (the UML kernel: fetch the source anew)")

def add_launch(sub) -> None:
    p = command(sub, "launch", cmd_launch)
    p.add_argument("--count", type=int, default=1, help="how many game VMs")
    p.add_argument("--mode", choices=MODES, default="host",
                   help="timestamp mode of the guests' receive path (default %(default)s)")
    p.add_argument("--destroy", action="store_true", help="destroy what launch started")
    add_guest_args(p)

def add_clean(sub) -> None:
    p = command(sub, "clean", cmd_clean)
    p.add_argument("manifest", nargs="*", type=Path,
                   help="manifest files (default: every one in /run/gamebed)")
