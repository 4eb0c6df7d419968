"""Build gamebed's patched kernel modules out of tree (no privileges, just a compiler).

Each module is one file of Debian's `linux-source-6.1` tarball, patched with a
patch from guest-driver/, and built with Kbuild against Debian's
`linux-headers-<release>-cloud-amd64`:

- `virtio_net` (guest-driver/virtio_net/): the guest NIC driver that moves the
  host's trailer stamp into skb->tstamp (module parameter host_tstamp).
- `tun` (guest-driver/host/): the host-side tap that appends the trailer itself
  (module parameter gb_trailer); it cannot load on this host (no modules), so the
  tests load it inside a guest.

The built .ko is cached under build/kmod/ by the digest of its inputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gamebed.proc import Runner

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "kmod"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
HEADERS_GLOB = "linux-headers-*-cloud-amd64"
SETUP_HINT = ("run `bash scripts/setup.sh` (Debian: linux-source-6.1, "
              "linux-headers-cloud-amd64)")


@dataclass(frozen=True)
class ModuleSource:
    name: str
    member: str  # path of the source file inside the tarball, below linux-source-6.1/
    patch: Path


MODULES = {
    "virtio_net": ModuleSource("virtio_net", "drivers/net/virtio_net.c",
                               ROOT / "guest-driver" / "virtio_net" / "virtio_net.patch"),
    "tun": ModuleSource("tun", "drivers/net/tun.c",
                        ROOT / "guest-driver" / "host" / "tun.patch"),
}


def kernel_release() -> str:
    """The release of the one Debian cloud kernel whose headers are installed."""
    found = sorted(Path("/usr/src").glob(HEADERS_GLOB))
    if not found:
        raise FileNotFoundError(f"no /usr/src/{HEADERS_GLOB}: {SETUP_HINT}")
    return found[-1].name.removeprefix("linux-headers-")


def _extract(member: str, dest: Path) -> None:
    if not SOURCE_TARBALL.exists():
        raise FileNotFoundError(f"{SOURCE_TARBALL} is missing: {SETUP_HINT}")
    with tarfile.open(SOURCE_TARBALL) as tar:
        f = tar.extractfile(f"linux-source-6.1/{member}")
        if f is None:
            raise FileNotFoundError(f"{member} not in {SOURCE_TARBALL}")
        dest.write_bytes(f.read())


def build(name: str, runner: Runner, release: str | None = None) -> Path:
    """Patch and build module `name`; returns the .ko (cached while inputs are unchanged)."""
    src = MODULES[name]
    release = release or kernel_release()
    headers = Path("/usr/src") / f"linux-headers-{release}"
    if not headers.is_dir():
        raise FileNotFoundError(f"{headers} is missing: {SETUP_HINT}")
    h = hashlib.sha256(src.patch.read_bytes())
    h.update(f"{release}:{SOURCE_TARBALL.stat().st_mtime_ns}".encode())
    work = CACHE / f"{name}-{release}-{h.hexdigest()[:12]}"
    ko = work / f"{name}.ko"
    if ko.exists():
        return ko
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _extract(src.member, work / f"{name}.c")
    (work / "Kbuild").write_text(f"obj-m := {name}.o\n")
    # patch -p1 expects a/drivers/net/x.c: strip every directory with -d and a flat layout
    runner.run(["patch", "--batch", "--forward", "-p3", "-d", str(work), "-i", str(src.patch)])
    jobs = str(len(os.sched_getaffinity(0)))
    runner.run(["make", "-C", str(headers), f"M={work}", "-j", jobs, "modules"])
    if not ko.exists():
        raise RuntimeError(f"the build of {name} produced no {ko}")
    return ko
