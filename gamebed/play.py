"""`gamebed play`: one server and one client on loopback, a smoke test of the game.

No privileges: the server is a child process on 127.0.0.1, the client runs here.
The summary comes from the analysis the command hands in (analysis.point.play_summary).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from fpsmodel.client import GameClient
from fpsmodel.clientconfig import ClientConfig, Target
from fpsmodel.records import write_json
from gamebed.proc import Process, Runner, python_cmd, wait_for
from gamebed.spec import ExperimentSpec


def play(spec: ExperimentSpec, out: Path, summarize: Callable[[Path, dict, str], dict],
         runner: Runner | None = None) -> dict:
    """One server and one client of `spec`'s load (its profile's players, tick rate,
    input process and size; duration, seed, dispatch) on loopback; their records and
    `summarize`'s summary go to `out`."""
    game, tune = spec.game, spec.tuning
    players, duration, dispatch = game.players, spec.design.duration, game.dispatch
    seed, rate = spec.design.seed, game.rate
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runner = runner or Runner()
    ready = out / "server.port"
    ready.unlink(missing_ok=True)
    srv_args = python_cmd("fpsmodel", "server", "--port", 0, "--out", out,
                          "--ready-file", ready, *spec.server_args())
    with Process(srv_args, runner, log_path=out / "server.log", name="game server") as srv:
        wait_for(lambda: ready.exists() or not srv.alive(), 15, "the game server to listen")
        if not ready.exists():
            raise RuntimeError(f"game server exited early; see {out / 'server.log'}")
        port = int(ready.read_text())
        cfg = ClientConfig(targets=[Target(0, "127.0.0.1", port)], players=players,
                           duration=duration, rate_hz=rate, seed=seed, out_dir=out,
                           input_process=game.input_process, input_jitter=game.input_jitter,
                           input_bytes=game.input_bytes, spin_us=tune.client_spin_us,
                           spin_share=tune.client_spin_share, priority=tune.client_priority)
        client = GameClient(cfg, progress=lambda m: print(m, file=sys.stderr, flush=True)).run()
        write_json(out / "client_summary.json", client)
    summary = summarize(out, client, dispatch)
    write_json(out / "summary.json", summary)
    return summary
