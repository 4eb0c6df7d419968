"""Fixtures for namespace tests: create, yield, tear down (via a test-local manifest).
The helpers behind them are tests/support/netns.py."""

import time

import pytest

from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner
from gamebed.resources import Netns, Veth
from tests.support.netns import Pair


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
