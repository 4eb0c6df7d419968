"""What a run with players on other machines must show against a local run of the same
seed (no privileges; reads record files only): the checks the --players-on tests share.

- the same inputs sent, and the same received by the servers;
- every input's host stamp no earlier than when it left the client (on the host's
  clock), less the recorded player-clock uncertainty;
- the delay no different from the local run's beyond that uncertainty plus the path's
  own extra length (the rule is `DelayCheck`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from fpsmodel.records import PLAYER_CLOCK


def points(run: Path) -> dict[str, Path]:
    """A run's point directories by mode."""
    out = {}
    for d in sorted((run / "points").iterdir()):
        if (d / "point.json").exists():
            out[json.loads((d / "point.json").read_text())["mode"]] = d
    return out


def summary(run: Path) -> dict[str, dict]:
    """summary.json's points by mode."""
    return {p["mode"]: p for p in json.loads((run / "summary.json").read_text())["points"]}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def key(row: dict) -> tuple[int, int, int]:
    return int(row["guest"]), int(row["player"]), int(row["seq"])


def sent(point: Path) -> set:
    return {key(r) for r in _rows(point / "client_inputs.csv")}


def received(point: Path) -> set:
    return {key(r) for f in sorted(point.glob("**/server_inputs.csv")) for r in _rows(f)
            if r["verdict"] == "ok"}


def inputs_differ(remote: Path, local: Path) -> dict[str, str]:
    """Per mode, how the remote run's inputs differ from the local run's: the inputs
    sent, then those the servers took (an empty dict: the same in every mode)."""
    out = {}
    for mode, r in points(remote).items():
        loc = points(local)[mode]
        if sent(r) != sent(loc):
            out[mode] = f"sent: {len(sent(r) ^ sent(loc))} of {len(sent(r))} differ"
        elif received(r) != received(loc):
            out[mode] = f"received: {len(received(r) ^ received(loc))} differ"
    return out


def player_uncertainty_ns(point: Path) -> dict[int, int]:
    """Each remote shard's player-clock uncertainty (ns), by shard: half the larger
    round trip of its chosen exchanges with the host's clock."""
    out: dict[int, int] = {}
    for r in _rows(point / PLAYER_CLOCK):
        if r["chosen"] == "1":
            out[int(r["shard"])] = max(out.get(int(r["shard"]), 0), int(r["delay_ns"]) // 2)
    return out


def offsets_ns(point: Path) -> list[int]:
    """The chosen offsets (host − player) of every shard and phase."""
    return [int(r["offset_ns"]) for r in _rows(point / PLAYER_CLOCK) if r["chosen"] == "1"]


def early_stamps(point: Path) -> list[tuple]:
    """Inputs whose host stamp is earlier than when they left the client, on the host's
    clock, by more than their shard's player-clock uncertainty (none, if the records
    were moved onto the host's clock right)."""
    unc = player_uncertainty_ns(point)
    shard_of = {}
    for r in _rows(point / PLAYER_CLOCK):
        for g in range(int(r["guest_first"]), int(r["guest_first"]) + int(r["guests"])):
            shard_of[g] = int(r["shard"])
    left = {key(r): int(r["left_ns"]) for r in _rows(point / "client_inputs.csv")}
    out = []
    for r in _rows(point / "shim_inputs.csv"):
        k = key(r)
        if k in left and int(r["host_ns"]) < left[k] - unc[shard_of[k[0]]]:
            out.append((k, int(r["host_ns"]) - left[k]))
    return out


def min_sync_rtt_ns(point: Path) -> int:
    """The shortest round trip of the client's clock-sync exchanges with its servers."""
    return min(int(r["delay_ns"]) for r in _rows(point / "clock_sync.csv") if r["delay_ns"])


@dataclass(frozen=True)
class DelayCheck:
    """The rule, on the delay's floor (its minimum over the point: the path's own
    length, before any queueing, which a longer path changes): the remote run's floor
    less the local run's lies within [-u, extra + u], u the player clock's uncertainty,
    extra how much longer the remote path's shortest clock-sync round trip to the
    servers is than the local one's (clock-free: each is a difference on one clock).
    The way out is no longer than that, as the way back is no shorter than the local
    way back (it is the same path and more).  A wrong offset moves the floor by itself."""

    remote_floor_us: float
    local_floor_us: float
    uncertainty_us: float
    extra_us: float

    @property
    def holds(self) -> bool:
        diff = self.remote_floor_us - self.local_floor_us
        return -self.uncertainty_us <= diff <= self.extra_us + self.uncertainty_us


def delays_agree(remote_run: Path, local_run: Path, mode: str) -> DelayCheck:
    r, loc = points(remote_run)[mode], points(local_run)[mode]
    extra = (min_sync_rtt_ns(r) - min_sync_rtt_ns(loc)) / 1e3
    return DelayCheck(summary(remote_run)[mode]["delay_min_us"],
                      summary(local_run)[mode]["delay_min_us"],
                      max(player_uncertainty_ns(r).values()) / 1e3, max(0.0, extra))
