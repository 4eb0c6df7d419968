"""The user-mode Linux guest image: a read-only root disk shared by every UML guest
(root: unpacking a root tree with device nodes, mkfs).

The same Debian bookworm root as the VM image (vm/image.py's cached mmdebstrap
tarball), plus what a UML game guest needs (no kernel modules: gamebed's UML kernel,
vm/uml_kernel.py, has everything built in, so the image does not depend on it):

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

GUEST = vm_image.GUEST


@dataclass(frozen=True)
class UmlImage:
    dir: Path
    root: Path  # the shared read-only root disk (raw ext4)
    info: dict




def _sources() -> list[Path]:
    return [*sorted((vm_image.ROOT / "fpsmodel").glob("*.py")), GUEST / "uml-init",
            GUEST / "uml_agent.py", Path(__file__)]


def _fill_root(stage: Path, decoder: Path, runner: Runner) -> None:
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
    # bytecode made here, by the guest's own python3: the root is read-only, and compiling
    # at every boot costs each guest its CPU time while dozens boot on one core
    runner.run(["chroot", stage, "python3", "-m", "compileall", "-q", "/opt/gamebed"])


def build(runner: Runner, progress: Callable[[str], None] = print,
          force: bool = False) -> UmlImage:
    """Build (or find in the cache) the UML root disk."""
    decoder = bpf.build("decoder", runner, defines=("GB_PAIRS", "GB_MODE_SWITCH"))
    key = vm_image._digest([b"uml", " ".join(vm_image.PACKAGES).encode(),
                            vm_image.SUITE.encode(), decoder.read_bytes(),
                            *(p.read_bytes() for p in _sources())])
    out = vm_image.CACHE / f"uml-{key}"
    if (out / "image.json").exists() and not force:
        return load(out)
    t0 = time.monotonic()
    with vm_image.staged_root(vm_image.CACHE / f"uml-work-{key}", runner, progress,
                              "uml image") as stage:
        _fill_root(stage, decoder, runner)
        size_mib = vm_image.size_for(stage, 1.2, 32)
        out.mkdir(parents=True, exist_ok=True)
        progress(f"uml image: mkfs.ext4 ({size_mib} MiB)")
        part = out / "root.img.part"
        runner.run(["mkfs.ext4", "-q", "-F", "-L", "gamebed-uml", "-d", stage, part,
                    f"{size_mib}M"])
        os.chmod(part, 0o444)  # shared by every guest: nobody writes it
        part.rename(out / "root.img")
    info = {"digest": key, "suite": vm_image.SUITE,
            "packages": list(vm_image.PACKAGES), "build_s": round(time.monotonic() - t0, 1),
            "root_mib": size_mib, "decoder": decoder.name}
    (out / "image.json").write_text(json.dumps(info, indent=2) + "\n")
    progress(f"uml image: built {out} in {info['build_s']} s")
    return load(out)


def load(out: Path) -> UmlImage:
    info = json.loads((out / "image.json").read_text())
    return UmlImage(out, out / "root.img", info)
