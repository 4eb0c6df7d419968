"""The host's end of a UML guest's control link (no privileges of its own: it writes to
a guest process's stdin pipe and reads the console log that process writes).

One JSON request per line goes to the guest's console input:

    {"id": 3, "op": "run", "mode": "host", "idle_exit": 0}

and the guest's agent (vm/guest/uml_agent.py) answers each with one line on its
console output, once the request is done (a `run` once its game server is ready, a
`flush` once the point's records are synced to the host):

    GAMEBED-REPLY {"id": 3, "ok": true, "mode": "host"}
    GAMEBED-REPLY {"id": 4, "error": "a point is running"}

An error reply raises GuestError on the host at once, with the agent's words.  The
console log is read as it grows, each byte once (ConsoleTail); the agent's boot line
(`GAMEBED-AGENT up`) comes the same way, and where a guest stopped, the console's
lines that say why (`reason_lines`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPLY = "GAMEBED-REPLY "
AGENT_UP = "GAMEBED-AGENT"


REASON = re.compile(r"panic|fail|error|fatal|refused|not syncing|cannot|unable|^gamebed:", re.I)


def reason_lines(console: str, most: int = 3) -> list[str]:
    """The console lines that say why a UML kernel stopped: those before the call trace
    that name a panic, failure or error, the last `most` of them."""
    lines = []
    for ln in console.splitlines():
        s = ln.strip()
        if re.match(r"(Call Trace|Stack:|RIP:|RSP:|Modules linked in)", s):
            break  # the trace's own lines say nothing a reader can act on
        if REASON.search(s):
            lines.append(s)
    return lines[-most:]


class GuestError(RuntimeError):
    """A guest's agent refused or failed a request: its own words."""


class ConsoleTail:
    """The complete lines a console log gained since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = Path(path), 0, b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:  # not written yet
            return []
        self.offset += len(data)
        *done, self.partial = (self.partial + data).split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in done]


class GuestLink:
    """Requests to one guest's agent and its replies, matched by id."""

    def __init__(self, index: int, send: Callable[[str], None], console: Path) -> None:
        self.index, self.send = index, send
        self.tail = ConsoleTail(console)
        self.up = False  # the agent said it runs
        self.next_id = 0
        self.ops: dict[int, str] = {}  # requests without a reply yet: id -> op
        self.replies: dict[int, dict] = {}

    def request(self, op: str, **args: object) -> int:
        """Send one request; its id, for `reply`."""
        self.next_id += 1
        self.ops[self.next_id] = op
        self.send(json.dumps({"id": self.next_id, "op": op, **args}))
        return self.next_id

    def poll(self) -> None:
        """Read what the console gained: the agent's boot line and replies."""
        for line in self.tail.lines():
            if AGENT_UP in line:
                self.up = True
            at = line.find(REPLY)
            if at < 0:
                continue
            try:
                reply = json.loads(line[at + len(REPLY):])
            except ValueError:  # a line the kernel's own output broke: its id is lost
                continue
            if isinstance(reply, dict) and reply.get("id") in self.ops:
                self.replies[reply["id"]] = reply

    def reply(self, rid: int) -> dict | None:
        """Request `rid`'s reply once it came (None before); its error raises."""
        if rid not in self.replies:
            self.poll()
        r = self.replies.pop(rid, None)
        if r is None:
            return None
        op = self.ops.pop(rid)
        if r.get("error"):
            raise GuestError(f"UML guest {self.index}: its agent refused `{op}`: "
                             f"{r['error']}")
        return r


def await_replies(asked: dict[int, tuple[GuestLink, int]], timeout: float, what: str,
                  alive: Callable[[int], None]) -> dict[int, dict]:
    """Every guest's reply to its request (`asked`: guest -> (link, id)), polling each
    console; an error reply raises at once, and `alive(i)` raises for a guest whose
    process has gone.  TimeoutError after `timeout` s names the guests still silent."""
    got: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(asked):
        for i, (link, rid) in asked.items():
            if i not in got:
                r = link.reply(rid)
                if r is not None:
                    got[i] = r
                else:
                    alive(i)
        if len(got) == len(asked):
            break
        if time.monotonic() > deadline:
            silent = sorted(set(asked) - set(got))
            raise TimeoutError(f"UML guest(s) {silent} did not answer within {timeout:.0f} "
                               f"s: {what}")
        time.sleep(0.05)
    return got


def await_up(links: Iterable[GuestLink], timeout: float, alive: Callable[[int], None],
             status: Callable[[int, int], None]) -> None:
    """Until every link's agent said it runs; `status(done, total)` as they come."""
    links = list(links)
    deadline = time.monotonic() + timeout
    while True:
        for link in links:
            if not link.up:
                link.poll()
                if not link.up:
                    alive(link.index)
        up = sum(link.up for link in links)
        status(up, len(links))
        if up == len(links):
            return
        if time.monotonic() > deadline:
            silent = [link.index for link in links if not link.up]
            raise TimeoutError(f"UML guest(s) {silent} did not boot within {timeout:.0f} s")
        time.sleep(0.2)
