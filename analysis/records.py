"""Load raw record files (docs/records.md) into DataFrames and join them (no privileges).

Only files are read here, never the testbed, so any results directory can be
re-analysed on any machine.  Everything is vectorised (pandas/numpy).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from fpsmodel import records as schema

KEY = ["guest", "player", "seq"]
_STR_COLS = {"verdict"}
# The columns the input join needs; `load_point(slim=True)` reads only these, which
# keeps a 10-million-input point under 4 GiB.
JOIN_COLUMNS = {
    "server": ("guest", "player", "seq", "kernel_ns", "app_ns", "verdict"),
    "client": ("guest", "player", "seq", "send_ns", "left_ns"),
    "shim": ("guest", "player", "seq", "host_ns"),
}


def _empty(fields: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({f: pd.Series(dtype="string" if f in _STR_COLS else "Int64")
                         for f in fields})


# columns added later; older record files lack them (left_ns: delay from the header's
# send stamp; arrive_ns: the ticks from the time after recv)
OPTIONAL = {"phase", "left_ns", "arrive_ns"}


def _whole_rows(path: Path):
    """The file, less a last row that a killed writer left cut short (no final newline:
    a fault's SIGKILL can land mid-write); the rows before it are whole."""
    with path.open("rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return path
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return path
        f.seek(0)
        data = f.read()
    return pa.BufferReader(data[:data.rfind(b"\n") + 1])


def read_csv(path: Path, fields: tuple[str, ...],
             columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One record file (only `columns` of it, if given); a missing file reads as an empty
    table with the schema.  Integers are nullable Int64: an empty cell means unknown."""
    want = columns or fields
    if not path.exists():
        return _empty(want)
    with path.open(newline="") as f:
        head = next(csv.reader(f), [])
    want = tuple(c for c in want if c in head or c not in OPTIONAL)
    missing = set(fields) - set(head) - OPTIONAL
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (see docs/records.md)")
    types = {f: (pa.string() if f in _STR_COLS else pa.int64()) for f in want}
    table = pacsv.read_csv(_whole_rows(path), convert_options=pacsv.ConvertOptions(
        column_types=types, include_columns=list(want)))
    # self_destruct frees each Arrow column as it is converted: half the peak memory
    return table.to_pandas(self_destruct=True, split_blocks=True,
                           types_mapper={pa.int64(): pd.Int64Dtype(),
                                         pa.string(): pd.StringDtype()}.get)


def _concat(paths: list[Path], fields: tuple[str, ...],
            columns: tuple[str, ...] | None) -> pd.DataFrame:
    frames = [f for f in (read_csv(p, fields, columns) for p in paths) if len(f)]
    if not frames:
        return _empty(columns or fields)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def load_point(point_dir: Path, slim: bool = False) -> dict[str, pd.DataFrame]:
    """All records of one measurement point.  Server files may sit in guest subdirs.
    With `slim`, the per-input tables hold only JOIN_COLUMNS."""
    d = Path(point_dir)
    servers = sorted(d.glob(f"**/{schema.SERVER_INPUTS}"))
    cols = JOIN_COLUMNS if slim else {}
    return {
        "server": _concat(servers, schema.SERVER_INPUT_FIELDS, cols.get("server")),
        "client": read_csv(d / schema.CLIENT_INPUTS, schema.CLIENT_INPUT_FIELDS,
                           cols.get("client")),
        "updates": read_csv(d / schema.CLIENT_UPDATES, schema.CLIENT_UPDATE_FIELDS),
        "sync": read_csv(d / schema.CLOCK_SYNC, schema.CLOCK_SYNC_FIELDS),
        "shim": read_csv(d / schema.SHIM_INPUTS, schema.SHIM_INPUT_FIELDS, cols.get("shim")),
        "players": player_clock(d / schema.PLAYER_CLOCK),
    }


def player_clock(path: Path) -> pd.DataFrame:
    """Players on other machines: each remote shard's exchanges with the host's clock
    (empty where the players ran on the host)."""
    if not path.exists():
        return pd.DataFrame({f: pd.Series(dtype="Int64") for f in schema.PLAYER_CLOCK_FIELDS})
    return pd.read_csv(path, dtype={"machine": "string"})


def player_uncertainty(players: pd.DataFrame, guests: np.ndarray) -> np.ndarray:
    """Each row's player-clock uncertainty (ns): half the larger round trip of its
    shard's chosen exchanges with the host's clock, by which its client's times were
    moved onto the host's (hostside/players.py); 0 for players on the host."""
    out = np.zeros(len(guests))
    if not len(players):
        return out
    chosen = players[players["chosen"] == 1]
    for _shard, rows in chosen.groupby("shard"):
        first, n = int(rows["guest_first"].iloc[0]), int(rows["guests"].iloc[0])
        unc = float(rows["delay_ns"].max()) / 2
        out[(guests >= first) & (guests < first + n)] = max(0.0, unc)
    return out


def load_json(path: Path, default=None):
    return json.loads(Path(path).read_text()) if Path(path).exists() else default


def _pack(df: pd.DataFrame) -> np.ndarray:
    """One int64 per (guest, player, seq): a single sortable key makes the join a numpy
    sort + binary search.  Bounds: guest < 2^23, player < 2^8 (a byte on the wire),
    0 <= seq < 2^32 (6.8 years at 20 inputs/s)."""
    g, p, q = (df[c].to_numpy(dtype="int64", na_value=-1) for c in KEY)
    if len(df) and ((g < 0).any() or (g >= 2**23).any() or (p < 0).any() or (p >= 2**8).any()
                    or (q < 0).any() or (q >= 2**32).any()):
        raise ValueError("guest/player/seq out of the documented range (docs/records.md)")
    return (g << 40) | (p << 32) | q


def _first_per_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys and, for each, the row index of its first record in the file."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    first = np.ones(len(sk), bool)
    first[1:] = sk[1:] != sk[:-1]
    return sk[first], order[first]


def _lookup(want: np.ndarray, df: pd.DataFrame, cols: list[str]) -> dict[str, pd.Series]:
    """For each key in `want`, the first record of `df` with that key (NA where none)."""
    keys, rows = _first_per_key(_pack(df))
    pos = np.searchsorted(keys, want).clip(max=max(len(keys) - 1, 0))
    found = keys[pos] == want if len(keys) else np.zeros(len(want), bool)
    src = rows[pos] if len(keys) else np.zeros(len(want), np.int64)
    out = {}
    for c in cols:
        vals = df[c].to_numpy(dtype="int64", na_value=0)
        miss = df[c].isna().to_numpy()
        v = vals[src] if len(vals) else np.zeros(len(want), np.int64)
        m = ~found | (miss[src] if len(miss) else True)
        out[c] = pd.Series(pd.arrays.IntegerArray(v, m))
    return out


def _offsets(sync: pd.DataFrame, out: pd.DataFrame,
             drifts: bool = True) -> tuple[pd.Series, np.ndarray]:
    """Each input's guest clock offset (server − client, Int64 ns) and its uncertainty.

    The chosen sample before the load (phase 0) gives the offset; where a chosen sample
    after the load (phase 1) exists too, the offset moves linearly between the two in
    client time, following a drifting guest clock.  Uncertainty: half the round trip
    of the chosen samples (the larger of the two).  A guest clock that cannot drift
    (`drifts` False: UML, whose clock source is the host's) has one offset: that of the
    sample with the shortest round trip of both phases, and half that as uncertainty."""
    if "phase" not in sync.columns:
        sync = sync.assign(phase=0)
    guests = out["guest"].to_numpy()
    if not drifts:
        ok = sync[sync["delay_ns"].notna().to_numpy(dtype=bool)]
        best = ok.sort_values("delay_ns", kind="stable").drop_duplicates("guest")
        best = best.set_index("guest")[["offset_ns", "delay_ns"]].astype("float64")
        best = best.reindex(guests)
        return _packed(best["offset_ns"].to_numpy(), best["delay_ns"].to_numpy().clip(min=0) / 2)
    chosen = sync[(sync["chosen"] == 1).fillna(False).to_numpy(dtype=bool)]

    def at(phase: int) -> pd.DataFrame:
        c = chosen[(chosen["phase"] == phase).fillna(False).to_numpy(dtype=bool)]
        c = c.drop_duplicates("guest").set_index("guest")[["offset_ns", "delay_ns", "t1"]]
        return c.astype("float64").reindex(guests)  # a lookup, not a 10M-row merge

    a, b = at(0), at(1)
    off = a["offset_ns"].to_numpy()
    span = (b["t1"] - a["t1"]).to_numpy()
    drift = np.isfinite(b["offset_ns"].to_numpy()) & (span > 0)
    if drift.any():
        # send time relative to the first sample, as an exact integer difference first
        rel = (out["send_ns"].to_numpy(dtype="int64", na_value=0)
               - np.nan_to_num(a["t1"].to_numpy()).astype(np.int64)).astype("float64")
        slope = np.where(drift, (b["offset_ns"].to_numpy() - off) / np.where(drift, span, 1),
                         0.0)
        off = off + slope * rel
    unc = np.fmax(a["delay_ns"].to_numpy(), b["delay_ns"].to_numpy()).clip(min=0) / 2
    return _packed(off, unc)


def _packed(off: np.ndarray, unc: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    mask = ~np.isfinite(off)
    offset = pd.array(np.round(np.nan_to_num(off)).astype(np.int64), dtype="Int64")
    offset[mask] = pd.NA
    return pd.Series(offset), unc


def join_inputs(rec: dict[str, pd.DataFrame], shared_clock: bool = False,
                clock_drifts: bool = True) -> pd.DataFrame:
    """One row per input the client sent: its server and shim records where they exist.

    Duplicates (a retransmitted or replayed datagram) keep the first accepted record,
    so a join never multiplies rows.  Columns: guest, player, seq, send_ns, delivered,
    stale (not delivered: the server refused it as older than one it had),
    server_ns (stamp the server used), app_ns, host_ns (shim stamp, NA without shim),
    clock_offset_ns and clock_uncertainty_ns of that guest.  With `shared_clock`
    (client and server read one kernel clock, as in the namespace backend) the
    offset is exactly 0 and the sync estimate is not applied: it would only add noise.
    With `clock_drifts` False (point.json's `clock_drifts`) one offset per guest holds
    for the whole point (see _offsets).
    Stamps stay nullable Int64: epoch ns (~1.7e18) in float64 would lose ~256 ns.
    """
    client = rec["client"]
    packed = _pack(client)
    crows = np.sort(_first_per_key(packed)[1])  # first record per key, in file order
    want = packed[crows]
    out = pd.DataFrame({"guest": want >> 40, "player": (want >> 32) & 0xFF,
                        "seq": want & 0xFFFFFFFF})
    out["send_ns"] = pd.Series(client["send_ns"].array[crows])
    # when the input really left: encrypted and handed to the kernel (older records: the
    # header's stamp, taken before the input was built)
    left = client["left_ns"] if "left_ns" in client else client["send_ns"]
    out["left_ns"] = pd.Series(left.array[crows]).fillna(out["send_ns"])
    srv = rec["server"]
    ok = srv[(srv["verdict"] == "ok").fillna(False).to_numpy(dtype=bool)]
    stale = srv[(srv["verdict"] == "stale").fillna(False).to_numpy(dtype=bool)]
    out = out.assign(**_lookup(want, ok, ["kernel_ns", "app_ns"]),
                     **_lookup(want, rec["shim"], ["host_ns"]))
    out["delivered"] = out["kernel_ns"].notna()
    # arrived after a later input of its player (reordered on the way): the server's
    # "stale" verdict; counted apart from loss (analysis/point.py input_figures)
    out["stale"] = ~out["delivered"] & _lookup(want, stale, ["kernel_ns"])["kernel_ns"].notna()
    out = out.rename(columns={"kernel_ns": "server_ns"})
    out["clock_offset_ns"], out["clock_uncertainty_ns"] = _offsets(rec["sync"], out,
                                                                   clock_drifts)
    if shared_clock:
        out["clock_offset_ns"] = pd.array(np.zeros(len(out), np.int64))
        out["clock_uncertainty_ns"] = 0.0
    # players on other machines: their times are on the host's clock only to within the
    # player clock's uncertainty, which every stamp compared with them carries
    out["player_clock_uncertainty_ns"] = player_uncertainty(
        rec.get("players", pd.DataFrame()), out["guest"].to_numpy())
    out["clock_uncertainty_ns"] = out["clock_uncertainty_ns"] + out["player_clock_uncertainty_ns"]
    return out


def _diff_float(a: pd.Series, b: pd.Series) -> pd.Series:
    """a − b in exact integer ns, then float64 µs-ready with NaN where either is unknown."""
    return (a - b).astype("float64")


def add_delays(j: pd.DataFrame) -> pd.DataFrame:
    """delay = server stamp − when the input left the client (left_ns); stamp_error =
    server stamp − host arrival stamp, both on the host's clock.  A stamp equal to the
    host's arrival stamp *is* a host-clock value (the host stamp delivered); any other
    kernel stamp, and every app_ns, is on the guest's clock and is moved to the host's
    by the guest's sync offset.  Differences are taken in integer ns before any
    conversion to float."""
    host_clock = (j["server_ns"] == j["host_ns"]).fillna(False).to_numpy(dtype=bool)
    off = j["clock_offset_ns"].fillna(0)
    stamp = j["server_ns"] - off.mask(host_clock, 0)
    app = j["app_ns"] - off
    left = j["left_ns"] if "left_ns" in j else j["send_ns"]
    j["delay_ns"] = _diff_float(stamp, left)  # from when the input left, not its header
    j["app_delay_ns"] = _diff_float(app, left)
    j["stamp_error_ns"] = _diff_float(stamp, j["host_ns"])
    j["app_stamp_error_ns"] = _diff_float(app, j["host_ns"])
    # what the offset's uncertainty does to each stamp: nothing to a host-clock stamp,
    # but for the player clock's (players on other machines) where its delay is taken
    player = (j["player_clock_uncertainty_ns"] if "player_clock_uncertainty_ns" in j
              else 0.0)
    j["stamp_uncertainty_ns"] = np.where(host_clock, player, j["clock_uncertainty_ns"])
    return j


def interarrival_cv(server: pd.DataFrame) -> float:
    """CV of per-player gaps between accepted arrival stamps (≈1 for Poisson)."""
    ok = server[server["verdict"] == "ok"].sort_values(["guest", "player", "kernel_ns"])
    gaps = ok.groupby(["guest", "player"])["kernel_ns"].diff().dropna().astype("float64")
    return float(gaps.std() / gaps.mean()) if len(gaps) > 1 else float("nan")


def received(updates: pd.DataFrame) -> pd.DataFrame:
    """The updates the client received: not those an emulated WAN lost on the way
    (rows with an arrival at the host's edge and no recv_ns; docs/records.md)."""
    return updates[updates["recv_ns"].notna().to_numpy(dtype=bool)]


def update_rates(updates: pd.DataFrame) -> pd.Series:
    """Updates per second per (guest, player), from first to last arrival."""
    g = received(updates).groupby(["guest", "player"])["recv_ns"]
    span = (g.max() - g.min()).astype("float64") / 1e9
    return (g.count() - 1) / span.replace(0, np.nan)


def update_jitter_us(updates: pd.DataFrame) -> float:
    """Standard deviation of update inter-arrival gaps (µs), pooled over players."""
    u = received(updates).sort_values(["guest", "player", "recv_ns"])
    gaps = u.groupby(["guest", "player"])["recv_ns"].diff().dropna().astype("float64")
    return float(gaps.std() / 1e3) if len(gaps) > 1 else float("nan")


def update_loss(updates: pd.DataFrame) -> float:
    """Share of ticks missing between each player's first and last update."""
    g = received(updates).groupby(["guest", "player"])["tick"]
    expected = (g.max() - g.min() + 1).sum()
    got = g.nunique().sum()
    return float(1 - got / expected) if expected else float("nan")
