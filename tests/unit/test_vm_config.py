"""The libvirt backend's pieces that need no root: domain XML, dry run, modules list,
and the server's idle exit that lets a VM guest ship its records."""

import time
import xml.etree.ElementTree as ET
from pathlib import Path

from fpsmodel import wire
from fpsmodel.server import GameServer, ServerConfig
from gamebed.cli import main
from vm.image import Image
from vm.libvirt_vm import VmConfig, domain_xml


def _image(tmp_path):
    return Image(tmp_path, tmp_path / "vmlinuz", tmp_path / "initrd.gz",
                 tmp_path / "base.qcow2", "6.1.0-x-cloud-amd64", {})


def test_domain_xml_tcg(tmp_path):
    cfg = VmConfig("gbx-vm0", "gbxt0", "02:67:62:01:00:00", "gamebed.role=server", 160, "1")
    root = ET.fromstring(domain_xml(cfg, _image(tmp_path), tmp_path / "o.qcow2",
                                    tmp_path / "r.img", tmp_path / "c.log", "qemu"))
    assert root.get("type") == "qemu" and root.findtext("name") == "gbx-vm0"
    assert root.findtext("vcpu") == "1" and root.find("vcpu").get("cpuset") == "1"
    assert root.find("features/tcg/tb-cache").text == "32"
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        assert root.findtext(event) == "destroy"
    nic = root.find("devices/interface")
    assert nic.get("type") == "ethernet" and nic.find("target").get("dev") == "gbxt0"
    assert nic.find("target").get("managed") == "yes"
    assert nic.find("model").get("type") == "virtio"
    assert "gamebed.role=server" in root.findtext("os/cmdline")
    disks = [d.find("source").get("file") for d in root.findall("devices/disk")]
    assert disks == [str(tmp_path / "o.qcow2"), str(tmp_path / "r.img")]


def test_domain_xml_kvm_has_no_tcg_cache(tmp_path):
    cfg = VmConfig("gbx-vm0", "gbxt0", "02:67:62:01:00:00", "")
    root = ET.fromstring(domain_xml(cfg, _image(tmp_path), tmp_path / "o", tmp_path / "r",
                                    tmp_path / "c", "kvm"))
    assert root.get("type") == "kvm" and root.find("features/tcg") is None
    assert root.find("cpu").get("mode") == "host-passthrough"


def test_libvirt_dry_run_prints_vm_commands(tmp_path, capsys):
    assert main(["run", "--backend", "libvirt", "--guests", "2", "--modes", "host",
                 "--dry-run", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert out.count("virsh -c qemu:///system create") == 2
    assert "gamebed.nic=patched" in out and "mtu 1516" in out
    assert "ip link del" in out  # teardown shown too


def test_libvirt_spec_rejects_cpu_cap(capsys):
    assert main(["run", "--backend", "libvirt", "--cpu-cap", "0.5", "--dry-run"]) == 2
    assert "cpu_cap" in capsys.readouterr().err


def test_server_idle_exit_after_last_input(tmp_path):
    srv = GameServer(ServerConfig(port=0, out_dir=tmp_path, idle_exit=0.3, duration=10))
    codec = wire.Codec(1)
    inp = wire.PlayerInput(move=(0.0, 0.0, 0.0), view=(0.0, 0.0, 0.0), buttons=0, weapon=0,
                           last_update_tick=0, entities=())
    srv.handle(codec.encode_input(0, 0, time.time_ns(), inp), ("127.0.0.1", 9), 1, 0, 1)
    t0 = time.monotonic()
    summary = srv.run()
    assert 0.3 <= time.monotonic() - t0 < 3  # stopped on idleness, long before duration
    assert summary["accepted"] == 1
    assert Path(tmp_path / "server_summary.json").exists()
