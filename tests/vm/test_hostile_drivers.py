"""Hostile frames into real guest drivers: the tc BPF decoder inside a UML kernel, and
the patched virtio_net in a libvirt (TCG here) VM, behind the host side (BPF stamper
and shim) in host mode.  1,000 seeded frames each (tests/hostile.py), then a valid
input: the guest must still answer it with the host's stamp, and no server record
may carry a stamp a client wrote."""

import time

import pytest

from gamebed.spec import ExperimentSpec
from gamebed.topology import CLIENT_IP, CLIENT_MAC
from tests.hostile import (
    HostileFrames,
    Target,
    check_server_records,
    liveness_frames,
    send_frames,
)
from tests.support import skip_unless_uml, skip_unless_vm
from tests.support.netns import test_run

N_FRAMES = 1000
SEED = 1124
SKIP = {"uml": skip_unless_uml, "libvirt": skip_unless_vm}
PPS = {"uml": 500, "libvirt": 200}  # a TCG guest forwards slowly; a storm is not the point


@pytest.mark.parametrize("backend", ["uml", "libvirt"])
def test_hostile_frames_into_the_guest_driver(backend, tmp_path):
    SKIP[backend]()
    spec = ExperimentSpec.of(guest_counts=(2,), modes=("host",), backend=backend,
                          placement="dynamic")
    run = test_run(spec, tmp_path)
    m = run.manifest
    point = tmp_path / "point"
    bed = run.testbed(2, tmp_path / "work")
    with bed, bed.mode("host", point):
        t = bed.topo
        targets = [Target(g.index, g.nic.mac, g.nic.ip) for g in t.guests]
        hostile = HostileFrames(SEED, targets, CLIENT_MAC, CLIENT_IP,
                                t.game_port).stream(N_FRAMES, pool=N_FRAMES)
        sent = send_frames(t.client_ns, t.client_nic, [h.frame for h in hostile],
                           tmp_path / "frames.bin", PPS[backend])
        time.sleep(1.0)
        send_frames(t.client_ns, t.client_nic,
                    liveness_frames(targets, CLIENT_MAC, CLIENT_IP, t.game_port),
                    tmp_path / "live.bin", 100)
        assert bed.host.shim.alive(), "the shim died"
        bed.backend.end_load()  # each server hands over its records
        bed.backend.collect()
    m.close()
    accepted = check_server_records(point, [0, 1], hostile)
    assert sent["sent"] > 0.95 * N_FRAMES and accepted > 20
    print(f"{backend}: {sent}, servers accepted {accepted}")
