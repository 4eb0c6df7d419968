"""The accelerator decision (vm/accel.py): every failure ends in TCG with its reason.

No root: the probe guest is driven through a fake libvirt connection and a runner
that records commands instead of running them; /dev/kvm, /proc/cpuinfo and
/sys/module are files in tmp_path.  The cache is redirected per test.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gamebed.manifest import Manifest
from vm import accel, libvirt_vm
from vm.image import Image

try:
    from libvirt import libvirtError
except ImportError:  # the same except-path in vm/accel.py takes any Exception

    class libvirtError(Exception):  # noqa: N801 - libvirt's own spelling
        pass


MSR_ERROR = ("internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: "
             "error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: kvm.c:3183: "
             "kvm_buf_set_msrs: Assertion failed.")


class RecordingRunner:
    """Runner stand-in: records commands, runs none (qemu-img needs no real disk here)."""

    dry_run = False

    def __init__(self) -> None:
        self.history: list[list[str]] = []

    def run(self, args, **_kw) -> subprocess.CompletedProcess:
        self.history.append([str(a) for a in args])
        return subprocess.CompletedProcess(args, 0, "", "")


class FakeDomain:
    def __init__(self) -> None:
        self.active = True
        self.destroyed = False

    def isActive(self) -> bool:  # noqa: N802 - libvirt's API
        return self.active

    def destroy(self) -> None:
        self.active, self.destroyed = False, True


class FakeConn:
    """createXML raises `error`, or returns a domain that runs but never boots."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.domains, self.xml = error, [], []

    def createXML(self, xml: str, _flags: int):  # noqa: N802
        self.xml.append(xml)
        if self.error:
            raise self.error
        self.domains.append(FakeDomain())
        return self.domains[-1]

    def lookupByName(self, name: str):  # noqa: N802
        raise libvirtError(f"no domain {name}")


@pytest.fixture
def kvm_host(tmp_path: Path):
    """A host whose /dev/kvm opens and whose CPU has vmx: only a probe can tell."""
    dev = tmp_path / "kvm"
    dev.write_text("")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 vmx\n")
    (tmp_path / "modules" / "kvm_intel").mkdir(parents=True)
    return accel.HostKvm(dev, cpuinfo, tmp_path / "modules")


@pytest.fixture
def probe_env(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(libvirt_vm, "VM_DIR", tmp_path / "vms")
    img = Image(tmp_path, tmp_path / "vmlinuz", tmp_path / "initrd", tmp_path / "base.qcow2",
                "6.1.0-test", {})
    manifest = Manifest("gbtest1", state_dir=tmp_path / "state")
    return img, manifest, tmp_path / "accel.json"


def _choose(conn, probe_env, kvm_host, deadline=5.0):
    img, manifest, cache = probe_env
    said: list[str] = []
    runner = RecordingRunner()
    got = accel.choose("auto", lambda: libvirt_vm.boot_probe(
        libvirt_vm.Daemon(conn, "qemu:///system"), img, runner, manifest, deadline),
                       said.append, host=kvm_host, cache=cache)
    return got, said, manifest


def test_probe_that_fails_to_start_means_tcg_with_its_reason(probe_env, kvm_host):
    conn = FakeConn(libvirtError(MSR_ERROR))
    got, said, manifest = _choose(conn, probe_env, kvm_host)
    assert got.domain_type == "qemu" and got.name == "tcg"
    assert got.reason == ("TCG: KVM guest failed to start: internal error: qemu unexpectedly "
                          "closed the monitor: qemu-system-x86_64: error: failed to set MSR "
                          "0x10a to 0x69")
    assert any("using TCG" in s for s in said)
    assert len(conn.xml) == 1 and "<domain type='kvm'>" in conn.xml[0]
    assert manifest.entries == []  # the probe's files and domain entry are gone again
    cached = json.loads(probe_env[2].read_text())
    assert cached["domain_type"] == "qemu" and cached["reason"] == got.reason


def test_probe_that_never_boots_times_out_into_tcg(probe_env, kvm_host):
    conn = FakeConn()
    got, _, manifest = _choose(conn, probe_env, kvm_host, deadline=0.3)
    assert got.domain_type == "qemu"
    assert got.reason.startswith("TCG: KVM guest did not boot in time: timed out after")
    assert conn.domains[0].destroyed  # the stuck guest is destroyed, not left running
    assert manifest.entries == []


def test_cached_decision_is_reused_without_a_probe(probe_env, kvm_host):
    img, manifest, cache = probe_env
    accel.write_cache(cache, accel.Accel("qemu", "TCG: KVM guest failed to start: x"))
    got = accel.choose("auto", lambda: pytest.fail("probed despite the cache"),
                       host=kvm_host, cache=cache)
    assert got.reason == "TCG: KVM guest failed to start: x"


def test_cache_from_another_boot_or_format_is_ignored(tmp_path, kvm_host):
    cache = tmp_path / "accel.json"
    cache.write_text(json.dumps({"boot_id": "another boot", "domain_type": "kvm",
                                 "reason": "KVM: ..."}))
    assert accel.read_cache(cache) is None
    cache.write_text(json.dumps({"boot_id": accel.boot_id(), "domain_type": "kvm"}))
    assert accel.read_cache(cache) is None  # an old cache without a reason
    cache.write_text("{not json")
    assert accel.read_cache(cache) is None


def test_successful_probe_means_kvm(probe_env, kvm_host):
    got = accel.choose("auto", lambda: None, host=kvm_host, cache=probe_env[2])
    assert got.domain_type == "kvm" and got.reason.startswith("KVM:")


def test_pvm_only_kvm_is_detected_without_booting(tmp_path, kvm_host):
    pvm = accel.HostKvm(kvm_host.dev, tmp_path / "cpuinfo-pvm", tmp_path / "mods")
    pvm.cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n")
    (pvm.modules / "kvm_pvm").mkdir(parents=True)
    got = accel.choose("auto", lambda: pytest.fail("probed a PVM host"), host=pvm,
                       cache=tmp_path / "c.json")
    assert got.domain_type == "qemu"
    assert got.reason.startswith("TCG: ") and "is PVM-only" in got.reason
    assert "10-25 min" in got.reason
    # without kvm_pvm, missing flags alone do not decide: the probe does
    plain = accel.HostKvm(kvm_host.dev, pvm.cpuinfo, tmp_path / "none")
    assert plain.cheap_verdict() is None


def test_missing_or_unopenable_dev_kvm(tmp_path, kvm_host):
    gone = accel.HostKvm(tmp_path / "nokvm", kvm_host.cpuinfo, kvm_host.modules)
    assert accel.choose("auto", lambda: pytest.fail("probed"), host=gone).reason == (
        f"TCG: no {tmp_path / 'nokvm'} (KVM is not available on this host)")
    closed = accel.HostKvm(tmp_path / "dir-not-dev", kvm_host.cpuinfo, kvm_host.modules)
    closed.dev.mkdir()  # exists, but O_RDWR on a directory fails
    assert closed.cheap_verdict().startswith(f"TCG: {closed.dev} does not open")


def test_forced_choices_skip_everything(tmp_path):
    gone = accel.HostKvm(tmp_path / "nokvm")
    assert accel.choose("kvm", lambda: pytest.fail("probed"), host=gone) == accel.Accel(
        "kvm", "KVM: forced by --accel kvm")
    assert accel.choose("tcg", lambda: pytest.fail("probed")).domain_type == "qemu"


def test_kvm_domain_keeps_arch_capabilities_out(tmp_path):
    img = Image(tmp_path, tmp_path / "k", tmp_path / "i", tmp_path / "b", "r", {})
    cfg = libvirt_vm.VmConfig("gbx-vm0", "gbxt0", "02:67:62:01:00:00", "gamebed.role=probe")
    xml = libvirt_vm.domain_xml(cfg, img, tmp_path / "o", tmp_path / "r", tmp_path / "c", "kvm")
    assert "<feature policy='disable' name='arch-capabilities'/>" in xml
    tcg = libvirt_vm.domain_xml(cfg, img, tmp_path / "o", tmp_path / "r", tmp_path / "c", "qemu")
    assert "host-passthrough" not in tcg and "qemu64" in tcg
