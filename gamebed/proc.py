"""The one door to subprocesses, plus privilege checks (no privileges to import).

Every external command goes through `run()` or `Process`, which take argument
lists (never a shell), log them, and in dry-run mode print them instead of
running them, so `--dry-run` shows exactly the privileged commands.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("gamebed")


class Runner:
    """Executes or (dry run) prints commands; one per testbed."""

    def __init__(self, dry_run: bool = False, echo=None) -> None:
        self.dry_run = dry_run
        self.echo = echo or (lambda line: print(line, flush=True))
        self.history: list[list[str]] = []
        self._netlink = None  # gamebed/netlink.py Netlink, opened on the first ip()

    def run(self, args: Sequence[str], check: bool = True, capture: bool = True,
            input: str | bytes | None = None, binary: bool = False
            ) -> subprocess.CompletedProcess:
        args = [str(a) for a in args]
        self.history.append(args)
        line = shlex.join(args)
        if self.dry_run:  # what goes in on stdin too, as a here-document: exact
            self.echo(line if input is None else f"{line} <<'EOF'\n{_text(input)}EOF")
            return subprocess.CompletedProcess(args, 0, "", "")
        log.debug("run: %s", line)
        if binary and isinstance(input, str):
            input = input.encode()
        proc = subprocess.run(args, capture_output=capture, text=not binary, input=input)
        if check and proc.returncode != 0:
            err = proc.stderr or ""
            err = (err.decode(errors="replace") if isinstance(err, bytes) else err).strip()
            raise CommandError(f"command failed ({proc.returncode}): {line}\n{err}")
        return proc


    def ip(self, ns: str, *args: object, check: bool = True) -> int:
        """`ip [-n ns] ARGS` carried out as netlink requests (gamebed/netlink.py), not a
        fork; that line is what a dry run prints (marked `netlink:`) and the log keeps.
        Returns 0, or non-zero where `check` is off and it failed (or `link show` found
        nothing)."""
        from gamebed import netlink

        words = [str(a) for a in args]
        netlink.check(words)
        line = shlex.join(ip_cmd(ns, *words))
        self.history.append(["netlink:", *ip_cmd(ns, *words)])
        if self.dry_run:
            self.echo(f"netlink: {line}")
            return 0
        log.debug("netlink: %s", line)
        if self._netlink is None:
            self._netlink = netlink.Netlink()
        try:
            return self._netlink.do(ns, words)
        except OSError as e:
            if check:
                raise CommandError(f"netlink request failed: {line}\n{e}") from e
            return 1

    def close(self) -> None:
        """Close the netlink sockets (a later ip() opens them again)."""
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None


def _text(data: str | bytes) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return text if text.endswith("\n") else text + "\n"


class CommandError(RuntimeError):
    pass


@dataclass(frozen=True)
class How:
    """How a child process runs and stops."""

    term_timeout: float = 5.0  # after SIGTERM, this long before SIGKILL
    stdin_pipe: bool = False  # the child reads what `send()` writes
    group: bool = False  # stop signals its whole process group (a UML kernel's helpers)
    # cgroup.procs files the child joins before it executes, so every thread and child it
    # ever makes is accounted there
    cgroups: tuple[Path, ...] = ()


class Process:
    """A child process as a context manager: leaving the block always ends it."""

    def __init__(self, args: Sequence[str], runner: Runner, log_path: Path | None = None,
                 name: str = "", how: How | None = None) -> None:
        how = how or How()
        self.args = [str(a) for a in args]
        self.runner = runner
        self.log_path = log_path
        self.name = name or Path(self.args[0]).name
        self.term_timeout = how.term_timeout
        self.stdin_pipe, self.group, self.cgroups = how.stdin_pipe, how.group, list(how.cgroups)
        self.popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> Process:
        self.runner.history.append(self.args)
        line = shlex.join(self.args)
        if self.runner.dry_run:
            self.runner.echo(line + " &")
            return self
        log.debug("spawn: %s", line)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # own process group, so a terminal's ^C reaches only us and we stop it in order
            self.popen = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                preexec_fn=self._join_cgroups if self.cgroups else None)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        return self

    def _join_cgroups(self) -> None:  # in the child, before exec
        for procs in self.cgroups:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

    def send(self, line: str) -> None:
        """One line to the child's stdin (stdin_pipe); a dead child's pipe is ignored."""
        if self.runner.dry_run:
            self.runner.echo(f"# to {self.name}: {line}")
            return
        try:
            self.popen.stdin.write(line.encode() + b"\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, ValueError):
            log.warning("%s (pid %s) is gone; could not send %r", self.name, self.pid, line)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal, wait, then kill; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self._signal(sig)
                self.popen.wait(self.term_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) ignored SIGTERM; killing", self.name, self.popen.pid)
                self._signal(signal.SIGKILL)
                self.popen.wait()
        if self.group:  # helpers that outlive the leader go too
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.popen.stdin:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass
        return self.popen.returncode

    def stop_while_writing(self, path: Path, interval: float = 2.0, cap: float = 900.0,
                           progress=None) -> int | None:
        """Stop a child that writes its results once asked to stop (the shim turns its
        spool into shim_inputs.csv, about 0.5 µs a row, longer than stop()'s grace on a
        long run): SIGTERM, then wait as long as `path` grows from one look to the
        next, `interval` apart (at most `cap` s), then stop() as usual.  A kill while
        it writes would lose what is not yet written."""
        if self.popen is None or self.popen.poll() is not None:
            return self.stop()
        self._signal(signal.SIGTERM)
        deadline, last = time.monotonic() + cap, -1
        while time.monotonic() < deadline:
            try:
                self.popen.wait(interval)
                break
            except subprocess.TimeoutExpired:
                size = path.stat().st_size if path.exists() else 0
                if size == last:
                    break  # stalled: stop() signals again, waits its grace, then kills
                if progress and last >= 0:
                    progress(f"      {self.name}: still writing {path.name} "
                             f"({size >> 20} MiB so far)")
                last = size
        return self.stop()

    def _signal(self, sig: int) -> None:
        if self.group:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
        else:
            self.popen.send_signal(sig)

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(pred, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll `pred` until true or raise TimeoutError naming what we waited for."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def require_net_admin() -> None:
    """Fail before anything is created if we cannot build namespaces."""
    caps = effective_caps()
    missing = [n for n, b in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
               if not caps >> b & 1]
    if os.geteuid() != 0 or missing:
        need = ", ".join(missing) or "root"
        raise PermissionError(
            f"gamebed needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN to create network "
            f"namespaces, veths, tc filters and cgroups (missing: {need}). Run it as root, "
            f"e.g. `sudo {Path(sys.argv[0]).name} ...`, or use --dry-run to see the commands.")


def in_netns(ns: str) -> list[str]:
    """Command prefix to run in network namespace `ns` ('' = the root namespace: none)."""
    return ["ip", "netns", "exec", ns] if ns else []


def ip_cmd(ns: str, *args: object) -> list[str]:
    """`ip` in network namespace `ns` ('' = the root namespace)."""
    return ["ip", *(["-n", ns] if ns else []), *map(str, args)]


def pinned(cpus: str | None, args: list[str]) -> list[str]:
    """Command prefix to pin to `cpus` (a taskset list; None = float freely)."""
    return ["taskset", "-c", cpus, *args] if cpus else args


def python_cmd(module: str, *args: object) -> list[str]:
    """Run one of our modules with this interpreter (works in a venv and in a netns)."""
    return [sys.executable, "-m", module, *map(str, args)]


# -- signals during teardown ------------------------------------------------------------
# A ^C (or SIGTERM) raises KeyboardInterrupt wherever the main thread is.  Landing in the
# middle of a teardown step (a process stopped but still listed, a namespace removed but
# still listed) would leave the run manifest naming things that are gone, or worse the
# reverse.  Such steps run shielded: a signal that arrives meanwhile is raised when the
# outermost shielded step ends (signals_unwind below hands it to interrupt()).
_SHIELD: dict = {"depth": 0, "pending": None}


@contextmanager
def shielded() -> Iterator[None]:
    _SHIELD["depth"] += 1
    try:
        yield
    finally:
        _SHIELD["depth"] -= 1
    if _SHIELD["depth"] == 0 and _SHIELD["pending"] is not None:  # no exception in flight
        exc, _SHIELD["pending"] = _SHIELD["pending"], None
        raise exc


def shielding(method):
    """Decorator: the method runs shielded()."""
    @functools.wraps(method)
    def wrapper(*args, **kw):
        with shielded():
            return method(*args, **kw)
    return wrapper


def shielding_enter(method):
    """Decorator for __enter__: runs shielded, and whatever is raised on the way out of
    it (a signal held back until the step ended, or a failure half-way) undoes what it
    acquired, since a with-statement calls no __exit__ for a failed __enter__."""
    @functools.wraps(method)
    def wrapper(self, *args, **kw):
        try:
            with shielded():
                return method(self, *args, **kw)
        except BaseException:
            self.__exit__(None, None, None)
            raise
    return wrapper


def interrupt(exc: BaseException) -> None:
    """For a signal handler: raise `exc` now, or when the shielded step under way ends."""
    if _SHIELD["depth"]:
        _SHIELD["pending"] = exc
        return
    raise exc


@contextmanager
def signals_unwind():
    """SIGTERM behaves like ^C: the with-blocks tear down.  A second signal while
    tearing down is ignored, so cleanup is not cut short."""
    state = {"hit": False}

    def handler(signum, _frame):
        if state["hit"]:
            return
        state["hit"] = True
        # raised here, or once a teardown step under way has ended (gamebed/proc.py)
        interrupt(KeyboardInterrupt(f"signal {signum}"))

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
