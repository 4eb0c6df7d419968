"""The `gamebed` commands that play the game alone (no root): play, and the parts a
run starts, each runnable by itself (shim, server, client)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fpsmodel.cli import add_client_args, add_server_args, run_client, run_server
from gamebed.cli.options import add_profile_arg, command
from gamebed.spec import CHOICES, ExperimentSpec, default


def cmd_play(a: argparse.Namespace) -> int:
    """server + client on loopback; writes records and summary

    Smoke test of the game model on 127.0.0.1 (no root).
    """
    from analysis.point import play_summary
    from gamebed.play import play

    given = {"profile": a.profile, "players": a.players, "duration": a.duration,
             "dispatch": a.dispatch, "seed": a.seed, "rate": a.rate}
    spec = ExperimentSpec.from_dict({k: v for k, v in given.items() if v is not None})
    s = play(spec, a.out, play_summary)
    print(json.dumps(s, indent=2))
    print(f"records and summary in {a.out}", file=sys.stderr)
    return 0

def add_play(sub) -> None:
    p = command(sub, "play", cmd_play)
    add_profile_arg(p)
    p.add_argument("--players", type=int, help="players (default: the profile's, "
                                               f"{default('players')} for tsai2009)")
    p.add_argument("--duration", type=float, default=default("duration"),
                   help="seconds (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("play-out"))
    p.add_argument("--dispatch", choices=CHOICES["dispatch"], default=default("dispatch"))
    p.add_argument("--seed", type=int, default=default("seed"))
    p.add_argument("--rate", type=float,
                   help="inputs/s per player (default: the profile's, "
                        f"{default('rate'):g} for tsai2009)")

def add_components(sub) -> None:
    """The parts a run starts, each runnable alone."""
    # the shim parses its own options (python -m hostside.shim --help): its module is
    # loaded only when it runs
    command(sub, "shim", None, "the AF_PACKET timestamping shim (root; its options: gamebed "
                                "shim --help)", add_help=False)
    p = command(sub, "server", run_server, "one game server (what runs inside each guest)")
    add_server_args(p)
    p = command(sub, "client", run_client, "the load generator and latency recorder")
    add_client_args(p)
