"""The `gamebed` command: one entry point, a subcommand per job (no privileges of its
own; a command that needs root says so).

The parser is here; each command is in the module of its kind, which imports its
machinery lazily so `gamebed --help` is instant and unprivileged jobs never load
privileged code:

    gamebed/cli/options.py   the flags that make a spec, shared by run and launch
    gamebed/cli/measure.py   run, image, launch, clean (root)
    gamebed/cli/read.py      report, predict, pcap (finished runs; no root)
    gamebed/cli/play.py      play, and the parts a run starts (shim, server, client)
"""

from __future__ import annotations

import argparse
import logging
import sys

from gamebed.cli import measure, play, read
from gamebed.cli.options import spec_from_args

__all__ = ["build_parser", "main", "spec_from_args"]

EPILOG = """\
typical use:
  gamebed play --players 4 --duration 10 --out /tmp/play    # game smoke test, no root
  sudo gamebed run --out results                              # the capacity sweep
  gamebed report results --sla-delay-ms 2                     # re-read a sweep, new SLA
  gamebed report runA runB --out cmp                          # runs side by side
  gamebed predict runA --guest-cpus 3 --players-total 10000   # another host, a fleet
  sudo gamebed run --backend libvirt --guests 1,2 --duration 10   # the same on real VMs
  sudo gamebed image build                                    # the guest image (cached)
  sudo gamebed launch --count 4 && sudo gamebed launch --destroy  # standing game VMs
  sudo gamebed clean                                          # remove what a killed run left
"""

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gamebed", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="How many game-server VMs fit on one host before players feel it? "
                    "gamebed runs a model FPS game in N guests and measures the delay "
                    "of player inputs with guest-kernel and host-supplied timestamps.")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in (play.add_play, measure.add_run, read.add_report, read.add_predict,
                read.add_pcap, measure.add_image, measure.add_launch, measure.add_clean,
                play.add_components):
        add(sub)
    return ap

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["shim"]:  # the shim's options are its own (python -m hostside.shim)
        from hostside.shim import main as shim_main

        return shim_main(argv[1:])
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
