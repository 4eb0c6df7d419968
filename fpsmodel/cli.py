"""Command-line front of the game server and client, and of the host clock players on
other machines measure themselves against (`clockd`) (no privileges).

Kept free of pandas and friends so a guest image, or a player machine, needs only
python3 and `cryptography`: `python3 -m fpsmodel server ...` runs the server there.
`gamebed server` and `gamebed client` are these same parsers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fpsmodel.client import GameClient
from fpsmodel.clientconfig import LOAD_DEFAULTS, ClientConfig, parse_target
from fpsmodel.clocksync import read_sync_carry
from fpsmodel.hostclock import HostClock, parse_address
from fpsmodel.hostclock import serve as serve_clock
from fpsmodel.records import write_json
from fpsmodel.server import DISPATCH_MODES, ServerConfig, serve
from fpsmodel.timing import INPUT_PROCESSES
from fpsmodel.wire import GAME_PORT, INPUT_PAYLOAD_SIZE


def add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=GAME_PORT,
                   help="UDP port (default %(default)s); 0 picks a free one")
    p.add_argument("--session", type=int, default=1, help="game session id (keys the AEAD)")
    p.add_argument("--guest", type=int, default=0, help="guest number written in the records")
    p.add_argument("--max-players", type=int, default=64)
    p.add_argument("--tick-hz", type=float, default=20.0, help="state updates per second")
    p.add_argument("--dispatch", choices=DISPATCH_MODES, default="epoll",
                   help="event dispatch: epoll, poll or select (default %(default)s)")
    p.add_argument("--duration", type=float, help="seconds to run (default: until SIGTERM)")
    p.add_argument("--idle-exit", type=float, metavar="S",
                   help="stop S seconds after the last input, once inputs came (VM guests)")
    p.add_argument("--work-us", type=float, default=0.0, metavar="US",
                   help="simulated game logic: CPU microseconds per player per tick "
                        "(default 0, as the paper's model server)")
    p.add_argument("--input-bytes", type=int, default=INPUT_PAYLOAD_SIZE, metavar="N",
                   help="the game's input size, UDP payload (default %(default)s, the "
                        "paper's); inputs of another size are dropped as bad_size")
    p.add_argument("--out", type=Path, help="directory for server_inputs.csv and summary")
    p.add_argument("--ready-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--next-file", type=Path, metavar="PATH",
                   help="serve session after session: SIGUSR1 ends this one's records, "
                        "SIGUSR2 starts the next one's in the directory PATH names")


def server_config(a: argparse.Namespace) -> ServerConfig:
    """The server's configuration from its command line."""
    return ServerConfig(host=a.host, port=a.port, session=a.session, guest=a.guest,
                        max_players=a.max_players, tick_hz=a.tick_hz, dispatch=a.dispatch,
                        duration=a.duration, idle_exit=a.idle_exit, next_file=a.next_file,
                        out_dir=a.out, work_us=a.work_us, input_bytes=a.input_bytes)


def run_server(a: argparse.Namespace) -> int:
    summary = serve(server_config(a), a.ready_file)
    print(json.dumps(summary, sort_keys=True), file=sys.stderr)
    return 0


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", required=True, metavar="HOST:PORT[/SESSION]",
                   help="a game server; repeat for many (guest numbers follow the order)")
    d = LOAD_DEFAULTS
    p.add_argument("--players", type=int, default=d["players"],
                   help="players per server (default %(default)s)")
    p.add_argument("--duration", type=float, default=d["duration"],
                   help="seconds of play (default %(default)s)")
    p.add_argument("--rate", type=float, default=d["rate_hz"],
                   help="inputs/s per player: the mean of a Poisson process, a periodic "
                        "one's rate, or the server's tick rate for per_tick (default "
                        "%(default)s)")
    p.add_argument("--input-process", choices=INPUT_PROCESSES, default=d["input_process"],
                   help="how each player sends (default %(default)s)")
    p.add_argument("--input-jitter", type=float, default=d["input_jitter"], metavar="F",
                   help="periodic, per_tick: each send within ±F/2 of a period of its slot "
                        "(default %(default)s)")
    p.add_argument("--input-bytes", type=int, default=d["input_bytes"], metavar="N",
                   help="input size, UDP payload (default %(default)s)")
    p.add_argument("--spin-us", type=float, default=0.0, metavar="US",
                   help="spin, not sleep, the last US before each send: on time to a few "
                        "µs at the cost of a busier core (default 0)")
    p.add_argument("--spin-share", type=float, default=1.0, metavar="F",
                   help="spin at most F of the core: the spin per send is at most F/rate "
                        "at the offered rate (default 1: no limit)")
    p.add_argument("--realtime", type=int, default=0, metavar="PRIO",
                   help="run SCHED_FIFO at PRIO (root), so a due send preempts other work "
                        "on its CPU (default 0: the default scheduler)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="seed of the input schedules (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="directory for the client records")
    p.add_argument("--guest-base", type=int, default=0, help="guest number of the first server")
    p.add_argument("--wan", metavar="NETEM",
                   help='emulate a WAN here: "delay D [J] loss P%% rate R" (fpsmodel/wan.py)')
    p.add_argument("--started-file", type=Path,
                   help="write the load's start (CLOCK_REALTIME ns) here when it starts")
    p.add_argument("--end-sync", type=int, default=32, metavar="N",
                   help="clock-sync tries per server after the load, to follow clocks "
                        "that drift (default %(default)s; 0: none, for servers on the "
                        "client's clock)")
    p.add_argument("--sync-carry", type=Path, metavar="CSV",
                   help="each server's best clock-sync sample from an earlier point "
                        "(guest,t1,t2,t3,t4), for servers whose clock cannot drift: kept "
                        "where this point's tries agree with it")
    p.add_argument("--sync-all", action="store_true",
                   help="before the load, sync with every server at once, not one at a "
                        "time: quicker where dozens of guests share a busy CPU, each try "
                        "a little noisier (gamebed's unmeasured warm-up loads)")
    p.add_argument("--core", choices=("auto", "compiled", "python"), default="auto",
                   help="who sends and receives during the load: the compiled core "
                        "(fpsmodel/fastclient.c, built on first use) or the Python loop; "
                        "auto: the core where it builds (default)")
    p.add_argument("--gate", action="store_true",
                   help="a shard of several clients: once synced, print the line "
                        f"'{GATE_READY}' and start the load at the CLOCK_REALTIME ns given "
                        "on stdin as 'go NS' (every shard together)")
    p.add_argument("--host-clock", metavar="HOST:PORT",
                   help="players on another machine: measure this machine's clock against "
                        "the host under test's (its `clockd`) before and after the load, "
                        "record it (host_clock.csv) and take the gate's instant as the "
                        "host's; HOST `ssh`: the address this ssh session came from")
    p.add_argument("--carried-sync", type=int, default=8, metavar="N",
                   help="clock-sync tries for a server with a carried sample (default "
                        "%(default)s; --sync-samples for the others)")
    p.add_argument("--sync-samples", type=int, default=32, metavar="N",
                   help="clock-sync tries before the load for a server with no carried "
                        "sample (default %(default)s)")


GATE_READY = "fpsmodel client: synced"


def stdin_gate() -> int:
    """The shard's side of the start gate: say it is synced (stdout, which the host side
    reads from the shard's log, over ssh too), and read when to start from stdin."""
    print(GATE_READY, flush=True)
    line = sys.stdin.readline().split()
    if len(line) != 2 or line[0] != "go" or not line[1].isdigit():
        raise SystemExit(f"fpsmodel client: the start gate wants 'go NS' on stdin, got "
                         f"{' '.join(line) or 'nothing'!r}")
    return int(line[1])


def run_client(a: argparse.Namespace) -> int:
    clock = HostClock(parse_address(a.host_clock), a.out) if a.host_clock else None
    gate = stdin_gate if a.gate else None
    if clock is not None and not a.gate:
        clock.measure(phase=0)
    elif clock is not None:
        def gate() -> int:  # the host's clock measured once synced, then the host's start
            clock.measure(phase=0)
            return clock.player_start(stdin_gate())
    targets = [parse_target(s, a.guest_base + i) for i, s in enumerate(a.server)]
    cfg = ClientConfig(targets=targets, players=a.players, duration=a.duration, rate_hz=a.rate,
                       seed=a.seed, out_dir=a.out, started_file=a.started_file,
                       wan=a.wan.split() if a.wan else None, end_sync_samples=a.end_sync,
                       input_process=a.input_process, input_jitter=a.input_jitter,
                       input_bytes=a.input_bytes, spin_us=a.spin_us, spin_share=a.spin_share,
                       priority=a.realtime,
                       sync_carry=read_sync_carry(a.sync_carry) if a.sync_carry else {},
                       carried_sync_samples=a.carried_sync, sync_all=a.sync_all,
                       sync_samples=a.sync_samples,
                       start_gate=gate, core=a.core)
    summary = GameClient(cfg, progress=lambda m: print(m, file=sys.stderr, flush=True)).run()
    if clock is not None:
        clock.measure(phase=1)
        summary["host_clock"] = clock.summary()
        clock.close()
    write_json(a.out / "client_summary.json", summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fpsmodel",
                                 description="The model FPS game server and client.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_server_args(sub.add_parser("server", help="run one game session"))
    add_client_args(sub.add_parser("client", help="drive players against servers"))
    clockd = sub.add_parser("clockd", help="answer players' host-clock exchanges (the host "
                            "under test's side of --host-clock) until killed")
    clockd.add_argument("--port", type=int, default=0, help="UDP port (default: a free one)")
    clockd.add_argument("--ready-file", type=Path, help="write the bound port here")
    a = ap.parse_args(argv)
    if a.cmd == "clockd":
        serve_clock(a.port, a.ready_file)
        return 0
    return run_server(a) if a.cmd == "server" else run_client(a)
