"""gamebed's own UML kernel, for real: it boots here (AMX or not) in both modes, refuses a
host area larger than its limit with an error line instead of a panic, and `--backend
auto` takes UML only after a real guest answered."""

import subprocess
from pathlib import Path

import pytest

import vm
from gamebed.spec import ExperimentSpec
from tests.support import skip_unless_uml
from vm import uml_kernel, uml_probe
from vm.guestlink import reason_lines

pytestmark = pytest.mark.uml
HOSTFS_INIT = ("mem=64M", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
               "init=/bin/true", "con=null", "con0=null,fd:1")


@pytest.fixture(scope="module")
def kernel() -> uml_kernel.UmlKernel:
    skip_unless_uml()
    return uml_kernel.ensure()  # built on first use (about 3 min), then cached



def test_gamebeds_kernel_boots_to_user_space_in_both_modes(kernel):
    assert kernel.binary.is_relative_to(uml_kernel.CACHE)
    for extra in ((), ("seccomp=on",)) if kernel.has_seccomp else ((),):
        console = uml_kernel.smoke_boot(kernel.binary, extra)
        assert "Attempted to kill init! exitcode=0x00000000" in console
        assert "fp regs failed" not in console


def test_a_host_area_above_the_kernels_limit_is_an_error_line_not_a_panic(kernel, tmp_path):
    r = subprocess.run([str(kernel.binary), *HOSTFS_INIT, "xstate_max=1024",
                        f"uml_dir={tmp_path}"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, env={"TMPDIR": str(tmp_path)})
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "Kernel panic" not in out and "Attempted to kill init" not in out
    line = next(ln for ln in out.splitlines() if "XSAVE area" in ln)
    assert line.startswith("gamebed: the host's XSAVE area is")
    assert "(1024 bytes)" in line
    assert reason_lines(out) == [line]
    with pytest.raises(RuntimeError, match="more than this UML kernel holds"):
        uml_kernel.smoke_boot(kernel.binary, ("xstate_max=1024",))


def test_auto_takes_uml_after_a_real_guest_answered(kernel, tmp_path):
    cache = tmp_path / "probe.json"
    detail = uml_probe.probe(ExperimentSpec(), cache=cache)
    assert "booted and its agent answered" in detail
    assert kernel.digest in cache.read_text()
    assert uml_probe.probe(ExperimentSpec(), cache=cache) == detail  # cached for this host boot


def test_auto_takes_namespaces_when_the_guest_panics_and_says_why(kernel, tmp_path):
    fake = tmp_path / "linux.uml"
    fake.write_text("#!/bin/sh\ncase \"$1\" in --version) echo 6.1.0;; *)\n"
                    "echo 'Run /sbin/gamebed-uml-init as init process'\n"
                    "echo 'userspace - ptrace set fp regs failed, errno = 14'\n"
                    "echo 'Kernel panic - not syncing: Attempted to kill init!'\n"
                    "echo 'Call Trace:'; echo ' [<6069304e>] ? panic+0x0/0x376'; exit 1;; "
                    "esac\n")
    fake.chmod(0o755)
    spec, why = vm.resolve_backend(ExperimentSpec.of(uml_kernel=str(fake)))
    assert spec.backend == "netns"
    assert "ptrace set fp regs failed" in why and "panic+0x0" not in why
    assert "\n" not in why
    assert not list(Path("/var/lib/gamebed").glob("*/probe"))
