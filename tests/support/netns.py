"""Namespace helpers the net and vm tests share (root to use): a veth pair of namespaces
driven by tests/net/nsprog.py, and a namespace testbed with a manifest of its own."""

import json
import subprocess
import sys
from contextlib import contextmanager

from gamebed.manifest import Manifest, new_prefix
from gamebed.proc import Runner
from tests.support import ROOT

PROG = str(ROOT / "tests" / "net" / "nsprog.py")


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
