"""Fixtures for namespace tests: create, yield, tear down (via a test-local manifest)."""

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner
from gamebed.resources import Netns, Veth

PROG = str(Path(__file__).with_name("nsprog.py"))


class Pair:
    """Two namespaces joined by a veth: a (sender) and b (receiver)."""

    def __init__(self, prefix):
        self.a, self.b = f"{prefix}-a", f"{prefix}-b"
        self.nic_a, self.nic_b = f"{prefix}a", f"{prefix}b"
        self.mac_a, self.mac_b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
        self.ip_a, self.ip_b = "198.19.0.1", "198.19.0.2"

    def start(self, ns, *args):
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, PROG, *map(str, args)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        return p

    def run(self, ns, *args):
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, PROG, *map(str, args)],
                       check=True)

    @staticmethod
    def lines(p, timeout=10):
        out, _ = p.communicate(timeout=timeout)
        return [json.loads(x) for x in out.splitlines() if x.strip()]


@pytest.fixture
def ns_pair(netns_ok, tmp_path):
    runner = Runner()
    m = Manifest(new_prefix(), state_dir=tmp_path / "state")
    pair = Pair(m.prefix)
    with Netns(pair.a, runner, m), Netns(pair.b, runner, m), \
            Veth((pair.a, pair.nic_a), (pair.b, pair.nic_b), runner, m, mtu=1516):
        for ns, nic, mac, ip in ((pair.a, pair.nic_a, pair.mac_a, pair.ip_a),
                                 (pair.b, pair.nic_b, pair.mac_b, pair.ip_b)):
            runner.run(["ip", "-n", ns, "link", "set", nic, "address", mac, "up"])
            runner.run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", nic])
        time.sleep(0.2)
        yield pair
    m.close()
    assert not m.path.exists(), "teardown left manifest entries"


@contextmanager
def netns_testbed(tmp_path, stamper: str, n_guests: int):
    """A namespace testbed of n guests in host mode (not entered), with a manifest of
    its own; after use: everything gone, the manifest too."""
    from gamebed.spec import ExperimentSpec
    from vm import make_testbed

    spec = ExperimentSpec(guest_counts=(n_guests,), modes=("host",), stamper=stamper,
                          placement="dynamic", backend="netns")
    m = Manifest(new_prefix(), state_dir=tmp_path / "state")
    bed = make_testbed(spec, n_guests, tmp_path / "work", Runner(), m, print)
    yield bed
    bed.mode_stack.close()
    bed.stack.close()
    m.close()
    assert not m.path.exists(), "teardown left manifest entries"
