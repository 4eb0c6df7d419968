"""`gamebed image build`: the game guest image (root: mmdebstrap, mkfs, device nodes).

A Debian bookworm root (mmdebstrap, minbase + python3, python3-cryptography,
kmod, iproute2) with fpsmodel in /opt/gamebed, the host's Debian cloud kernel's
modules (only those a game guest needs), the patched virtio_net.ko and tun.ko in
/lib/gamebed, and /sbin/gamebed-init (vm/guest/).  Boot is direct: the cloud
kernel plus a small busybox initramfs that loads virtio_blk and switches to the
root disk.  Output, in one cache directory named by the digest of every input
(so any change rebuilds):

    vmlinuz, initrd.gz, base.qcow2 (each VM gets a copy-on-write overlay), image.json

The slow part, the Debian root tarball, is cached separately by package list.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gamebed.proc import Runner
from vm import kmod

ROOT = Path(__file__).resolve().parent.parent
GUEST = Path(__file__).resolve().parent / "guest"
CACHE = Path(os.environ.get("GAMEBED_CACHE", ROOT / "build" / "image"))
# pure modules of the host side that guest programs import (stdlib only)
GUEST_HOSTSIDE = [ROOT / "hostside" / "__init__.py", ROOT / "hostside" / "trailer.py"]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-cryptography", "kmod", "iproute2", "procps")
# modules the guest loads: the initramfs takes the first group, the root disk all
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk")
ROOT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "tun", "ptp_kvm")
SETUP_HINT = "run `bash scripts/setup.sh` (it installs mmdebstrap, qemu-utils, busybox-static)"


@dataclass(frozen=True)
class Image:
    dir: Path
    kernel: Path
    initrd: Path
    base: Path
    release: str
    info: dict


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def _sources() -> list[Path]:
    """Files whose content defines the image (besides packages and kernel release)."""
    files = sorted((ROOT / "fpsmodel").glob("*.py")) + sorted(GUEST.iterdir()) + GUEST_HOSTSIDE
    return [*files, Path(__file__), kmod.MODULES["virtio_net"].patch, kmod.MODULES["tun"].patch]


def module_closure(release: str, names: tuple[str, ...]) -> list[str]:
    """modules.dep paths of `names` and everything they need, dependencies first."""
    base = Path("/lib/modules") / release
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[Path(path).name.split(".ko")[0]] = [path, *rest.split()]
    order: list[str] = []

    def visit(path: str) -> None:
        name = Path(path).name.split(".ko")[0]
        for dep in reversed(deps[name][1:]):  # modules.dep lists the deepest last
            visit(dep)
        if path not in order:
            order.append(path)

    for n in names:
        if n not in deps:
            raise FileNotFoundError(f"module {n} not in {base}/modules.dep: {SETUP_HINT}")
        visit(deps[n][0])
    return order


def rootfs_tar(runner: Runner, progress: Callable[[str], None]) -> Path:
    key = _digest([SUITE.encode(), MIRROR.encode(), " ".join(PACKAGES).encode()])
    tar = CACHE / f"rootfs-{key}.tar"
    if tar.exists():
        return tar
    if not shutil.which("mmdebstrap"):
        raise FileNotFoundError(f"mmdebstrap is missing: {SETUP_HINT}")
    CACHE.mkdir(parents=True, exist_ok=True)
    progress(f"image: mmdebstrap {SUITE} ({', '.join(PACKAGES)}) from {MIRROR}")
    part = tar.with_suffix(".part")
    runner.run(["mmdebstrap", "--variant=minbase", "--format=tar",
                f"--include={','.join(PACKAGES)}", "--quiet", SUITE, part,
                f"deb {MIRROR} {SUITE} main"])
    part.rename(tar)
    return tar


def _fill_root(stage: Path, release: str, kos: dict[str, Path]) -> None:
    """Add modules, the patched drivers, fpsmodel and the init to an unpacked root."""
    src_mods = Path("/lib/modules") / release
    dst_mods = stage / "lib" / "modules" / release
    for rel in module_closure(release, ROOT_MODULES):
        (dst_mods / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_mods / rel, dst_mods / rel)
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copy2(src_mods / f, dst_mods / f)
    (stage / "lib" / "gamebed").mkdir(parents=True, exist_ok=True)
    for name, ko in kos.items():
        shutil.copy2(ko, stage / "lib" / "gamebed" / f"{name}.ko")
    opt = stage / "opt" / "gamebed"
    shutil.copytree(ROOT / "fpsmodel", opt / "fpsmodel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (opt / "hostside").mkdir(parents=True, exist_ok=True)
    for f in GUEST_HOSTSIDE:  # the trailer's owner, for the guest's tap test
        shutil.copy2(f, opt / "hostside" / f.name)
    (opt / "guest").mkdir(parents=True, exist_ok=True)
    for script in ("tuntest.py", "ptpsync.py"):
        shutil.copy2(GUEST / script, opt / "guest" / script)
    shutil.copy2(GUEST / "gamebed-init", stage / "sbin" / "gamebed-init")
    os.chmod(stage / "sbin" / "gamebed-init", 0o755)


def _initramfs(work: Path, release: str, out: Path, runner: Runner) -> None:
    d = work / "initramfs"
    for sub in ("bin", "proc", "sys", "dev", "modules"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise FileNotFoundError(f"/bin/busybox is missing: {SETUP_HINT}")
    shutil.copy2(busybox, d / "bin" / "busybox")
    names = []
    for rel in module_closure(release, INITRAMFS_MODULES):
        shutil.copy2(Path("/lib/modules") / release / rel, d / "modules" / Path(rel).name)
        names.append(Path(rel).name.removesuffix(".ko"))
    (d / "modules.order").write_text("\n".join(names) + "\n")
    shutil.copy2(GUEST / "initramfs-init", d / "init")
    os.chmod(d / "init", 0o755)
    files = sorted(str(p.relative_to(d)) for p in d.rglob("*"))
    cpio = runner.run(["cpio", "--quiet", "-o", "-H", "newc", "-D", str(d)],
                      input="\n".join(files) + "\n", capture=True, binary=True)
    out.write_bytes(gzip.compress(cpio.stdout, 6))


def build(runner: Runner, progress: Callable[[str], None] = print,
          force: bool = False) -> Image:
    """Build (or find in the cache) the image for the installed cloud kernel."""
    release = kmod.kernel_release()
    kernel_src = Path("/boot") / f"vmlinuz-{release}"
    if not kernel_src.exists() or not (Path("/lib/modules") / release).is_dir():
        raise FileNotFoundError(f"{kernel_src} or /lib/modules/{release} missing: install "
                                f"linux-image-{release} ({SETUP_HINT})")
    key = _digest([release.encode(), " ".join(PACKAGES).encode(), SUITE.encode(),
                   *(p.read_bytes() for p in _sources())])
    out = CACHE / f"image-{key}"
    if (out / "image.json").exists() and not force:
        return load(out)
    t0 = time.monotonic()
    kos = {n: kmod.build(n, runner, release) for n in ("virtio_net", "tun")}
    work = CACHE / f"work-{key}"
    with staged_root(work, runner, progress, "image") as stage:
        _fill_root(stage, release, kos)
        runner.run(["depmod", "-b", stage, release])
        size_mib = size_for(stage, 1.3, 64)  # free room: overlays write logs and /tmp
        raw = work / "root.raw"
        progress(f"image: mkfs.ext4 ({size_mib} MiB) and qcow2")
        runner.run(["mkfs.ext4", "-q", "-F", "-L", "gamebed", "-d", stage, raw, f"{size_mib}M"])
        out.mkdir(parents=True, exist_ok=True)
        runner.run(["qemu-img", "convert", "-O", "qcow2", raw, out / "base.qcow2"])
        _initramfs(work, release, out / "initrd.gz", runner)
        shutil.copy2(kernel_src, out / "vmlinuz")
    info = {"digest": key, "release": release, "suite": SUITE, "packages": list(PACKAGES),
            "build_s": round(time.monotonic() - t0, 1),
            "base_qcow2_mib": round((out / "base.qcow2").stat().st_size / 2**20, 1),
            "root_fs_mib": size_mib,
            "initrd_kib": round((out / "initrd.gz").stat().st_size / 1024),
            "modules": {n: str(k) for n, k in kos.items()}}
    (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    progress(f"image: built {out} in {info['build_s']} s ({info['base_qcow2_mib']} MiB qcow2)")
    return load(out)


@contextmanager
def staged_root(work: Path, runner: Runner, progress: Callable[[str], None],
                label: str) -> Iterator[Path]:
    """The Debian root (rootfs_tar) unpacked into work/root, to add gamebed's files to;
    `work` is removed afterwards, whatever happened."""
    tar = rootfs_tar(runner, progress)
    shutil.rmtree(work, ignore_errors=True)
    stage = work / "root"
    stage.mkdir(parents=True)
    try:
        progress(f"{label}: unpacking the root and adding gamebed")
        runner.run(["tar", "-xpf", tar, "-C", stage])
        yield stage
    finally:
        shutil.rmtree(work, ignore_errors=True)


def size_for(stage: Path, factor: float, room_mib: int) -> int:
    """A file system size (MiB) for what is in `stage`, with room to spare."""
    used = sum(f.lstat().st_size for f in stage.rglob("*") if f.is_file())
    return int(used / 2**20 * factor) + room_mib


def load(out: Path) -> Image:
    info = json.loads((out / "image.json").read_text())
    return Image(out, out / "vmlinuz", out / "initrd.gz", out / "base.qcow2", info["release"],
                 info)
