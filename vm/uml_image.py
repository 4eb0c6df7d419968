"""The user-mode Linux guest image: a read-only root disk shared by every UML guest
(root: unpacking a root tree with device nodes, mkfs).

The same Debian bookworm root as the VM image (vm/image.py's cached mmdebstrap
tarball), plus what a UML game guest needs:

- /lib/gamebed/uml/{sch_ingress,cls_bpf}.ko from Debian's user-mode-linux package
  (the tc ingress hook and the BPF classifier, modules in its kernel);
- /opt/gamebed/decoder.o: the project's tc BPF decoder, built with pair logging
  (it records the guest kernel's own stamp beside the host's, guest-driver/bpf/);
- fpsmodel in /opt/gamebed, the guest agent (vm/guest/uml_agent.py) and the init
  (vm/guest/uml-init).

Output, in a cache directory named by the digest of every input (any change
rebuilds): root.img (raw ext4; each guest boots it read-only behind its own
copy-on-write file, UML's ubd `cow,backing` form) and image.json.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gamebed.proc import Runner
from hostside import bpf
from vm import image as vm_image

UML_BIN = "linux.uml"
UML_MODULES = Path("/usr/lib/uml/modules")
NEEDED_KOS = ("kernel/net/sched/sch_ingress.ko", "kernel/net/sched/cls_bpf.ko")
GUEST = vm_image.GUEST
SETUP_HINT = "run `bash scripts/setup.sh` (it installs user-mode-linux and mmdebstrap)"


@dataclass(frozen=True)
class UmlImage:
    dir: Path
    root: Path  # the shared read-only root disk (raw ext4)
    kernel_release: str
    info: dict


def uml_binary() -> str:
    """The UML kernel's path, or FileNotFoundError saying how to get it."""
    path = shutil.which(UML_BIN)
    if not path:
        raise FileNotFoundError(f"{UML_BIN} (Debian's user-mode-linux) is missing: {SETUP_HINT}")
    return path


def kernel_release() -> str:
    """The release of Debian's UML kernel: the one module tree it ships."""
    trees = sorted(p.name for p in UML_MODULES.iterdir()) if UML_MODULES.is_dir() else []
    if len(trees) != 1:
        raise FileNotFoundError(f"expected one UML module tree in {UML_MODULES}, found "
                                f"{trees or 'none'}: {SETUP_HINT}")
    return trees[0]


def _sources() -> list[Path]:
    return [*sorted((vm_image.ROOT / "fpsmodel").glob("*.py")), GUEST / "uml-init",
            GUEST / "uml_agent.py", Path(__file__)]


def _fill_root(stage: Path, release: str, decoder: Path) -> None:
    kos = stage / "lib" / "gamebed" / "uml"
    kos.mkdir(parents=True, exist_ok=True)
    for rel in NEEDED_KOS:
        shutil.copy2(UML_MODULES / release / rel, kos / Path(rel).name)
    opt = stage / "opt" / "gamebed"
    shutil.copytree(vm_image.ROOT / "fpsmodel", opt / "fpsmodel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (opt / "guest").mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST / "uml_agent.py", opt / "guest" / "uml_agent.py")
    shutil.copy2(decoder, opt / "decoder.o")
    shutil.copy2(GUEST / "uml-init", stage / "sbin" / "gamebed-uml-init")
    os.chmod(stage / "sbin" / "gamebed-uml-init", 0o755)
    for d in ("mnt/results", "sys/fs/bpf"):
        (stage / d).mkdir(parents=True, exist_ok=True)


def build(runner: Runner, progress: Callable[[str], None] = print,
          force: bool = False) -> UmlImage:
    """Build (or find in the cache) the UML root disk."""
    uml_binary()
    release = kernel_release()
    decoder = bpf.build("decoder", runner, defines=("GB_PAIRS",))
    key = vm_image._digest([b"uml", release.encode(), " ".join(vm_image.PACKAGES).encode(),
                            vm_image.SUITE.encode(), decoder.read_bytes(),
                            *(p.read_bytes() for p in _sources())])
    out = vm_image.CACHE / f"uml-{key}"
    if (out / "image.json").exists() and not force:
        return load(out)
    t0 = time.monotonic()
    tar = vm_image._rootfs_tar(runner, progress)
    work = vm_image.CACHE / f"uml-work-{key}"
    shutil.rmtree(work, ignore_errors=True)
    stage = work / "root"
    stage.mkdir(parents=True)
    try:
        progress("uml image: unpacking the root and adding gamebed")
        runner.run(["tar", "-xpf", tar, "-C", stage])
        _fill_root(stage, release, decoder)
        used = sum(f.lstat().st_size for f in stage.rglob("*") if f.is_file())
        size_mib = int(used / 2**20 * 1.2) + 32
        out.mkdir(parents=True, exist_ok=True)
        progress(f"uml image: mkfs.ext4 ({size_mib} MiB)")
        part = out / "root.img.part"
        runner.run(["mkfs.ext4", "-q", "-F", "-L", "gamebed-uml", "-d", stage, part,
                    f"{size_mib}M"])
        os.chmod(part, 0o444)  # shared by every guest: nobody writes it
        part.rename(out / "root.img")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = {"digest": key, "uml_release": release, "suite": vm_image.SUITE,
            "packages": list(vm_image.PACKAGES), "build_s": round(time.monotonic() - t0, 1),
            "root_mib": size_mib, "decoder": decoder.name}
    (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    progress(f"uml image: built {out} in {info['build_s']} s")
    return load(out)


def load(out: Path) -> UmlImage:
    info = json.loads((out / "image.json").read_text())
    return UmlImage(out, out / "root.img", info["uml_release"], info)
