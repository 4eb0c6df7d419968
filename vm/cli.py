"""The `gamebed` command: one entry point, a subcommand per job.

Each subcommand imports its machinery lazily so `gamebed --help` is instant
and unprivileged jobs never load privileged code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fpsmodel.cli import add_client_args, add_server_args, run_client, run_server
from fpsmodel.server import DISPATCH_MODES

EPILOG = """\
typical use:
  gamebed play --players 4 --duration 10 --out /tmp/play    # game smoke test, no root
  sudo gamebed run --out results                              # the capacity sweep
  gamebed report results --sla-delay-ms 2                     # re-read a sweep, new SLA
  sudo gamebed run --backend libvirt --guests 1,2 --duration 10   # the same on real VMs
  sudo gamebed image build                                    # the guest image (cached)
  sudo gamebed launch --count 4 && sudo gamebed launch --destroy  # standing game VMs
  sudo gamebed clean                                          # remove what a killed run left
"""


def cmd_play(a: argparse.Namespace) -> int:
    from vm.play import play

    s = play(a.players, a.duration, a.out, dispatch=a.dispatch, seed=a.seed, rate=a.rate)
    print(json.dumps(s, indent=2))
    print(f"records and summary in {a.out}", file=sys.stderr)
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from vm.runner import run_sweep
    from vm.spec import ExperimentSpec

    over = dict(guests=_ints(a.guests), modes=_strs(a.modes), players=a.players,
                duration=a.duration, placement=a.placement, cpu_cap=a.cpu_cap,
                stamper=a.stamper, seed=a.seed, dispatch=a.dispatch, backend=a.backend,
                libvirt_uri=a.libvirt_uri, accel=a.accel, vm_memory_mib=a.vm_memory)
    spec = (ExperimentSpec.from_toml(a.spec, **over) if a.spec
            else ExperimentSpec().replace(**over))
    summary = run_sweep(spec, a.out, dry_run=a.dry_run)
    if a.dry_run:
        return 0
    if not a.no_report:
        from analysis.report import write_report

        paths = write_report(a.out)
        print(f"report: {paths['html']}", file=sys.stderr)
    print(f"results in {a.out} ({len(summary['points'])} points; summary.json)")
    return 0


def cmd_image(a: argparse.Namespace) -> int:
    from vm.image import build
    from vm.sysutil import Runner

    img = build(Runner(), progress=lambda m: print(m, file=sys.stderr), force=a.force)
    print(json.dumps({"dir": str(img.dir), **img.info}, indent=2))
    return 0


def cmd_launch(a: argparse.Namespace) -> int:
    from vm.launch import destroy, launch

    if a.destroy:
        for line in destroy():
            print(line)
        return 0
    info = launch(a.count, nic=a.nic, uri=a.libvirt_uri, accel=a.accel,
                  memory_mib=a.vm_memory, dry_run=a.dry_run)
    print(json.dumps(info, indent=2))
    return 0


def cmd_clean(a: argparse.Namespace) -> int:
    from vm.resources import STATE_DIR, clean_manifest
    from vm.sysutil import Runner, require_net_admin

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


def cmd_shim(a: argparse.Namespace) -> int:
    from hostside.shim import run

    return run(a)


def cmd_report(a: argparse.Namespace) -> int:
    from analysis.report import write_report

    paths = write_report(a.dir, sla_delay_ms=a.sla_delay_ms, sla_stat=a.sla_stat,
                         sla_loss=a.sla_loss)
    print(paths["md"].read_text())
    print(f"report: {paths['html']}", file=sys.stderr)
    return 0


def _ints(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(x) for x in text.split(",")) if text else None


def _strs(text: str | None) -> tuple[str, ...] | None:
    return tuple(text.split(",")) if text else None


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    p.add_argument("--spec", type=Path, help="TOML experiment spec (flags override it)")
    p.add_argument("--guests", help="guest counts, e.g. 1,2,4,8,16,32 (the default)")
    p.add_argument("--modes", help="timestamp modes: guest,host (default both)")
    p.add_argument("--players", type=int, help="players per guest (default 4)")
    p.add_argument("--duration", type=float, help="seconds of play per point (default 10)")
    p.add_argument("--placement", choices=("restricted", "dynamic"),
                   help="restricted (default): shim on CPU 0, guests on the rest; "
                        "dynamic: everyone floats")
    p.add_argument("--cpu-cap", type=float, help="per-guest CPU share via cgroup cpu quota")
    p.add_argument("--stamper", choices=("afpacket", "bpf"),
                   help="who appends host stamps: the tc BPF stamper (default) or the "
                        "AF_PACKET shim itself")
    p.add_argument("--backend", choices=("netns", "libvirt"),
                   help="netns (default): guests are network namespaces, fast; libvirt: "
                        "real VMs (gamebed image, patched virtio_net in host mode)")
    p.add_argument("--libvirt-uri", help="libvirt URI (default qemu:///system; "
                                         "qemu+ssh://HOST/system for another host)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="VM accelerator; auto (default) uses KVM where a guest boots with it")
    p.add_argument("--vm-memory", type=int, metavar="MIB", help="memory per VM (default 160)")
    p.add_argument("--dispatch", choices=DISPATCH_MODES, help="game server event dispatch")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--dry-run", action="store_true",
                   help="print the privileged commands instead of running them")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gamebed", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="How many game-server VMs fit on one host before players feel it? "
                    "gamebed runs a model FPS game in N guests and measures the delay "
                    "of player inputs with guest-kernel and host-supplied timestamps.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("play", help="server + client on loopback; writes records and summary",
                       description="Smoke test of the game model on 127.0.0.1 (no root).")
    p.add_argument("--players", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0, help="seconds (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("play-out"))
    p.add_argument("--dispatch", choices=DISPATCH_MODES, default="epoll")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=20.0, help="mean inputs/s per player")
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("run", help="the sweep: guest counts x timestamp modes (root)",
                       description="Build N guests, play, record, tear down; for every "
                                   "guest count and mode. Writes DIR/summary.json, raw "
                                   "records per point, and the report.")
    add_run_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="analyse a results directory (no root)",
                       description="Recompute statistics, capacity and plots from raw "
                                   "records only.")
    p.add_argument("dir", type=Path)
    p.add_argument("--sla-delay-ms", type=float, default=1.0)
    p.add_argument("--sla-stat", choices=("mean", "p95", "p99"), default="mean")
    p.add_argument("--sla-loss", type=float, default=0.01)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("image", help="build the game guest image (root; cached)",
                       description="Debian bookworm root (mmdebstrap) + fpsmodel + the "
                                   "patched virtio_net/tun modules + the cloud kernel, as a "
                                   "qcow2 base. Rebuilt only when an input changes.")
    p.add_argument("action", choices=("build",))
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("launch", help="start N game VMs and leave them running (root)",
                       description="Boot N game-server VMs behind the host stamper and shim, "
                                   "wait until each server answers, print how to reach them. "
                                   "`launch --destroy` removes every launched VM and tap.")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--destroy", action="store_true", help="destroy what launch started")
    p.add_argument("--nic", choices=("patched", "stock"), default="patched",
                   help="guest NIC driver: patched virtio_net (host stamps) or stock")
    p.add_argument("--libvirt-uri", default="qemu:///system")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--vm-memory", type=int, default=160, metavar="MIB")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser("clean", help="remove what a killed run's manifest lists (root)")
    p.add_argument("manifest", nargs="*", type=Path,
                   help="manifest files (default: every one in /run/gamebed)")
    p.set_defaults(func=cmd_clean)

    from hostside.shim import add_args as add_shim_args

    p = sub.add_parser("shim", help="the AF_PACKET timestamping shim (root)")
    add_shim_args(p)
    p.set_defaults(func=cmd_shim)

    p = sub.add_parser("server", help="one game server (what runs inside each guest)")
    add_server_args(p)
    p.set_defaults(func=run_server)
    p = sub.add_parser("client", help="the load generator and latency recorder")
    add_client_args(p)
    p.set_defaults(func=run_client)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except (PermissionError, FileNotFoundError, ValueError, RuntimeError, TimeoutError) as e:
        print(f"gamebed {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gamebed {args.cmd}: interrupted; cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
