"""Shared helpers of the tests (no privileges to import): the skip helpers, each of which
says what is missing and how to get it.

tests/unit needs nothing; tests/net needs root and network namespaces; tests/vm needs
QEMU/libvirt, or user-mode Linux for the `uml` tests.  Test modules import from here;
tests/conftest.py holds only pytest's hooks and fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create network namespaces"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "needs iproute2 (ip, tc): run scripts/setup.sh"
    name = f"gbprobe{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


_NETNS = None


def skip_unless_netns() -> None:
    global _NETNS
    if _NETNS is None:
        _NETNS = _netns_problem() or ""
    if _NETNS:
        pytest.skip(_NETNS)


def skip_unless_clang() -> None:
    if not shutil.which("clang"):
        pytest.skip("needs clang to build the BPF programs: run scripts/setup.sh")


def _vm_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start libvirt domains and their taps"
    need = {"qemu-system-x86_64": "qemu-system-x86", "libvirtd": "libvirt-daemon-system",
            "mmdebstrap": "mmdebstrap", "qemu-img": "qemu-utils", "cpio": "cpio"}
    missing = [f"{cmd} ({pkg})" for cmd, pkg in need.items() if not shutil.which(cmd)]
    if not list(Path("/usr/src").glob("linux-headers-*-cloud-amd64")):
        missing.append("linux-headers-cloud-amd64")
    if not Path("/usr/src/linux-source-6.1.tar.xz").exists():
        missing.append("linux-source-6.1")
    if missing:
        return f"needs {', '.join(missing)}: run scripts/setup.sh"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "needs libvirt-python (the libvirt extra): run scripts/setup.sh"
    return None


def skip_unless_vm() -> None:
    """Real guests under libvirt (KVM where it boots, else TCG)."""
    problem = _vm_problem()
    if problem:
        pytest.skip(problem)
    skip_unless_netns()
    skip_unless_clang()


def _uml_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create the UML guests' namespaces and cgroups"
    from vm import uml_prerequisites

    # only what is missing skips: a kernel that is built but does not boot fails the tests
    why = uml_prerequisites()
    return f"{why}: run scripts/setup.sh" if why else None


def skip_unless_uml() -> None:
    """User-mode Linux guests (gamebed's UML kernel, built on first use), plus namespaces
    and clang."""
    problem = _uml_problem()
    if problem:
        pytest.skip(problem)
    skip_unless_netns()
    skip_unless_clang()
    if not shutil.which("mmdebstrap") and not list((ROOT / "build" / "image").glob("rootfs-*")):
        pytest.skip("needs mmdebstrap for the guests' root (or a cached one): run "
                    "scripts/setup.sh")


def skip_unless_kbuild() -> None:
    if not shutil.which("make") or not list(Path("/usr/src").glob("linux-headers-*-cloud-amd64")):
        pytest.skip("needs make and Debian's linux-headers-cloud-amd64: run scripts/setup.sh")
    if not Path("/usr/src/linux-source-6.1.tar.xz").exists():
        pytest.skip("needs Debian's linux-source-6.1: run scripts/setup.sh")


def skip_unless_chromium() -> None:
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromium-driver ({', '.join(missing)} "
                    "missing): run scripts/setup.sh")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("needs selenium (the dev extra): run scripts/setup.sh")


# -- `gamebed launch`, run as a user would, with a state directory of the test's own ------

def launch(tmp_path: Path, backend: str, count: int, timeout: float = 300) -> tuple[dict, dict]:
    """`gamebed launch --backend B --count N`: (its JSON answer, the environment that
    finds its manifests again)."""
    import json
    import sys

    env = dict(os.environ, GAMEBED_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run([sys.executable, "-m", "gamebed", "launch", "--backend", backend,
                        "--count", str(count)], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), env


def destroy_launched(env: dict, check_prefix: str | None = None) -> None:
    """`gamebed launch --destroy`; with `check_prefix`: it succeeded, nothing of that
    launch is left, and no launch manifest either."""
    import sys

    from gamebed.leaks import NOTHING, leftovers

    r = subprocess.run([sys.executable, "-m", "gamebed", "launch", "--destroy"], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    if check_prefix is None:
        return
    assert r.returncode == 0, r.stderr
    assert leftovers(check_prefix) == NOTHING
    assert not list(Path(env["GAMEBED_STATE_DIR"]).glob("gl*.json"))


def run_benchmark(script: str, *args: str, timeout: float = 600,
                  ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run benchmarks/SCRIPT at the given (smallest) size as a user would, from the
    repository root; its output, or a failure that shows the script's own words.
    `ok_codes`: the exits that are a verdict, not a breakage (a check script's 1)."""
    import sys

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode in ok_codes, f"{script} exited {r.returncode}:\n{r.stdout[-3000:]}\n" \
                              f"{r.stderr[-3000:]}"
    return r.stdout


V2_ROOT_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")


def cgroup_layout(name: str):
    """A stored host's cgroup layout (tests/data/cgroups/mountinfo-NAME): hybrid is this
    machine kind's, unified a Debian cloud kernel's with cgroup2 alone."""
    from gamebed.cgroups import parse_mountinfo

    text = (ROOT / "tests" / "data" / "cgroups" / f"mountinfo-{name}").read_text()
    offered = V2_ROOT_CONTROLLERS if name == "unified" else ()
    return parse_mountinfo(text, lambda mount: list(offered))
