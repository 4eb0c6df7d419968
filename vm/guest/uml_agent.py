"""Inside a UML game guest: the agent that runs one game server per timestamp mode.

Started by /sbin/gamebed-uml-init (runs as the guest's root; Python stdlib only).
It reads one command per line from the console, a pipe from the host
(vm/uml.py), and answers on the console with lines starting "GAMEBED-":

    run MODE IDLE_EXIT   receive path for MODE (host: attach the tc BPF decoder to
                         vec0; guest: no decoder), then the game server, writing to
                         /mnt/results/MODE/ (the guest's host directory).  The server
                         stops IDLE_EXIT s after the last input (0: never); then, in
                         host mode, the (host stamp, guest kernel stamp) pairs the
                         decoder logged go to pairs.csv, and agent.json and a `done`
                         marker are written, after a sync so the host sees it all.
    stop                 end a running server now (SIGTERM; it writes its records)
    quit                 power the guest off
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
import traceback

from fpsmodel.cli import add_server_args, run_server  # imported once, at boot

RESULTS = "/mnt/results"
DECODER = "/opt/gamebed/decoder.o"
NIC = "vec0"
NR_BPF = 321  # x86_64
BPF_MAP_LOOKUP_ELEM, BPF_MAP_GET_NEXT_ID, BPF_MAP_GET_FD_BY_ID = 1, 12, 14
BPF_OBJ_GET_INFO_BY_FD, BPF_MAP_LOOKUP_AND_DELETE_ELEM = 15, 21
libc = ctypes.CDLL(None, use_errno=True)


def say(*words) -> None:
    print("GAMEBED-" + " ".join(str(w) for w in words), flush=True)


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


def set_receive_path(mode: str) -> None:
    subprocess.run(["tc", "qdisc", "del", "dev", NIC, "clsact"], capture_output=True)
    if mode == "host":
        subprocess.run(["tc", "qdisc", "add", "dev", NIC, "clsact"], check=True)
        subprocess.run(["tc", "filter", "add", "dev", NIC, "ingress", "pref", "1", "handle",
                        "1", "bpf", "direct-action", "object-file", DECODER, "section", "tc"],
                       check=True, capture_output=True)


class Server:
    """A forked game server, reaped by the agent's waiter thread only."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


class Agent:
    def __init__(self) -> None:
        self.cfg = cmdline()
        self.server: Server | None = None
        self.waiter: threading.Thread | None = None

    def run(self, mode: str, idle_exit: str) -> None:
        if self.running():
            say("ERROR a server is running")
            return
        out = os.path.join(RESULTS, mode)
        os.makedirs(out, exist_ok=True)
        c = self.cfg
        try:
            set_receive_path(mode)
        except subprocess.CalledProcessError as e:
            say("ERROR decoder", (e.stderr or b"").decode(errors="replace").strip()[:300])
            return
        args = ["--host", c["ip"].split("/")[0], "--port", c["port"], "--guest", c["guest"],
                "--dispatch", c["dispatch"], "--work-us", c.get("work_us", "0"), "--out", out,
                "--ready-file", os.path.join(out, "ready")]
        if float(idle_exit) > 0:
            args += ["--idle-exit", idle_exit]
        # a fork of this process, which imported the server at boot: with dozens of
        # guests on one CPU a fresh interpreter per mode would take a minute to start
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(os.path.join(out, "server.log"), os.O_WRONLY | os.O_CREAT, 0o644)
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
        self.waiter = threading.Thread(target=self.finish, args=(mode, out, self.server))
        self.waiter.start()
        say("STARTED", mode)

    def finish(self, mode: str, out: str, server: "Server") -> None:
        rc = server.wait()
        info = {"mode": mode, "server_rc": rc, "uptime_s": uptime()}
        if mode == "host":
            try:
                info.update(drain_pairs(os.path.join(out, "pairs.csv")))
            except OSError as e:
                info["pairs_error"] = str(e)
        with open(os.path.join(out, "agent.json"), "w") as f:
            json.dump(info, f)
        os.sync()  # hostfs writes back through the guest's page cache
        with open(os.path.join(out, "done"), "w") as f:
            f.write(str(rc))
            f.flush()
            os.fsync(f.fileno())
        say("DONE", mode, rc)

    def running(self) -> bool:
        """A server runs until its waiter thread has reaped it and written `done`."""
        return self.waiter is not None and self.waiter.is_alive()

    def stop(self) -> None:
        if self.server and self.running():
            self.server.terminate()
        if self.waiter:
            self.waiter.join(30)


def server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fpsmodel server")
    add_server_args(p)
    return p


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def main() -> None:
    agent = Agent()
    say("AGENT", "up", uptime())
    quit = False
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "run" and len(words) == 3:
            agent.run(words[1], words[2])
        elif words[0] == "stop":
            agent.stop()
            say("STOPPED")
        elif words[0] == "quit":
            quit = True
            break
        else:
            say("ERROR unknown command", line.strip()[:80])
    if quit:
        agent.stop()
    elif agent.waiter:  # the host closed the console (launch): serve until the end
        agent.waiter.join()
    os.sync()
    say("BYE")
    libc.reboot(0x4321FEDC)  # LINUX_REBOOT_CMD_POWER_OFF


if __name__ == "__main__":
    main()
