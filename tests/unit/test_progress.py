"""Progress: plain lines when not on a terminal, a bar with an ETA on one."""

import io

from gamebed.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_without_a_terminal():
    out = io.StringIO()
    progress = Progress(stream=out)
    with progress.task(100, "sweep") as p:
        progress("[1/2] 1 guest(s): building ...")
        progress.status("ignored without a bar")
        p.advance(50)
    assert out.getvalue() == "[1/2] 1 guest(s): building ...\n"


def test_bar_with_eta_on_a_terminal():
    out = Tty()
    progress = Progress(stream=out)
    with progress.task(100, "sweep") as p:
        progress("a line above the bar")
        progress.status("3/16 UML guests booted")
        p.advance(40)
        shown = out.getvalue()
    assert "a line above the bar" in shown
    assert "3/16 UML guests booted" in shown and "40%" in shown
    assert "<" in shown  # elapsed<remaining: the ETA
    assert progress.bar is None  # the task's bar ends with it


def test_set_replaces_the_estimate():
    out = Tty()
    progress = Progress(stream=out)
    with progress.task(100, "sweep") as p:
        p.set(30, 60)  # 30 s spent, 30 s left by a fresh estimate
        assert progress.bar.n == 30 and progress.bar.total == 60
        p.set(50, 40)  # an estimate that fell short: never below what is done
        assert progress.bar.total == 50
        assert "100%" in out.getvalue()
