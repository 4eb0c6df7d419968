"""User-mode Linux backend: N game VMs, each a UML kernel in its own namespace (root).

    host ns: port i ──veth── guest ns i: <nic> ══raw socket══ UML kernel i: vec0
                                                              [tc BPF decoder] → game server

A UML guest is a real, separate Linux kernel (gamebed's own build, vm/uml_kernel.py) that runs
as an ordinary host process, the way a Xen guest runs on its vCPU: its kernel
only runs when that process is scheduled, so its own receive stamp waits for its
"vCPU".  All of a guest's host processes (the kernel and one per guest process)
are pinned with the guests and sit in a cgroup of their own (CPU accounting, and
the quota/weight when `--cpu-cap`/`--cpu-weight` are given).

Each guest boots the shared read-only root disk (vm/uml_image.py) behind its own
copy-on-write file, reaches the network through the vector driver's raw transport
on its veth with a fixed MAC (a random one would leave the host's neighbour
entries pointing at the previous boot), and writes results to its own host
directory through hostfs (work directory, cgroup and namespace are the guest's
own, so a testbed can grow and shrink).  A guest boots once; every timestamp mode
then runs on it: the guest's agent (vm/guest/uml_agent.py) takes a `run` request
on its console (JSON lines, each answered: vm/guestlink.py), sets the tc BPF decoder
(attached at the first run) to decode (host mode) or to pass every frame untouched
(guest mode: as if none were there), and starts the game server, once: later points
only tell it where their records go, and `flush` ends each point.  In host mode the
decoder also logs the guest kernel's own stamp of each input beside the host's
(pairs.csv).
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from contextlib import ExitStack
from pathlib import Path

from gamebed.backend import Point, TestbedContext
from gamebed.fault import Fault
from gamebed.manifest import VM_DIR
from gamebed.memory import available_mib
from gamebed.proc import How, in_netns, pinned, shielded, shielding
from gamebed.resources import Cpuset, GuestCgroups, ManagedProcess, guest_cgroup
from gamebed.topology import PREFIX_LEN, GuestAddr
from vm import uml_image, uml_kernel
from vm.guestlink import GuestError, GuestLink, await_replies, await_up, reason_lines
from vm.shared import guest_link, once

log = logging.getLogger(__name__)

BOOT_TIMEOUT_S = 60.0  # plus 5 s per guest: they boot concurrently on the guests' cores
TRAPS = {"seccomp": "trap to its kernel through a seccomp filter's SIGSYS (seccomp "
                    "userspace mode)",
         "ptrace": "trap to its kernel through ptrace"}


def cost_model(mode: str) -> str:
    """What a guest costs, for the mode in use (seccomp or ptrace)."""
    how = TRAPS.get(mode, f"trap to its kernel ({mode} mode)")
    return ("a guest is a user-mode Linux kernel: one host process for its kernel plus "
            f"one per guest process; guest system calls and page faults {how}, so a guest "
            "costs more CPU per packet than a hardware-virtualised VM and absolute counts "
            "hold for UML on this host only")
CLOCK_NOTE = ("UML's clock source reads the host's CLOCK_MONOTONIC, so it does not drift "
              "from the host's, but its wall clock is set once at boot and may lag the "
              "host's by the timer ticks lost while the kernel waited for its CPU; a guest "
              "program cannot read the host's clock (its clock_gettime traps into the guest "
              "kernel), so the client measures each guest's offset before every load (at a "
              "count's first load 32 tries, or 16 to every guest at once where that load "
              "is the warm-up of a grown testbed; at its later points 8 tries, checked "
              "against the guest's best sample from that count's earlier loads, which is "
              "kept where they agree; a resize starts afresh), and, the clock not drifting, "
              "none after the load; the analysis takes the sample with the shortest round "
              "trip. Host-stamp delays need no offset at all; a guest the sync could not "
              "reach is named in the point's summary (clock_unsynced)")

def guest_kernel(given: str | None, mode: str, progress=print) -> uml_kernel.UmlKernel:
    """The guests' kernel: `given` (--uml-kernel), else gamebed's own (built once, cached);
    refused if it cannot run `mode`."""
    k = once(f"uml-kernel:{given}", lambda: uml_kernel.given(Path(given)) if given
             else uml_kernel.ensure(progress=progress))
    run_mode(k, mode)
    return k


def run_mode(kernel: uml_kernel.UmlKernel, mode: str) -> str:
    """The mode the guests run in: `auto` is seccomp where the kernel has it (>= 6.16),
    else ptrace; seccomp asked of a kernel without it is refused."""
    if mode == "auto":
        return "seccomp" if kernel.has_seccomp else "ptrace"
    if mode == "seccomp" and not kernel.has_seccomp:
        raise ValueError(f"--uml-mode seccomp needs a UML kernel >= 6.16; {kernel.binary} "
                         f"is {kernel.info.get('release')}: use --uml-mode ptrace or auto")
    return mode


def mode_args(mode: str) -> list[str]:
    """The kernel's command line for a UML mode (seccomp= is unknown before 6.16)."""
    return ["seccomp=on"] if mode == "seccomp" else []


class UmlGuests:
    BOOT_S_PER_GUEST = 3.0  # progress estimate only (measured: 48 boot in ~150 s on one core)
    name = "uml"
    host_in_root_ns = False

    def __init__(self, ctx: TestbedContext) -> None:
        self.ctx = ctx
        self.point: Point | None = None  # the point begun last
        self.addrs: dict[int, GuestAddr] = {}  # the guests it runs, by index
        # per guest: its work directory, namespace, link, cgroup and kernel process
        self.stacks: dict[int, ExitStack] = {}
        self.shared = ExitStack()  # what every guest shares: the cpuset
        self.cpuset: Cpuset | None = None
        self.procs: dict[int, ManagedProcess] = {}
        self.links: dict[int, GuestLink] = {}  # each guest's agent (vm/guestlink.py)
        self.flushing: dict[int, tuple[GuestLink, int]] = {}  # flush requests asked
        self.cgroups = GuestCgroups()
        self.image: uml_image.UmlImage | None = None
        self.kernel: uml_kernel.UmlKernel | None = None
        self.mode = ctx.spec.uml.uml_mode  # resolved against the kernel in start()
        self.work = VM_DIR / ctx.manifest.prefix / "uml"
        self.boot_s: float | None = None
        self.boot_memory: dict = {}
        self.running_mode: str | None = None
        self.killed: set[int] = set()  # guests a fault killed: they boot again in begin()

    # --- start: boot every guest once ---------------------------------------------------

    def start(self, guests: tuple[GuestAddr, ...]) -> None:
        c = self.ctx
        if c.runner.dry_run:
            d = uml_image.vm_image.CACHE / "uml-<digest>"
            self.image = uml_image.UmlImage(d, d / "root.img", {})
            c.runner.echo("gamebed image build   # UML kernel and root (cached by input "
                          "digest)")
            # the kernel gamebed builds (>= 6.16) runs auto as seccomp
            self.mode = "seccomp" if c.spec.uml.uml_mode == "auto" else c.spec.uml.uml_mode
        else:
            self.kernel = guest_kernel(c.spec.uml.uml_kernel, c.spec.uml.uml_mode, c.progress)
            self.mode = run_mode(self.kernel, c.spec.uml.uml_mode)
            self.image = once("uml-image", lambda: uml_image.build(c.runner, c.progress))
        if c.placement.guest_cpus:  # guests boot on every CPU, loads run on theirs
            self.cpuset = self.shared.enter_context(Cpuset(c.cgroups))
        self.add_guests(guests)

    def add_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        """Boot these guests beside the running ones; return once their agents answer."""
        c = self.ctx
        avail0, t0 = available_mib(), time.monotonic()
        if self.cpuset:  # booting is not measured: it may take every CPU
            self.cpuset.widen()
        for g in guests:
            with ExitStack() as stack:
                self._guest_dir(stack, g)
                guest_link(stack, c, g)
                c.runner.ip(g.netns, "link", "set", g.nic_name, "up")
                self.cgroups[g.index] = stack.enter_context(guest_cgroup(
                    c.cgroups, f"{c.manifest.prefix}-ug{g.index}", c.spec.tuning.cpu_cap,
                    c.spec.tuning.cpu_weight))
                self.stacks[g.index] = stack.pop_all()
                self.addrs[g.index] = g
            self._boot(g)
        if not c.runner.dry_run:
            self._wait_agents([g.index for g in guests])
            self.boot_s = round(time.monotonic() - t0, 1)
            self.boot_memory = self._memory(avail0)
            c.progress(f"      {len(guests)} UML guest(s) up in {self.boot_s} s "
                       f"({self.boot_memory.get('pss_mib_per_guest')} MiB each)")

    def remove_guests(self, guests: tuple[GuestAddr, ...]) -> None:
        """Power these guests off (in parallel), then remove what each had."""
        self._quit([g.index for g in guests if g.index in self.procs])
        for g in reversed(guests):
            self.procs.pop(g.index, None)
            self.links.pop(g.index, None)
            self.cgroups.pop(g.index, None)
            self.killed.discard(g.index)
            self.addrs.pop(g.index, None)
            if g.index in self.stacks:
                self.stacks.pop(g.index).close()

    def _guest_dir(self, stack: ExitStack, g: GuestAddr) -> None:
        """Guest g's own work directory (disk overlay, hostfs results, console), listed."""
        if self.ctx.runner.dry_run:
            return
        gdir = self.work / f"g{g.index}"
        with shielded():  # listed and due for removal, or neither
            entry = self.ctx.manifest.add(kind="dir", path=str(gdir))
            gdir.mkdir(parents=True, exist_ok=True)
            stack.callback(self._remove_dir, gdir, entry)

    @shielding
    def _remove_dir(self, gdir: Path, entry: dict) -> None:
        shutil.rmtree(gdir, ignore_errors=True)
        for d in (self.work, self.work.parent):  # the run's directories, once empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        self.ctx.manifest.remove(entry)

    def _cmdline(self, g: GuestAddr, gdir: Path) -> list[str]:
        s, t = self.ctx.spec, self.ctx.topo
        return [f"mem={s.vm_memory_mib}M", f"ubd0={gdir / 'cow'},{self.image.root}",
                "root=/dev/ubda", "ro", "init=/sbin/gamebed-uml-init",
                f"hostfs={gdir / 'results'}", "con=null", "con0=fd:0,fd:1", "quiet",
                f"vec0:transport=raw,ifname={g.nic_name},mac={g.nic.mac}",
                f"gamebed.guest={g.index}", f"gamebed.ip={g.nic.ip}/{PREFIX_LEN}",
                f"gamebed.peer={t.client.ip},{t.client.mac}", f"gamebed.port={t.game_port}",
                *mode_args(self.mode)]

    def _boot(self, g: GuestAddr) -> None:
        """Boot guest g in its cgroup (again after a fault killed it: same slot)."""
        c, i = self.ctx, g.index
        gdir = self.work / f"g{i}"
        if not c.runner.dry_run:
            (gdir / "results").mkdir(parents=True, exist_ok=True)
            (gdir / "console.log").unlink(missing_ok=True)  # the last boot's is collected
        binary = (str(self.kernel.binary) if self.kernel
                  else f"{uml_kernel.CACHE}/DIGEST/{uml_kernel.BINARY}")
        # on the guests' CPUs through the cpuset where there is one (set before each load)
        cpus = None if self.cpuset else c.placement.guest_cpus
        cmd = [*in_netns(g.netns), *pinned(cpus, [binary, *self._cmdline(g, gdir)])]
        groups = self.cgroups[i].procs_files  # the guests' parent's cpuset's too
        self.procs[i] = self.stacks[i].enter_context(ManagedProcess(
            cmd, c.runner, c.manifest, log_path=gdir / "console.log", name=f"uml{i}",
            how=How(3.0, stdin_pipe=True, group=True,
                    cgroups=() if c.runner.dry_run else tuple(groups))))
        self.links[i] = GuestLink(i, self.procs[i].send, gdir / "console.log")

    def fault(self, f: Fault) -> None:
        """`guest`: the UML kernel's process and its helpers die (SIGKILL).  What its
        server had flushed to hostfs stays and is collected; it boots again before the
        next mode (begin)."""
        self.killed.add(f.guest)
        self.procs[f.guest].stop(signal.SIGKILL)

    def recover(self, f: Fault) -> None:
        raise RuntimeError("a UML guest killed by a fault is not restarted during the load "
                           "(gamebed/fault.py BACKEND_FAULTS)")

    def _reboot_killed(self) -> None:
        for i in sorted(self.killed):
            self.ctx.progress(f"      booting UML guest {i} again (a fault killed it)")
            self._boot(self.addrs[i])
        if self.killed and not self.ctx.runner.dry_run:
            self._wait_agents(sorted(self.killed))
        self.killed.clear()

    def _quit(self, indices: list[int]) -> None:
        """Ask these guests to power off (they do in parallel); each process's own exit
        then kills whatever remains of it."""
        live = [self.procs[i] for i in indices if self.procs[i].alive()]
        for i in indices:
            if self.procs[i].alive():
                self.links[i].request("quit")
        deadline = time.monotonic() + 5.0 + 0.1 * len(live)
        for p in live:
            while p.alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _console(self, i: int) -> str:
        try:
            return (self.work / f"g{i}" / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    def _check_alive(self, i: int, what: str = "it answered") -> None:
        if not self.procs[i].alive():
            why = reason_lines(self._console(i)) or ["(no reason on its console)"]
            raise RuntimeError(f"UML guest {i} stopped before {what}: {' | '.join(why)} "
                               f"(console {self.work / f'g{i}' / 'console.log'})")

    def _wait_agents(self, indices: list[int]) -> None:
        def status(up: int, total: int) -> None:
            self.ctx.progress.status(f"{up}/{total} UML guests booted")
        await_up([self.links[i] for i in indices], BOOT_TIMEOUT_S + 5.0 * len(indices),
                 lambda i: self._check_alive(i, "its agent started"), status)

    def _ask(self, op: str, indices: list[int], **args: object
             ) -> dict[int, tuple[GuestLink, int]]:
        """One request to each of these guests' agents; what to await the replies by."""
        return {i: (self.links[i], self.links[i].request(op, **args)) for i in indices}

    def _memory(self, avail0: int | None) -> dict:
        pss = list(self.cgroups.memory().values())
        charged = list(self.cgroups.charged_mib().values())
        avail1 = available_mib()
        used = avail0 - avail1 if avail0 is not None and avail1 is not None else None
        return {"pss_mib_per_guest": round(sum(pss) / len(pss), 1) if pss else None,
                "charged_mib_per_guest": (round(sum(charged) / len(charged), 1)
                                          if charged else None),
                "host_memory_used_mib": used}

    # --- one mode: receive path and servers ----------------------------------------------

    def _mode_dir(self, i: int) -> Path:
        return self.work / f"g{i}" / "results" / self.point.mode

    def begin(self, point: Point) -> None:
        c, self.point = self.ctx, point
        self._reboot_killed()
        if not c.runner.dry_run:
            for i in self.procs:
                shutil.rmtree(self._mode_dir(i), ignore_errors=True)
        # no idle exit: the server serves every point, each ended by collect(); each
        # agent answers once its server is ready (a fork of the agent per guest, all on
        # the guests' CPUs: seconds each when dozens share one core)
        # the server's game goes with the request (used when the agent starts it)
        asked = {i: (self.links[i], self.links[i].request(
            "run", mode=point.mode, idle_exit=0,
            server=[str(a) for a in c.spec.server_args(i)])) for i in self.procs}
        self.running_mode = point.mode
        if not c.runner.dry_run:
            await_replies(asked, 30.0 + 3.0 * len(self.procs),
                          "their game servers' start", self._check_alive)
        if self.cpuset:  # the load runs on the guests' CPUs only, every guest task
            self.cpuset.narrow(c.placement.guest_cpus)

    def end_load(self) -> None:
        """The load is over: every guest ends the point now (`flush`: each server writes
        its records, reading first what its socket still holds, and keeps running for
        the next point) while the host side weighs and stops its own parts."""
        if self.cpuset:  # the load is over: the servers' last work may take every CPU
            self.cpuset.widen()
        self.flushing = self._ask("flush", [i for i in self.procs if i not in self.killed])

    def collect(self) -> None:
        """Wait for every guest's records (end_load asked for them) and move them into
        the point directory."""
        asked, self.flushing = self.flushing, {}
        try:
            await_replies(asked, 20.0 + 0.5 * len(self.procs), "their records written",
                          self._check_alive)
        except TimeoutError as e:
            raise RuntimeError(f"{e}; see their consoles under {self.work}") from e
        self.running_mode = None
        for g in self.point.topo.guests:
            dest = self.point.dir / f"guest{g.index}"
            dest.mkdir(parents=True, exist_ok=True)
            for f in self._mode_dir(g.index).iterdir():
                if f.name != "ready":
                    shutil.move(f, dest / f.name)
            gdir = self.work / f"g{g.index}"
            shutil.copy2(gdir / "console.log", dest / "console.log")
            if (gdir / "results" / "server.log").exists():  # the server's, of every point
                shutil.copy2(gdir / "results" / "server.log", dest / "server.log")

    def end(self) -> None:
        """After a failure mid-mode: stop the servers so the next mode can start."""
        if self.running_mode is None or self.ctx.runner.dry_run:
            return
        asked = self._ask("stop", [i for i in self.procs
                                   if i not in self.killed and self.procs[i].alive()])
        self.flushing = {}
        try:  # best effort: the guests go next anyway
            await_replies(asked, 10.0 + 0.2 * len(self.procs), "their servers stopped",
                          lambda i: None)
        except (TimeoutError, GuestError) as e:
            log.warning("%s", e)
        self.running_mode = None

    def stop(self) -> None:
        self.remove_guests(tuple(g for _, g in sorted(self.addrs.items())))
        self.shared.close()

    def guest_info(self) -> list[dict]:
        return [{"pid": self.procs[g.index].pid, "netns": g.netns,
                 "console": str(self.work / f"g{g.index}" / "console.log")}
                for _, g in sorted(self.addrs.items())]

    def environment(self) -> dict:
        s, img = self.ctx.spec, self.image
        return {"backend": self.name, "shared_clock": False, "clock_drifts": False,
                "clock": CLOCK_NOTE,
                "cpu_cap": s.tuning.cpu_cap, "cpu_weight": s.tuning.cpu_weight,
                "server_work_us": s.game.server_work_us, "vm_memory_mib": s.vm_memory_mib,
                **(self.kernel.describe() if self.kernel else {}),
                "uml_mode": self.mode,
                "image": img.info.get("digest") if img else None,
                "guest_nic": "vec0 (raw socket on a veth); host mode: tc BPF decoder on "
                             "vec0, logging the guest kernel's own stamp too; guest mode: "
                             "no decoder",
                "boot_s": self.boot_s, **self.boot_memory, "cost_model": cost_model(self.mode)}
