"""A cgroup-v2-only host to test gamebed on: Debian's cloud kernel in QEMU (root).

This machine kind mounts cgroup v1; most users' hosts mount only v2.  `boot()` starts
a VM on Debian's cloud kernel (KVM where it works, else TCG) whose root is this host's
own root, read-only over virtiofs under a tmpfs overlay: the same Python, the same
checkout and virtualenv, the cached UML kernel and root image, nothing to build in
there.  A second virtiofs share (`out`) carries the job in and its results back.

Two ways to boot it (`init`):
- `plain`: vm/guest/v2init.py as PID 1 mounts cgroup2 alone at /sys/fs/cgroup;
- `systemd`: systemd 252 as PID 1 (its default: the unified hierarchy) runs the job
  as `gamebed-check.service`, where gamebed has to ask systemd for a delegated scope.

The job is a shell script; its output is `job.log` and its exit status `rc` in the
out directory.  Used by tests/vm/test_cgroup_v2.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gamebed.proc import Runner
from vm import kmod
from vm.image import CACHE, GUEST, module_closure

VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")
QEMU = "qemu-system-x86_64"
MODULES = ("virtio_pci", "virtiofs", "overlay")
INITS = ("plain", "systemd")
# the check and nothing else: the host's own units (tmpfiles crawling the shared root,
# udev) have nothing to do in here
SERVICE = """[Unit]
Description=gamebed's check on a cgroup-v2 host
DefaultDependencies=no
[Service]
Type=oneshot
ExecStart=/bin/sh -c '/bin/sh /gamebed-out/job.sh > /gamebed-out/job.log 2>&1; \
echo $? > /gamebed-out/rc; sync'
ExecStopPost=/bin/systemctl --no-block poweroff
"""
TARGET = """[Unit]
Description=gamebed's check, and nothing else
DefaultDependencies=no
Requires=gamebed-check.service
AllowIsolate=yes
"""


def missing() -> str | None:
    """What this host lacks to boot the test VM (None: nothing)."""
    if not shutil.which(QEMU):
        return f"{QEMU} is missing (bash scripts/setup.sh installs qemu-system-x86)"
    if not VIRTIOFSD.exists():
        return f"{VIRTIOFSD} is missing (qemu-system-common's virtiofsd)"
    try:
        release = kmod.kernel_release()
    except (OSError, RuntimeError, ValueError) as e:
        return f"Debian's cloud kernel is not installed ({e})"
    if not (Path("/boot") / f"vmlinuz-{release}").exists():
        return f"/boot/vmlinuz-{release} is missing (linux-image-cloud-amd64)"
    return None


def initramfs(runner: Runner) -> Path:
    """The busybox initramfs that mounts the host's root (cached by its inputs)."""
    release = kmod.kernel_release()
    mods = module_closure(release, MODULES)
    init = (GUEST / "v2host-init").read_bytes()
    key = hashlib.sha256(init + release.encode() + " ".join(mods).encode()).hexdigest()[:16]
    out = CACHE / f"v2host-{key}.cpio.gz"
    if out.exists():
        return out
    work = CACHE / f"v2host-{key}.d"
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("bin", "proc", "sys", "dev", "modules"):
        (work / sub).mkdir(parents=True)
    shutil.copy2("/bin/busybox", work / "bin" / "busybox")
    names = []
    for rel in mods:
        shutil.copy2(Path("/lib/modules") / release / rel, work / "modules" / Path(rel).name)
        names.append(Path(rel).name.removesuffix(".ko"))
    (work / "modules.order").write_text("\n".join(names) + "\n")
    (work / "init").write_bytes(init)
    os.chmod(work / "init", 0o755)
    files = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    cpio = runner.run(["cpio", "--quiet", "-o", "-H", "newc", "-D", str(work)],
                      input="\n".join(files) + "\n", capture=True, binary=True)
    part = out.with_suffix(".part")
    part.write_bytes(gzip.compress(cpio.stdout, 6))
    part.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    return out


@dataclass(frozen=True)
class Result:
    rc: int | None  # the job's exit status; None when it never finished
    log: str  # job.log
    console: str
    seconds: float


def _accel() -> list[str]:
    # KVM only where it is real (vmx/svm); a PVM-only /dev/kvm boots this kernel slowly
    flags = Path("/proc/cpuinfo").read_text()
    if Path("/dev/kvm").exists() and (" vmx" in flags or " svm" in flags):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def _virtiofsd(sock: Path, source: str, log: Path, ro: bool) -> subprocess.Popen:
    opts = f"source={source},cache={'always' if ro else 'none'},sandbox=chroot"
    # an open file per inode the guest has looked up: far more than the default limit
    return subprocess.Popen([str(VIRTIOFSD), f"--socket-path={sock}", "-o", opts,
                             "--rlimit-nofile=1000000"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _qemu_args(work: Path, init: str, memory_mib: int, cpus: int, rd: Path) -> list[str]:
    release = kmod.kernel_release()
    append = (f"console=ttyS0 gamebed.init={init} panic=-1 quiet "
              "systemd.show_status=0 systemd.log_target=console")
    return [QEMU, *_accel(), "-m", f"{memory_mib}M", "-smp", str(cpus),
            "-object", f"memory-backend-memfd,id=mem,size={memory_mib}M,share=on",
            "-numa", "node,memdev=mem", "-nographic", "-no-reboot", "-nic", "none",
            "-kernel", f"/boot/vmlinuz-{release}", "-initrd", str(rd), "-append", append,
            "-chardev", f"socket,id=root,path={work / 'root.sock'}",
            "-device", "vhost-user-fs-pci,queue-size=1024,chardev=root,tag=hostroot",
            "-chardev", f"socket,id=out,path={work / 'out.sock'}",
            "-device", "vhost-user-fs-pci,queue-size=1024,chardev=out,tag=out",
            "-serial", f"file:{work / 'console.log'}", "-monitor", "none"]


def _prepare(out: Path, job: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in ("job.log", "rc"):
        (out / f).unlink(missing_ok=True)
    (out / "job.sh").write_text(job)
    shutil.copy2(GUEST / "v2init.py", out / "v2init.py")
    (out / "gamebed-check.service").write_text(SERVICE)
    (out / "gamebed-check.target").write_text(TARGET)


def boot(job: str, work: Path, init: str = "plain", timeout_s: float = 600,
         memory_mib: int = 6144, cpus: int = 2) -> Result:
    """Boot the VM, run `job` (a shell script) in it, power it off; what came back."""
    if init not in INITS:
        raise ValueError(f"init {init!r}: one of {', '.join(INITS)}")
    rd = initramfs(Runner())
    out = work / "out"
    _prepare(out, job)
    (work / "console.log").unlink(missing_ok=True)
    t0, procs = time.monotonic(), []
    try:
        procs.append(_virtiofsd(work / "root.sock", "/", work / "virtiofsd.log", ro=True))
        procs.append(_virtiofsd(work / "out.sock", str(out), work / "virtiofsd.log", ro=False))
        for sock in ("root.sock", "out.sock"):
            _wait_for(work / sock, 10)
        qemu = subprocess.Popen(_qemu_args(work, init, memory_mib, cpus, rd),
                                stdout=(work / "qemu.log").open("wb"), stderr=subprocess.STDOUT)
        procs.append(qemu)
        try:
            qemu.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
    rc_file = out / "rc"
    return Result(int(rc_file.read_text()) if rc_file.exists() else None,
                  _text(out / "job.log"), _text(work / "console.log"),
                  round(time.monotonic() - t0, 1))


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"virtiofsd did not make {path}")
        time.sleep(0.05)
