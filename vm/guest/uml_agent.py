"""Inside a UML game guest: the agent that runs the game server, point after point.

Started by /sbin/gamebed-uml-init (runs as the guest's root; Python stdlib only).
It reads one JSON request per line from the console, a pipe from the host
(vm/guestlink.py), and answers each with one line on the console once it is done,
`GAMEBED-REPLY {"id": ID, "ok": true, ...}` or `GAMEBED-REPLY {"id": ID, "error":
"why"}` (the host raises at once on an error, with these words):

    run MODE IDLE_EXIT   receive path for MODE (the tc BPF decoder on vec0, attached
                         at the first run: host decodes the trailer's stamp, guest
                         passes every frame as is), then the game server's records in
                         /mnt/results/MODE/ (the guest's host directory): one server,
                         forked at the first run, serves point after point, told
                         (SIGUSR2) where the next point's records go.  Answered once
                         the server is ready for the point.
                         With IDLE_EXIT above 0 the server stops that long after the
                         last input, and its records are then written as by `flush`.
    flush                end the point: the server's records and summary out (SIGUSR1;
                         it keeps running, with a fresh game state), then, in host mode,
                         the (host stamp, guest kernel stamp) pairs the decoder logged
                         go to pairs.csv, and agent.json; answered after a sync, so the
                         host sees it all (with the server's exit code, `rc`)
    stop                 end the server now (SIGTERM; it writes its records)
    quit                 power the guest off (no answer: the guest's process ends)
    (end of input)       the host let go of the console (`gamebed launch`, or a killed
                         run): a running server keeps serving until it stops by itself

The configuration comes from the kernel command line (gamebed.* parameters).
"""

import argparse
import ctypes
import gc
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback

from fpsmodel.cli import add_server_args, run_server  # imported once, at boot

RESULTS = "/mnt/results"
NEXT = "/run/gamebed-next"  # where the server's next session's records go
DECODER = "/opt/gamebed/decoder.o"
NIC = "vec0"
NR_BPF = 321  # x86_64
BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM = 1, 2
BPF_MAP_GET_NEXT_ID, BPF_MAP_GET_FD_BY_ID = 12, 14
BPF_OBJ_GET_INFO_BY_FD, BPF_MAP_LOOKUP_AND_DELETE_ELEM = 15, 21
libc = ctypes.CDLL(None, use_errno=True)


def say(*words) -> None:
    print("GAMEBED-" + " ".join(str(w) for w in words), flush=True)


class Refused(Exception):
    """A request the agent cannot do: its words go back to the host."""


def reply(rid, **fields) -> None:
    print("GAMEBED-REPLY " + json.dumps({"id": rid, **fields}), flush=True)


def cmdline() -> dict:
    with open("/proc/cmdline") as f:
        return dict(w[8:].split("=", 1) for w in f.read().split()
                    if w.startswith("gamebed.") and "=" in w)


def bpf(cmd: int, attr: bytes) -> tuple[int, bytes]:
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r, buf.raw


def find_map(name: str) -> int | None:
    """An fd on the newest BPF map called `name` (the decoder attached last)."""
    found, start = None, 0
    while True:
        try:
            _, raw = bpf(BPF_MAP_GET_NEXT_ID, struct.pack("III", start, 0, 0))
        except OSError:
            return found
        start = struct.unpack_from("I", raw, 4)[0]
        fd, _ = bpf(BPF_MAP_GET_FD_BY_ID, struct.pack("III", start, 0, 0))
        info = ctypes.create_string_buffer(88)
        bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, 88, ctypes.addressof(info)))
        if info.raw[24:40].split(b"\0", 1)[0].decode() == name:
            if found is not None:
                os.close(found)
            found = fd
        else:
            os.close(fd)


def drain_pairs(path: str) -> dict:
    """Pop every (host, guest) stamp pair the decoder queued into a CSV."""
    q, drops_fd = find_map("gb_pairs"), find_map("gb_pair_drops")
    if q is None:
        return {"pairs": 0, "pair_drops": None, "pairs_error": "no gb_pairs map"}
    value = ctypes.create_string_buffer(16)
    n = 0
    with open(path, "w") as out:
        out.write("host_ns,guest_kernel_ns\n")
        while True:
            try:
                bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM,
                    struct.pack("IIQQQ", q, 0, 0, ctypes.addressof(value), 0))
            except OSError:
                break  # ENOENT: empty
            host, guest = struct.unpack("QQ", value.raw)
            out.write(f"{host},{guest}\n")
            n += 1
    drops = None
    if drops_fd is not None:
        key, val = ctypes.c_uint32(0), ctypes.c_uint64(0)
        bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("IIQQQ", drops_fd, 0, ctypes.addressof(key),
                                             ctypes.addressof(val), 0))
        drops = val.value
    return {"pairs": n, "pair_drops": drops}


def attach_decoder() -> None:
    """The decoder on vec0's ingress, once per boot, with one `tc` (an exec costs a UML
    guest dearly: its page faults and system calls trap to its kernel)."""
    subprocess.run(["tc", "-batch", "-"], check=True, capture_output=True,
                   input=f"qdisc add dev {NIC} clsact\nfilter add dev {NIC} ingress pref 1 "
                         f"handle 1 bpf direct-action object-file {DECODER} section tc\n"
                         .encode())


def set_receive_path(mode: str) -> None:
    """Host mode: the decoder decodes; guest mode: it passes every frame untouched."""
    fd = find_map("gb_mode")
    if fd is None:
        raise OSError("the decoder's gb_mode map is missing")
    key, val = ctypes.c_uint32(0), ctypes.c_uint32(0 if mode == "host" else 1)
    try:
        bpf(BPF_MAP_UPDATE_ELEM, struct.pack("IIQQQ", fd, 0, ctypes.addressof(key),
                                             ctypes.addressof(val), 0))
    finally:
        os.close(fd)


class Server:
    """A forked game server, reaped by the agent's waiter thread only."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


class Naps:
    """Sleeps of a wait for a file, each longer than the last (10 ms, growing to 100):
    dozens of agents each polling 100 times a second while their servers write their
    records kept a UML host's CPU busy with their wake-ups."""

    def __init__(self) -> None:
        self.s = 0.01

    def sleep(self) -> None:
        time.sleep(self.s)
        self.s = min(0.1, self.s * 1.25)


class Agent:
    def __init__(self) -> None:
        self.cfg = cmdline()
        self.server: Server | None = None
        self.waiter: threading.Thread | None = None
        self.decoder = False  # attached (once per boot)
        self.lock = threading.Lock()
        self.point: tuple[str, str] | None = None  # (mode, dir) the server records into
        self.finished: int | None = None  # the last point's server exit code, once done
        self.done_lock = threading.Lock()  # done() whole: a flush waits for the reaper's
        self.t_flush: float | None = None
        self.times: dict[str, int] = {}  # CLOCK_REALTIME ns: flush, parked, synced

    def run(self, mode: str, idle_exit: float, server: list[str]) -> dict:
        """Start a point in `mode`; returns once its server is ready for it."""
        if mode not in ("guest", "host"):
            raise Refused(f"unknown mode {mode!r}: guest or host")
        if self.point is not None:
            raise Refused("a point is running")
        out = os.path.join(RESULTS, mode)
        os.makedirs(out, exist_ok=True)
        try:
            if not self.decoder:
                attach_decoder()
                self.decoder = True
            set_receive_path(mode)
        except (subprocess.CalledProcessError, OSError) as e:
            err = getattr(e, "stderr", None) or str(e).encode()
            raise Refused("decoder: " + err.decode(errors="replace").strip()[:300]) from e
        self.point, self.finished = (mode, out), None
        if self.running():  # the server of the last point: its next session goes to `out`
            with open(NEXT, "w") as f:
                f.write(out)
            self.server.signal(signal.SIGUSR2)
        else:
            self.start_server(out, str(idle_exit), server)
        ready = os.path.join(out, "ready")  # the server's: it listens for the point
        naps = Naps()
        while not os.path.exists(ready):
            if not self.running():
                raise Refused(f"the game server exited ({self.server.returncode}) before it "
                              "was ready: see server.log")
            naps.sleep()
        return {"mode": mode}

    def start_server(self, out: str, idle_exit: str, server: list[str]) -> None:
        """The game server (a fork of this agent) for the point into `out`; `server`: the
        game's arguments as the host sent them (ExperimentSpec.server_args)."""
        c = self.cfg
        args = ["--host", c["ip"].split("/")[0], "--port", c["port"], "--guest", c["guest"],
                "--out", out, "--ready-file", os.path.join(out, "ready"), "--next-file", NEXT,
                *server]
        if float(idle_exit) > 0:
            args += ["--idle-exit", idle_exit]
        # a fork of this process, which imported the server at boot: with dozens of
        # guests on one CPU a fresh interpreter would take a minute to start
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(os.path.join(RESULTS, "server.log"),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                sys.stdin = open(os.devnull)  # noqa: SIM115 - the console stays the agent's
                # a fork shares the agent's pages until written, and Python writes every
                # object it touches (reference counts): a collection touches them all
                # now, so those copy-on-write faults (slow in UML) precede the ready file
                # instead of stalling the guest kernel for tens of ms during the load
                gc.collect()
                code = run_server(server_parser().parse_args(args))
            except BaseException:  # noqa: BLE001 - the child must never return
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.server = Server(pid)
        self.waiter = threading.Thread(target=self.reap, args=(self.server,))
        self.waiter.start()

    def reap(self, server: "Server") -> None:
        """The server ended (idle exit, stop, a crash): its point, if any, is done."""
        rc = server.wait()
        self.done(rc)

    def flush(self) -> dict:
        """End the point: the server parks (its records and summary written), then the
        point's own files; returns once they are synced.  A point whose server ended by
        itself (idle exit, a crash) is done already: its exit code."""
        if self.point is not None:
            self.t_flush, self.times = uptime(), {"flush_ns": time.time_ns()}
            if self.running():
                summary = os.path.join(self.point[1], "server_summary.json")
                self.server.signal(signal.SIGUSR1)
                naps = Naps()
                while self.running() and not os.path.exists(summary):
                    naps.sleep()
                self.times["parked_ns"] = time.time_ns()
            self.done(0 if self.running() else self.server.returncode)
        with self.done_lock:  # the reaper's done(), if it ran, has finished
            rc, self.finished = self.finished, None
        if rc is None:
            raise Refused("no point is running")
        return {"rc": rc}

    def done(self, rc: int | None) -> None:
        with self.done_lock:
            with self.lock:
                if self.point is None:
                    return
                mode, out = self.point
                self.point = None
            # when this guest got `flush`, and when its point was done
            info = {"mode": mode, "server_rc": rc, "flush_s": self.t_flush,
                    "uptime_s": uptime(), **self.times}
            if mode == "host":
                try:
                    info.update(drain_pairs(os.path.join(out, "pairs.csv")))
                except OSError as e:
                    info["pairs_error"] = str(e)
                info["pairs_ns"] = time.time_ns()
            with open(os.path.join(out, "agent.json"), "w") as f:
                json.dump(info, f)
            sync_results()  # hostfs writes back through the guest's page cache
            self.finished = 0 if rc is None else rc

    def running(self) -> bool:
        """The server runs until its waiter thread has reaped it."""
        return self.waiter is not None and self.waiter.is_alive()

    def stop(self) -> dict:
        if self.server and self.running():
            self.server.signal(signal.SIGTERM)
        if self.waiter:
            self.waiter.join(30)
        return {"stopped": not self.running()}


def server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fpsmodel server")
    add_server_args(p)
    return p


def sync_results() -> None:
    """Write back the results directory (hostfs) only: a sync(2) would also flush the
    root disk's copy-on-write file, a host fsync per guest."""
    fd = os.open(RESULTS, os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def serve(agent: Agent, line: str) -> bool:
    """One request line: do it and answer.  True for `quit`."""
    try:
        req = json.loads(line)
        rid, op = req["id"], req["op"]
    except (ValueError, KeyError, TypeError):
        reply(None, error=f"not a request (JSON with id and op): {line.strip()[:80]}")
        return False
    if op == "quit":
        return True
    try:
        if op == "run":
            done = agent.run(str(req.get("mode")), float(req.get("idle_exit", 0)),
                             [str(a) for a in req.get("server", [])])
        elif op == "flush":
            done = agent.flush()
        elif op == "stop":
            done = agent.stop()
        else:
            raise Refused(f"unknown request {op!r}: run, flush, stop or quit")
    except Refused as e:
        reply(rid, error=str(e))
    except Exception as e:  # noqa: BLE001 - the host is told, the agent goes on
        reply(rid, error=f"{type(e).__name__}: {e}")
    else:
        reply(rid, ok=True, **done)
    return False


def main() -> None:
    agent = Agent()
    say("AGENT", "up", uptime())
    quit = False
    for line in sys.stdin:
        if line.strip() and serve(agent, line):
            quit = True
            break
    if quit:
        agent.stop()
    elif agent.waiter:  # the host closed the console (launch): serve until the end
        agent.waiter.join()
    os.sync()
    say("BYE")
    libc.reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF


if __name__ == "__main__":
    main()
