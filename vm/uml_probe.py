"""The probe behind `--backend auto` (root): one real UML guest of gamebed's image and
kernel, booted with no network, its agent answering on the console, then powered off;
a success cached for this host boot (vm/__init__.py uml_usable asks it)."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from gamebed.manifest import VM_DIR
from gamebed.proc import How, shielded, shielding
from gamebed.resources import ManagedProcess
from vm import uml_image, uml_kernel
from vm.guestlink import GuestLink, reason_lines
from vm.shared import once
from vm.uml import guest_kernel, mode_args, run_mode

PROBE_CACHE = Path("/run/gamebed-uml.json")  # tmpfs: per host boot
PROBE_TIMEOUT_S = 90.0


def probe(spec, progress=print, cache: Path = PROBE_CACHE) -> str:
    """Boot one guest (gamebed's image, the spec's kernel and mode, no network), wait for
    its agent to answer on the console, power it off.  Returns what answered; raises with
    the console's reason lines.  A success is cached for this host boot."""
    from gamebed.manifest import Manifest, new_prefix
    from gamebed.proc import Runner
    from vm.accel import boot_id

    kernel = guest_kernel(spec.uml.uml_kernel, spec.uml.uml_mode, progress)
    mode = run_mode(kernel, spec.uml.uml_mode)
    image = once("uml-image", lambda: uml_image.build(Runner(), progress))
    key = {"boot_id": boot_id(), "kernel": kernel.digest, "image": image.info["digest"],
           "mode": mode}
    try:
        known = json.loads(cache.read_text())
        if {k: known.get(k) for k in key} == key:
            return known["detail"]
    except (OSError, ValueError, KeyError):
        pass
    progress(f"uml: booting one guest to check that user-mode Linux runs here "
             f"({kernel.info.get('release')}, {mode})")
    manifest = Manifest(new_prefix())
    try:
        took = _probe_boot(kernel, image, (mode, spec.vm_memory_mib), manifest)
    finally:
        manifest.close()
    detail = (f"a user-mode Linux {kernel.info.get('release')} guest ({mode}) "
              f"booted and its agent answered in {took:.1f} s")
    try:
        cache.write_text(json.dumps({**key, "detail": detail}))
    except OSError:
        pass  # only costs the next run a probe
    return detail


def _probe_boot(kernel: uml_kernel.UmlKernel, image: uml_image.UmlImage,
                how: tuple[str, int], manifest) -> float:
    """Boot one guest in mode how[0] with how[1] MiB; seconds until its agent answered."""
    from gamebed.proc import Runner

    mode, memory_mib = how
    runner, work = Runner(), VM_DIR / manifest.prefix / "probe"
    with ExitStack() as stack:
        with shielded():
            entry = manifest.add(kind="dir", path=str(work))
            (work / "results").mkdir(parents=True, exist_ok=True)

        @stack.callback
        @shielding
        def _remove() -> None:
            shutil.rmtree(work.parent, ignore_errors=True)
            manifest.remove(entry)

        console = work / "console.log"
        cmd = [kernel.binary, f"mem={memory_mib}M", f"ubd0={work / 'cow'},{image.root}",
               "root=/dev/ubda", "ro", "init=/sbin/gamebed-uml-init",
               f"hostfs={work / 'results'}", "con=null", "con0=fd:0,fd:1", "quiet",
               "gamebed.guest=0", *mode_args(mode)]
        proc = stack.enter_context(ManagedProcess(
            cmd, runner, manifest, log_path=console, name="uml-probe",
            how=How(3.0, stdin_pipe=True, group=True)))
        t0, link = time.monotonic(), GuestLink(0, proc.send, console)
        while not link.up:
            link.poll()
            if link.up:
                break
            if not proc.alive() or time.monotonic() - t0 > PROBE_TIMEOUT_S:
                why = reason_lines(_read(console)) or ["no reason on its console"]
                state = "stopped" if not proc.alive() else f"no answer in {PROBE_TIMEOUT_S:g} s"
                raise RuntimeError(f"a probe UML guest {state}: {' | '.join(why)}")
            time.sleep(0.1)
        took = time.monotonic() - t0
        link.request("quit")
        deadline = time.monotonic() + 10.0
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    return took


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
