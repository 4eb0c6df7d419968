"""Player machines for the --players-on tests (root): each a network namespace with its
own sshd, joined to this host's root namespace by a veth, as a machine on the players'
network would be.

    root ns: <p>m<i> 198.19.<i+1>.1/24 ──veth── machine i: eth0 198.19.<i+1>.2/24
                                                  route 198.18.0.0/16 via 198.19.<i+1>.1
                                                  sshd on 198.19.<i+1>.2:22 (its own
                                                  config, host key and authorized key)

`machines(tmp, n)` yields their ssh names (m0, m1 ...) and the ssh config file that
reaches them with a key made for the test; everything goes on exit.  They share this
host's CPUs (pinned to CPU 0, see PINNED): they test how players elsewhere are driven
and their clocks followed, not what a second machine's CPUs would give.  Nothing here
sends to any address but these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
# a machine's processes (its sshd, and so every shard it runs) stay on CPU 0, the host
# side's under the default placement, where a local client runs too: on this one host
# they would otherwise take the guests' CPUs, which another machine would not
PINNED = ["taskset", "-c", "0"]


def skip_unless_sshd() -> None:
    for tool in (SSHD, shutil.which("ssh"), shutil.which("ssh-keygen"),
                 shutil.which("iptables")):
        if not tool or not os.path.exists(tool):
            pytest.skip("needs OpenSSH's sshd, ssh and ssh-keygen and iptables for the "
                        "player machines: run scripts/setup.sh")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def _keys(d: Path) -> tuple[Path, Path]:
    host, user = d / "host_key", d / "user_key"
    for k in (host, user):
        for old in (k, k.with_suffix(".pub")):
            old.unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k))
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    return host, user


def _sshd_config(d: Path, addr: str, host_key: Path) -> Path:
    cfg = d / f"sshd_{addr}.conf"
    cfg.write_text(f"ListenAddress {addr}\nHostKey {host_key}\nPidFile {d}/sshd_{addr}.pid\n"
                   f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\n"
                   "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication no\nPrintMotd no\n")
    return cfg


def _link(stack: ExitStack, ns: str, index: int) -> tuple[str, str]:
    """Machine `index`'s namespace and its veth to the root namespace, up; this host's
    end addressed.  Returns (this host's address, the machine's)."""
    root_end = f"{ns}r"
    here, there = f"198.19.{index + 1}.1", f"198.19.{index + 1}.2"
    _run("ip", "netns", "add", ns)
    stack.callback(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)
    _run("ip", "link", "add", root_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
    stack.callback(subprocess.run, ["ip", "link", "del", root_end], capture_output=True)
    _run("ip", "addr", "add", f"{here}/24", "dev", root_end)
    _run("ip", "link", "set", root_end, "up")
    for args in (("link", "set", "lo", "up"), ("link", "set", "eth0", "up")):
        _run("ip", "-n", ns, *args)
    return here, there


@contextmanager
def _machine(stack: ExitStack, name: str, index: int, d: Path, host_key: Path) -> Iterator[str]:
    ns = name
    here, there = _link(stack, name, index)
    for args in (("addr", "add", f"{there}/24", "dev", "eth0"),
                 ("route", "add", "198.18.0.0/16", "via", here)):
        _run("ip", "-n", ns, *args)
    log = open(d / f"sshd_{name}.log", "w")  # noqa: SIM115 -- closed by the stack
    stack.callback(log.close)
    sshd = subprocess.Popen(["ip", "netns", "exec", ns, *PINNED, SSHD, "-D", "-e", "-f",
                             str(_sshd_config(d, there, host_key))], stdout=log,
                            stderr=subprocess.STDOUT)
    stack.callback(_stop, sshd)
    yield there


def _stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


UML_INIT = """#!/bin/sh
# a player machine of its own: this host's files (hostfs root), its own kernel and clock
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev
mount -t tmpfs run /run && mkdir -p /run/sshd
mkdir -p /tmp/gamebed-players && mount -t tmpfs players /tmp/gamebed-players
ip link set lo up && ip link set vec0 up && ip addr add {there}/24 dev vec0
ip route add 198.18.0.0/16 via {here}
date -s @$(( $(date +%s) + {off} )) >/dev/null
echo "player machine up, its clock {off} s off"
exec {sshd} -D -e -f {cfg}
"""


@contextmanager
def _uml_machine(stack: ExitStack, name: str, index: int, d: Path, host_key: Path,
                 clock_off_s: int) -> Iterator[str]:
    """A user-mode Linux machine on this host's files (hostfs root, so the same python
    and sshd), with its own kernel, network stack and wall clock, set `clock_off_s`
    seconds off the host's."""
    from vm import uml_kernel

    ns = name
    here, there = _link(stack, name, index)  # eth0 is the UML's: no address in the ns
    # its mount point for the players' directory is made on this host's /tmp (hostfs),
    # so it goes again once the machine is stopped (where this made it and it is empty)
    mount_point = Path("/tmp/gamebed-players")
    if not mount_point.exists():
        stack.callback(lambda: mount_point.rmdir() if mount_point.is_dir()
                       and not any(mount_point.iterdir()) else None)
    init = d / f"init_{name}.sh"
    init.write_text(UML_INIT.format(there=there, here=here, off=clock_off_s, sshd=SSHD,
                                    cfg=_sshd_config(d, there, host_key)))
    init.chmod(0o755)
    kernel = uml_kernel.ensure(progress=lambda _m: None)
    log = open(d / f"console_{name}.log", "w")  # noqa: SIM115 -- closed by the stack
    stack.callback(log.close)
    uml = subprocess.Popen(
        ["ip", "netns", "exec", ns, *PINNED, str(kernel.binary), "mem=384M", "root=/dev/root",
         "rootfstype=hostfs", "rootflags=/", "rw", f"init={init}", "con=null",
         "con0=fd:0,fd:1", "vec0:transport=raw,ifname=eth0",
         *(["seccomp=on"] if kernel.has_seccomp else [])],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    stack.callback(_stop_group, uml)
    yield there


def _stop_group(p: subprocess.Popen) -> None:
    """A UML kernel and its helper processes: its whole process group."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
            p.wait(3)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


@contextmanager
def machines(tmp: Path, count: int, uml_clock_off_s: int | None = None
             ) -> Iterator[tuple[list[str], Path]]:
    """`count` namespaced player machines: their ssh names and the ssh config file.
    With `uml_clock_off_s`, the last is a UML machine whose wall clock is that many
    seconds off this host's."""
    skip_unless_sshd()
    d = tmp / "machines"
    d.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    host_key, user_key = _keys(d)
    tag = uuid.uuid4().hex[:5]
    cfg = d / "ssh_config"
    names, lines = [], []
    with ExitStack() as stack:
        for i in range(count):
            uml = uml_clock_off_s is not None and i == count - 1
            addr = stack.enter_context(
                _uml_machine(stack, f"gbm{tag}{i}", i, d, host_key, uml_clock_off_s)
                if uml else _machine(stack, f"gbm{tag}{i}", i, d, host_key))
            names.append(f"m{i}")
            lines += [f"Host m{i}", f"  HostName {addr}", "  User root",
                      f"  IdentityFile {user_key}", "  IdentitiesOnly yes",
                      "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null",
                      "  LogLevel ERROR", ""]
        cfg.write_text("\n".join(lines))
        for n in names:
            _wait_ssh(cfg, n)
        yield names, cfg


def _wait_ssh(cfg: Path, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", name, "true"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"player machine {name}: ssh does not answer: {r.stderr}")
        time.sleep(0.2)
