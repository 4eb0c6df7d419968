"""Guest faults (`--fault`): what breaks, when, and whether it comes back.

A fault is written `KIND:GUEST@SECOND[+RESTART]`: `server:1@4` kills guest 1's game
server 4 s into the load (SIGKILL: a crash, not a clean exit); `server:1@4+2` starts
a new server 2 s later; `guest:0@3` kills the whole guest (the UML kernel's process;
on the namespace backend a guest is its server, so it is the same as `server`).
Parsing and checking need no privileges; `FaultSchedule` carries the faults out
during a point's load through the backend's `fault()` and `recover()` (root, like
the testbed), and writes what happened, when, to the point's faults.json
(docs/records.md).  Availability is defined as in MVMDP (seed 000): (total − failed)
/ total requests, here the player inputs sent to a guest.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fpsmodel.records import write_json

FAULTS_FILE = "faults.json"
FAULT_KINDS = ("server", "guest")
# what each backend can break, and whether it can bring it back
BACKEND_FAULTS: dict[str, dict[str, bool]] = {
    "netns": {"server": True, "guest": True},
    "uml": {"guest": False},
    "libvirt": {},
}
WHY_NOT = {
    "libvirt": "a libvirt guest's records leave it only at the end of a point, so a "
               "destroyed VM would take its records up to the fault with it",
    "uml": "on uml only `guest` (the UML kernel's process) can be killed, and it does "
           "not come back (no +RESTART)",
}
_GRAMMAR = re.compile(r"^(?P<kind>[a-z]+):(?P<guest>\d+)@(?P<at>\d+(\.\d+)?)"
                      r"(\+(?P<restart>\d+(\.\d+)?))?$")
FAULT_HELP = "KIND:GUEST@SECOND[+RESTART], KIND server or guest (e.g. server:0@4+2)"


@dataclass(frozen=True)
class Fault:
    kind: str  # "server" or "guest"
    guest: int  # the guest's index
    at: float  # seconds into the load
    restart_after: float | None = None  # seconds after the fault; None: stays down

    @classmethod
    def parse(cls, text: str) -> Fault:
        m = _GRAMMAR.match(text.strip())
        if not m or m["kind"] not in FAULT_KINDS:
            raise ValueError(f"--fault {text!r}: expected {FAULT_HELP}")
        return cls(m["kind"], int(m["guest"]), float(m["at"]),
                   float(m["restart"]) if m["restart"] else None)

    def text(self) -> str:
        back = f"+{self.restart_after:g}" if self.restart_after is not None else ""
        return f"{self.kind}:{self.guest}@{self.at:g}{back}"


def parse_faults(texts: tuple[str, ...] | list[str]) -> list[Fault]:
    return [Fault.parse(t) for t in texts]


def check_faults(texts: tuple[str, ...], backend: str, duration: float,
                 min_guests: int | None) -> None:
    """Raise ValueError (one line, naming --fault) for a fault the run cannot carry out:
    a backend that cannot do it, a second outside the load, a guest the smallest
    count lacks, or two faults on one guest."""
    faults = parse_faults(texts)
    seen: set[int] = set()
    for f in faults:
        where = f"--fault {f.text()}"
        can = BACKEND_FAULTS.get(backend)
        if can is not None and (f.kind not in can or (f.restart_after is not None
                                                      and not can[f.kind])):
            raise ValueError(f"{where}: not on the {backend} backend: "
                             f"{WHY_NOT.get(backend, 'unsupported')}")
        if not 0 < f.at < duration:
            raise ValueError(f"{where}: the second must lie inside the load (0 < s < "
                             f"--duration {duration:g})")
        if f.restart_after is not None and f.restart_after <= 0:
            raise ValueError(f"{where}: the restart delay must be above 0")
        if min_guests is not None and f.guest >= min_guests:
            raise ValueError(f"{where}: guest {f.guest} does not exist at {min_guests} "
                             f"guest(s) (guests are numbered from 0)")
        if f.guest in seen:
            raise ValueError(f"{where}: one fault per guest")
        seen.add(f.guest)


Breaker = Callable[[Fault], None]


class FaultSchedule:
    """Runs a point's faults in a thread while the client plays: waits for the client's
    start file (its load's first second), then breaks and restores each guest on
    time.  `close()` joins it and writes faults.json; an error in the thread is
    recorded there and raised by `close()`."""

    def __init__(self, faults: list[Fault], start_file: Path, point_dir: Path,
                 fault: Breaker, recover: Breaker, restart_timeout: float = 60.0) -> None:
        self.faults, self.start_file, self.dir = faults, Path(start_file), Path(point_dir)
        self._fault, self._recover, self.timeout = fault, recover, restart_timeout
        self.records = [{"fault": f.text(), "kind": f.kind, "guest": f.guest, "at_s": f.at,
                         "restart_after_s": f.restart_after, "fault_ns": None,
                         "restart_ns": None, "restarted_ns": None} for f in faults]
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def __enter__(self) -> FaultSchedule:
        if self.faults:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sleep_until(self, t_ns: int) -> bool:
        while not self._stop.is_set():
            left = (t_ns - time.time_ns()) / 1e9
            if left <= 0:
                return True
            self._stop.wait(min(left, 0.05))
        return False

    def _run(self) -> None:
        try:
            while not self.start_file.exists():
                if self._stop.wait(0.01):
                    return
            start_ns = int(self.start_file.read_text().split()[0])
            events = sorted([(start_ns + int(f.at * 1e9), 0, i) for i, f in
                             enumerate(self.faults)] +
                            [(start_ns + int((f.at + f.restart_after) * 1e9), 1, i)
                             for i, f in enumerate(self.faults) if f.restart_after])
            for t_ns, back, i in events:
                if not self._sleep_until(t_ns):
                    return
                rec = self.records[i]
                if back:
                    rec["restart_ns"] = time.time_ns()
                    self._recover(self.faults[i])
                    rec["restarted_ns"] = time.time_ns()
                else:
                    rec["fault_ns"] = time.time_ns()
                    self._fault(self.faults[i])
        except BaseException as e:  # noqa: BLE001 - recorded, then raised by close()
            self.error = e

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() or self._thread.ident:
            self._thread.join(self.timeout)
        if self.faults:
            out = {"faults": self.records}
            if self.error is not None:
                out["error"] = f"{type(self.error).__name__}: {self.error}"
            write_json(self.dir / FAULTS_FILE, out)
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"a fault could not be carried out: {err}") from err
