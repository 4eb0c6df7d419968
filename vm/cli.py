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
  sudo gamebed clean                                          # remove what a killed run left
"""


def cmd_play(a: argparse.Namespace) -> int:
    from vm.play import play

    s = play(a.players, a.duration, a.out, dispatch=a.dispatch, seed=a.seed, rate=a.rate)
    print(json.dumps(s, indent=2))
    print(f"records and summary in {a.out}", file=sys.stderr)
    return 0


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
