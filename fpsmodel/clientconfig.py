"""What the model game's client is told (no privileges): the servers it plays (Target),
each one's game where a mixed host's differ (Game), the load's defaults and the
client's whole configuration, and the --server argument's form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fpsmodel import wire
from fpsmodel.timing import SyncSample


@dataclass(frozen=True)
class Target:
    """One game server: which guest it is, where it listens, its session."""

    guest: int
    host: str
    port: int
    session: int = 1
    game: Game | None = None  # this server's game where it is not the client's (a mix)


@dataclass(frozen=True)
class Game:
    """How one server's players play: players, inputs/s each, input process, jitter and
    input size (a mixed host's servers play different games)."""

    players: int
    rate_hz: float
    process: str
    jitter: float
    input_bytes: int

    def text(self) -> str:
        """The suffix of a --server argument: @PLAYERS,RATE,PROCESS,JITTER,BYTES."""
        return (f"@{self.players},{self.rate_hz:g},{self.process},{self.jitter:g},"
                f"{self.input_bytes}")


# the model game's load, the paper's: 4 players per server, each sending Poisson inputs
# at 20/s, 10 s per session.  The one owner: gamebed's spec and every CLI read it here.
LOAD_DEFAULTS = {"players": 4, "duration": 10.0, "rate_hz": 20.0, "seed": 1,
                 "input_process": "poisson", "input_jitter": 0.0,
                 "input_bytes": wire.INPUT_PAYLOAD_SIZE}


@dataclass
class ClientConfig:
    targets: list[Target]
    players: int = LOAD_DEFAULTS["players"]  # per target
    duration: float = LOAD_DEFAULTS["duration"]
    rate_hz: float = LOAD_DEFAULTS["rate_hz"]
    seed: int = LOAD_DEFAULTS["seed"]
    out_dir: Path = Path(".")
    # how each player sends (fpsmodel/timing.py input_gaps_ns) and how large an input is
    input_process: str = LOAD_DEFAULTS["input_process"]
    input_jitter: float = LOAD_DEFAULTS["input_jitter"]  # periodic: ± a fraction of a period
    input_bytes: int = LOAD_DEFAULTS["input_bytes"]
    # spin, not sleep, this long before each send: a send on time to a few µs, for a busy
    # host core (docs/workloads.md: what it bought, what it cost)
    spin_us: float = 0.0
    # ...but at most this share of the core: at the offered rate, a spin per send costs
    # rate × spin (150 µs at 3000 inputs/s would be 45% of it); 1.0: no limit
    spin_share: float = 1.0
    priority: int = 0  # SCHED_FIFO priority for the load (0: the default scheduler)
    sync_samples: int = 32  # the best of more tries: guests waiting for a busy CPU
    # a guest whose clock cannot drift keeps its offset from point to point: its best
    # earlier sample (guest -> SyncSample) is carried in, and this many tries check it
    sync_carry: dict[int, SyncSample] = field(default_factory=dict)
    carried_sync_samples: int = 8
    # before the load, every server at once (clock_sync_all), carried samples or none:
    # an unmeasured warm-up's, whose 48 servers one at a time took the sync's 20 s
    sync_all: bool = False
    # after the load (phase 1): to follow a guest clock that drifts; 0 where none does
    end_sync_samples: int = 32
    psk: bytes = wire.DEFAULT_PSK
    started_file: Path | None = None  # gets the load's start (ns) when the load starts
    # a shard of several clients (hostside/shards.py): called once the clock sync is done,
    # it returns when the load starts (CLOCK_REALTIME ns), the same for every shard
    start_gate: Callable[[], int] | None = None
    # who sends and receives during the load: "auto" (the compiled core where it builds,
    # fpsmodel/fastcore.py, else the Python loop), "compiled" or "python"
    core: str = "auto"
    wan: list[str] | None = None  # netem arguments: the WAN emulated here (fpsmodel/wan.py)


def parse_target(text: str, guest: int) -> Target:
    """'HOST:PORT[/SESSION][@PLAYERS,RATE,PROCESS,JITTER,BYTES]' -> Target (the suffix:
    this server's own game, Game.text())."""
    where, _, game = text.partition("@")
    addr, _, session = where.partition("/")
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"server must be HOST:PORT[/SESSION][@GAME], not {text!r}")
    return Target(guest, host, int(port), int(session) if session else 1,
                  _parse_game(game) if game else None)


def _parse_game(text: str) -> Game:
    parts = text.split(",")
    try:
        players, rate, process, jitter, size = parts
        g = Game(int(players), float(rate), process, float(jitter), int(size))
    except ValueError:
        raise ValueError(f"a server's game is PLAYERS,RATE,PROCESS,JITTER,BYTES, not "
                         f"{text!r}") from None
    wire.input_block_size(g.input_bytes)  # in range, or a clear error
    return g
