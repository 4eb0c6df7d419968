"""Load raw record files (docs/records.md) into DataFrames and join them (no privileges).

Only files are read here, never the testbed, so any results directory can be
re-analysed on any machine.  Everything is vectorised (pandas/numpy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fpsmodel.records import (
    CLIENT_INPUT_FIELDS,
    CLIENT_INPUTS,
    CLIENT_UPDATE_FIELDS,
    CLIENT_UPDATES,
    CLOCK_SYNC,
    CLOCK_SYNC_FIELDS,
    SERVER_INPUT_FIELDS,
    SERVER_INPUTS,
    SHIM_INPUT_FIELDS,
    SHIM_INPUTS,
)

KEY = ["guest", "player", "seq"]
_STR_COLS = {"verdict"}


def read_csv(path: Path, fields: tuple[str, ...]) -> pd.DataFrame:
    """One record file; a missing file reads as an empty table with the schema."""
    if not path.exists():
        return pd.DataFrame({f: pd.Series(dtype=object if f in _STR_COLS else "int64")
                             for f in fields})
    dtypes = {f: ("string" if f in _STR_COLS else "Int64") for f in fields}
    df = pd.read_csv(path, engine="pyarrow", dtype=dtypes)
    missing = set(fields) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)} (see docs/records.md)")
    return df


def _concat(paths: list[Path], fields: tuple[str, ...]) -> pd.DataFrame:
    frames = [read_csv(p, fields) for p in paths]
    frames = [f for f in frames if len(f)] or frames[:1]
    if not frames:
        return read_csv(Path("/nonexistent"), fields)
    return pd.concat(frames, ignore_index=True)


def load_point(point_dir: Path) -> dict[str, pd.DataFrame]:
    """All records of one measurement point.  Server files may sit in guest subdirs."""
    d = Path(point_dir)
    servers = sorted(d.glob(f"**/{SERVER_INPUTS}"))
    return {
        "server": _concat(servers, SERVER_INPUT_FIELDS),
        "client": read_csv(d / CLIENT_INPUTS, CLIENT_INPUT_FIELDS),
        "updates": read_csv(d / CLIENT_UPDATES, CLIENT_UPDATE_FIELDS),
        "sync": read_csv(d / CLOCK_SYNC, CLOCK_SYNC_FIELDS),
        "shim": read_csv(d / SHIM_INPUTS, SHIM_INPUT_FIELDS),
    }


def load_json(path: Path, default=None):
    return json.loads(Path(path).read_text()) if Path(path).exists() else default


def join_inputs(rec: dict[str, pd.DataFrame], shared_clock: bool = False) -> pd.DataFrame:
    """One row per input the client sent: its server and shim records where they exist.

    Duplicates (a retransmitted or replayed datagram) keep the first accepted record,
    so a join never multiplies rows.  Columns: guest, player, seq, send_ns, delivered,
    server_ns (stamp the server used), app_ns, host_ns (shim stamp, NaN without shim),
    clock_offset_ns and clock_uncertainty_ns of that guest.  With `shared_clock`
    (client and server read one kernel clock, as in the namespace backend) the
    offset is exactly 0 and the sync estimate is not applied: it would only add noise.
    """
    client = rec["client"][KEY + ["send_ns"]].drop_duplicates(KEY)
    srv = rec["server"]
    srv = srv[srv["verdict"] == "ok"][KEY + ["kernel_ns", "app_ns"]].drop_duplicates(KEY)
    out = client.merge(srv, on=KEY, how="left")
    shim = rec["shim"][KEY + ["host_ns"]].drop_duplicates(KEY)
    out = out.merge(shim, on=KEY, how="left")
    out["delivered"] = out["kernel_ns"].notna()
    out = out.rename(columns={"kernel_ns": "server_ns"})
    sync = rec["sync"]
    chosen = sync[sync["chosen"] == 1][["guest", "offset_ns", "delay_ns"]]
    chosen = chosen.drop_duplicates("guest").rename(columns={"offset_ns": "clock_offset_ns"})
    chosen["clock_uncertainty_ns"] = chosen.pop("delay_ns").clip(lower=0) // 2
    out = out.merge(chosen, on="guest", how="left")
    if shared_clock:
        out["clock_offset_ns"] = 0
        out["clock_uncertainty_ns"] = 0
    for c in ("server_ns", "app_ns", "host_ns", "send_ns", "clock_offset_ns",
              "clock_uncertainty_ns"):
        out[c] = out[c].astype("float64")
    return out


def add_delays(j: pd.DataFrame) -> pd.DataFrame:
    """delay = server stamp − client send (client time moved to the server's clock);
    stamp_error = server stamp − host arrival stamp (same clock, no correction)."""
    off = j["clock_offset_ns"].fillna(0.0)
    j["delay_ns"] = j["server_ns"] - (j["send_ns"] + off)
    j["app_delay_ns"] = j["app_ns"] - (j["send_ns"] + off)
    j["stamp_error_ns"] = j["server_ns"] - j["host_ns"]
    j["app_stamp_error_ns"] = j["app_ns"] - j["host_ns"]
    return j


def interarrival_cv(server: pd.DataFrame) -> float:
    """CV of per-player gaps between accepted arrival stamps (≈1 for Poisson)."""
    ok = server[server["verdict"] == "ok"].sort_values(["guest", "player", "kernel_ns"])
    gaps = ok.groupby(["guest", "player"])["kernel_ns"].diff().dropna().astype("float64")
    return float(gaps.std() / gaps.mean()) if len(gaps) > 1 else float("nan")


def update_rates(updates: pd.DataFrame) -> pd.Series:
    """Updates per second per (guest, player), from first to last arrival."""
    g = updates.groupby(["guest", "player"])["recv_ns"]
    span = (g.max() - g.min()).astype("float64") / 1e9
    return (g.count() - 1) / span.replace(0, np.nan)


def update_jitter_us(updates: pd.DataFrame) -> float:
    """Standard deviation of update inter-arrival gaps (µs), pooled over players."""
    u = updates.sort_values(["guest", "player", "recv_ns"])
    gaps = u.groupby(["guest", "player"])["recv_ns"].diff().dropna().astype("float64")
    return float(gaps.std() / 1e3) if len(gaps) > 1 else float("nan")


def update_loss(updates: pd.DataFrame) -> float:
    """Share of ticks missing between each player's first and last update."""
    g = updates.groupby(["guest", "player"])["tick"]
    expected = (g.max() - g.min() + 1).sum()
    got = g.nunique().sum()
    return float(1 - got / expected) if expected else float("nan")
