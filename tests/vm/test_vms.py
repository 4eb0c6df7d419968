"""Real guests: the patched modules, a two-guest run, the tun patch inside a guest,
and launch/destroy leaving nothing behind.  Under TCG here; KVM where it boots."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gamebed.cli import main
from gamebed.leaks import NOTHING, leftovers
from gamebed.proc import Runner
from tests.support import destroy_launched, launch, skip_unless_kbuild, skip_unless_vm

ROOT = Path(__file__).resolve().parents[2]


def test_patched_modules_build_against_debian_headers():
    skip_unless_kbuild()
    from vm import kmod

    release = kmod.kernel_release()
    for name, param in (("virtio_net", "host_tstamp"), ("tun", "gb_trailer")):
        ko = kmod.build(name, Runner(), release)
        info = subprocess.run(["modinfo", str(ko)], capture_output=True, text=True).stdout
        vermagic = next(ln for ln in info.splitlines() if ln.startswith("vermagic:"))
        assert vermagic.split()[1] == release, vermagic
        assert f"parm:           {param}" in info.replace("\t", " ")


@pytest.fixture(scope="module")
def vm_run(tmp_path_factory):
    skip_unless_vm()
    out = tmp_path_factory.mktemp("vmrun") / "res"
    rc = main(["run", "--backend", "libvirt", "--guests", "1,2", "--duration", "5",
               "--out", str(out)])
    assert rc == 0
    return out


def test_two_guest_run_delivers_host_stamps(vm_run):
    s = json.loads((vm_run / "summary.json").read_text())
    pts = {(p["mode"], p["guests"]): p for p in s["points"]}
    assert set(pts) == {("guest", 1), ("host", 1), ("guest", 2), ("host", 2)}
    for (mode, _g), p in pts.items():
        assert p["inputs_sent"] > 100 and p["loss_ratio"] < 0.05
        if mode == "host":  # the patched virtio_net handed the shim's stamp to SO_TIMESTAMPNS
            assert p["host_stamp_exact_fraction"] == 1.0
        else:  # the stock driver: the guest's own, later stamp
            assert p["stamp_error_mean_us"] > 0 and p["host_stamp_exact_fraction"] < 0.01
    env = json.loads((vm_run / "points" / "host-g002" / "point.json").read_text())["environment"]
    assert env["backend"] == "libvirt" and env["shared_clock"] is False
    assert "Backend: libvirt" in (vm_run / "report.html").read_text()
    assert leftovers(s["prefix"]) == NOTHING


def test_patched_module_loads_in_the_guest(vm_run):
    host = (vm_run / "points" / "host-g002" / "guest1" / "dmesg-nic.txt").read_text()
    assert "gamebed host-timestamp build, host_tstamp=1" in host
    stock = (vm_run / "points" / "guest-g002" / "guest1" / "dmesg-nic.txt").read_text()
    assert "host-timestamp build" not in stock  # guest mode runs Debian's own driver
    console = (vm_run / "points" / "host-g002" / "guest0" / "console.log").read_text()
    assert "GAMEBED-NIC patched host_tstamp=Y" in console
    # the clock step through ptp_kvm says what it did (here, under TCG: nothing to step)
    assert "GAMEBED-CLOCK " in console


def test_tun_patch_appends_trailer_inside_a_guest(tmp_path):
    skip_unless_vm()
    from gamebed.manifest import Manifest, new_prefix
    from vm import image
    from vm.libvirt_vm import Daemon, GameVm, VmConfig, connect, domain_type

    runner = Runner()
    m = Manifest(new_prefix(), state_dir=tmp_path)
    conn = connect("qemu:///system", runner)
    img = image.build(runner)
    kind = domain_type(Daemon(conn, "qemu:///system"), img, runner, m).domain_type
    cfg = VmConfig(f"{m.prefix}-tun", f"{m.prefix}t0", "02:67:62:01:00:99", "gamebed.role=tuntest")
    with GameVm(cfg, img, Daemon(conn, "qemu:///system"), kind, runner, m) as vm:
        vm.wait_console("GAMEBED-DONE", 180, "the tun test")
        vm.collect(tmp_path / "out", 30)
    conn.close()
    r = json.loads((tmp_path / "out" / "tuntest.json").read_text())
    g = r["game_port"]
    assert g["extra"] == 16 and g["magic_ok"] and g["check_ok"] and g["stamp_in_window"]
    assert g["payload_ok"] and g["udp_checksum_ok"]
    assert r["other_port"]["extra"] == 0  # gb_port filters
    assert r["disabled"]["extra"] == 0  # gb_trailer=0: stock behaviour
    assert any("gamebed timestamp-trailer build" in line for line in r["dmesg"])
    assert m.entries == []


def test_launch_then_destroy_leaves_nothing(tmp_path):
    skip_unless_vm()
    info, env = launch(tmp_path, "libvirt", 1, timeout=400)
    try:
        answered = info["guests"][0]["answer"]["answered"]
        domains = leftovers(info["prefix"])["domains"]
    finally:  # a failure above must not leave the launch behind
        destroy_launched(env, info["prefix"])
    assert answered > 0 and domains == [info["guests"][0]["name"]]


def test_sigint_during_launch_leaves_nothing(tmp_path):
    skip_unless_vm()
    env = dict(os.environ, GAMEBED_STATE_DIR=str(tmp_path / "state"))
    p = subprocess.Popen([sys.executable, "-m", "gamebed", "launch", "--count", "2",
                          "--backend", "libvirt"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    state = tmp_path / "state"
    deadline = time.monotonic() + 120
    prefix = None
    while time.monotonic() < deadline and prefix is None:  # wait until a VM exists
        for f in state.glob("gl*.json"):
            if any(e["kind"] == "domain" for e in json.loads(f.read_text())["entries"]):
                prefix = f.stem
        time.sleep(0.2)
    assert prefix, "launch never started a VM"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert leftovers(prefix) == NOTHING
