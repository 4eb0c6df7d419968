"""The UML guests' control link (vm/guestlink.py, vm/guest/uml_agent.py): one JSON
request per line, one reply per request, an error reply raised on the host at once
with the agent's words (no privileges: a console file and the agent's request loop)."""

import io
import json
import time
from contextlib import redirect_stdout

import pytest

from vm.guestlink import ConsoleTail, GuestError, GuestLink, await_replies


def test_the_console_is_read_as_it_grows_each_line_once(tmp_path):
    log = tmp_path / "console.log"
    tail = ConsoleTail(log)
    assert tail.lines() == []  # not written yet
    log.write_bytes(b"booting\nGAMEBED-AGENT up 1.2\nhalf a ")
    assert tail.lines() == ["booting", "GAMEBED-AGENT up 1.2"]
    with log.open("ab") as f:
        f.write(b"line\r\n")
    assert tail.lines() == ["half a line"]
    assert tail.lines() == []


def console_link(tmp_path, index=0):
    sent: list[str] = []
    log = tmp_path / f"console{index}.log"
    log.touch()
    return GuestLink(index, sent.append, log), sent, log


def answer(log, line: str) -> None:
    with log.open("a") as f:
        f.write(line + "\n")


def test_a_reply_answers_its_request_by_id(tmp_path):
    link, sent, log = console_link(tmp_path)
    rid = link.request("run", mode="host", idle_exit=0)
    assert json.loads(sent[0]) == {"id": rid, "op": "run", "mode": "host", "idle_exit": 0}
    assert link.reply(rid) is None  # not answered yet
    answer(log, "[   1.0] some kernel line")
    answer(log, 'GAMEBED-REPLY {"id": 99, "ok": true}')  # no such request: ignored
    answer(log, f'GAMEBED-REPLY {{"id": {rid}, "ok": true, "mode": "host"}}')
    assert link.reply(rid) == {"id": rid, "ok": True, "mode": "host"}
    assert link.ops == {}


def test_an_error_reply_raises_at_once_with_the_agents_words(tmp_path):
    """Of two guests, one refuses: the wait raises on its reply, well before the other
    answers or the timeout (600 s) would."""
    a, _, log_a = console_link(tmp_path, 0)
    b, _, _ = console_link(tmp_path, 1)
    asked = {0: (a, a.request("run", mode="host", idle_exit=0)),
             1: (b, b.request("run", mode="host", idle_exit=0))}
    answer(log_a, 'GAMEBED-REPLY {"id": 1, "error": "a point is running"}')
    t0 = time.monotonic()
    with pytest.raises(GuestError, match=r"UML guest 0: its agent refused `run`: "
                                         r"a point is running"):
        await_replies(asked, 600.0, "their servers' start", lambda i: None)
    assert time.monotonic() - t0 < 60.0  # raised on the reply, not at the timeout


def test_a_silent_guest_times_out_naming_itself(tmp_path):
    a, _, log_a = console_link(tmp_path, 0)
    b, _, _ = console_link(tmp_path, 1)
    asked = {0: (a, a.request("flush")), 1: (b, b.request("flush"))}
    answer(log_a, 'GAMEBED-REPLY {"id": 1, "ok": true, "rc": 0}')
    with pytest.raises(TimeoutError, match=r"UML guest\(s\) \[1\] did not answer"):
        await_replies(asked, 0.2, "their records written", lambda i: None)


def test_a_dead_guest_is_reported_while_waiting(tmp_path):
    a, _, _ = console_link(tmp_path, 0)

    def alive(i):
        raise RuntimeError(f"UML guest {i} stopped")
    with pytest.raises(RuntimeError, match="UML guest 0 stopped"):
        await_replies({0: (a, a.request("flush"))}, 600.0, "records", alive)


class FakeAgent:
    """The agent's request methods, one of which refuses."""

    def run(self, mode, idle_exit, server):
        from vm.guest.uml_agent import Refused

        raise Refused("a point is running")

    def flush(self):
        return {"rc": 0}

    def stop(self):
        raise OSError("no such process")


def replies_to(lines: list[str]) -> list[dict]:
    from vm.guest.uml_agent import serve

    out = io.StringIO()
    with redirect_stdout(out):
        quits = [serve(FakeAgent(), line) for line in lines]
    assert quits[-1] is (lines[-1] == '{"id": 9, "op": "quit"}')
    return [json.loads(x.removeprefix("GAMEBED-REPLY ")) for x in out.getvalue().splitlines()]


def test_the_agent_answers_every_request_and_its_errors_in_words():
    got = replies_to(['{"id": 1, "op": "run", "mode": "host", "idle_exit": 0}',
                      '{"id": 2, "op": "flush"}', '{"id": 3, "op": "stop"}',
                      '{"id": 4, "op": "dance"}', "run host 0", '{"id": 9, "op": "quit"}'])
    assert got == [{"id": 1, "error": "a point is running"},
                   {"id": 2, "ok": True, "rc": 0},
                   {"id": 3, "error": "OSError: no such process"},
                   {"id": 4, "error": "unknown request 'dance': run, flush, stop or quit"},
                   {"id": None, "error": "not a request (JSON with id and op): run host 0"}]
