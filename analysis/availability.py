"""Availability and what a `--fault` cost, from a point's raw files (no privileges).

Availability is MVMDP's (seed 000): (total − failed) / total requests, a request
being a player input and a failure an input no server recorded.  Per guest and per
point.  A fault (faults.json, docs/records.md) splits a faulted guest's lost inputs:

- lost to the fault: inputs sent from one server tick before the kill (what the
  killed server had read but not yet flushed dies with it) until the guest answered
  again, or until the end if it never did;
- lost to load: every other lost input, of every guest.

"Answered again" is the first state update the client received from that guest
after its new server started (the old one is dead by then, so no update of it can
still be on its way); the time until then is counted from the kill.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.records import load_json

FAULTS_FILE = "faults.json"  # gamebed/fault.py writes it
FLUSH_SLACK_NS = 50_000_000  # the server flushes its records once per 20 Hz tick


def by_guest(j: pd.DataFrame) -> pd.DataFrame:
    """sent, delivered, lost and availability per guest."""
    g = j.groupby("guest")["delivered"].agg(["size", "sum"])
    out = pd.DataFrame({"sent": g["size"].astype(int), "delivered": g["sum"].astype(int)})
    out["lost"] = out["sent"] - out["delivered"]
    out["availability"] = out["delivered"] / out["sent"]
    return out


def _answered(updates: pd.DataFrame, guest: int, after_ns: int | None) -> int | None:
    if after_ns is None or updates.empty:
        return None
    recv = updates.loc[(updates["guest"] == guest).fillna(False).to_numpy(bool), "recv_ns"]
    later = recv[(recv > after_ns).fillna(False).to_numpy(bool)]
    return int(later.min()) if len(later) else None


@dataclass(frozen=True)
class FaultFigures:
    """A point's availability (of some of its guests) and what its faults cost: the
    inputs lost to them, apart from load's, and each fault's own row.  `faulted`: the
    point ran faults (faults.json listed some), and only then are `others_min` and
    `error` figures of it."""

    availability: float
    by_guest: dict[str, float]
    inputs_lost_fault: int = 0
    faults: tuple[dict, ...] = ()
    faulted: bool = False
    others_min: float | None = None  # the lowest availability of the guests not faulted
    error: str | None = None  # why a fault could not be carried out

    def row(self) -> dict:
        out = {"availability": self.availability, "availability_by_guest": self.by_guest,
               "inputs_lost_fault": self.inputs_lost_fault, "faults": list(self.faults)}
        if self.faulted:
            out["availability_others_min"] = self.others_min
            if self.error:
                out["fault_error"] = self.error
        return out


def fault_figures(pdir: Path, j: pd.DataFrame, updates: pd.DataFrame,
                  guests: list[int] | None = None) -> FaultFigures:
    """The availability figures of a point (of its `guests`, all where None): always
    per guest; with faults.json also the faults' losses, apart from load's, and each
    fault's time until answered again."""
    per = by_guest(j)
    sent = int(per["sent"].sum())
    base = FaultFigures(float(per["delivered"].sum() / sent) if sent else np.nan,
                        {str(int(g)): round(float(a), 6) for g, a in per["availability"].items()})
    rec = load_json(Path(pdir) / FAULTS_FILE, {}) or {}
    if guests is not None:  # a mixed profile's: the faults of its own guests
        rec = {**rec, "faults": [f for f in rec.get("faults") or ()
                                 if int(f["guest"]) in guests]}
    if not rec.get("faults"):
        return base
    rows = [_fault_cost(f, per, j, updates) for f in rec["faults"]]
    faulted = {f["guest"] for f in rec["faults"]}
    others = [a for k, a in base.by_guest.items() if int(k) not in faulted]
    return replace(base, inputs_lost_fault=sum(r.get("lost_fault", 0) for r in rows),
                   faults=tuple(rows), faulted=True,
                   others_min=min(others) if others else None, error=rec.get("error"))


def _fault_cost(f: dict, per: pd.DataFrame, j: pd.DataFrame, updates: pd.DataFrame) -> dict:
    """One fault's row: carried out or not, the inputs lost to it, when answered again."""
    g, t0 = int(f["guest"]), f.get("fault_ns")
    back = _answered(updates, g, f.get("restarted_ns"))
    if t0 is None:  # the load ended before the fault was due
        return {**_fault_row(f, per, g), "carried_out": False}
    lost = ~j["delivered"].to_numpy(bool)
    send = j["send_ns"].to_numpy(dtype="float64", na_value=np.nan)
    end = back if back is not None else np.inf
    mine = j["guest"].to_numpy() == g
    # lost to the fault: from its time, less the records the server had not flushed yet
    # (a tick's, or, where its tick ran late, since the last input it recorded)
    before = send[mine & ~lost & (send < t0)]
    start = min(t0 - FLUSH_SLACK_NS, before.max() + 1) if len(before) else t0 - FLUSH_SLACK_NS
    in_window = mine & (send >= start) & (send < end)
    n = int((lost & in_window).sum())
    return {**_fault_row(f, per, g), "carried_out": True, "lost_fault": n,
            "answered_again_s": None if back is None else round((back - t0) / 1e9, 3)}


def _fault_row(f: dict, per: pd.DataFrame, g: int) -> dict:
    a = per["availability"].get(g, np.nan)
    return {"fault": f["fault"], "guest": g,
            "availability": None if not np.isfinite(a) else round(float(a), 6)}
