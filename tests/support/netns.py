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

    spec = ExperimentSpec.of(guest_counts=(n_guests,), modes=("host",), stamper=stamper,
                          placement="dynamic", backend="netns")
    run = test_run(spec, tmp_path)
    bed = run.testbed(n_guests, tmp_path / "work")
    yield bed
    bed.close()
    run.manifest.close()
    assert not run.manifest.path.exists(), "teardown left manifest entries"


def test_run(spec, tmp_path):
    """A run of `spec` (vm's testbeds) with a manifest in tmp_path/state of its own."""
    from gamebed.progress import Progress
    from gamebed.run import Layers, Run
    from vm import testbeds

    m = Manifest(new_prefix(), state_dir=tmp_path / "state")
    return Run(spec, tmp_path / "out", Layers(testbeds), Runner(), m, Progress())


test_run.__test__ = False  # a helper, not a test


def resize_through(tmp_path, backend: str, sizes: tuple[int, ...]) -> list[dict]:
    """One testbed of `backend`, resized to each of `sizes` in turn with a 2 s host-mode
    point at each.  Checks that each point played exactly its count's guests (client,
    servers, per-guest cgroups) and that nothing is left at the end; returns per point
    what was seen, with the backend's guest_info()."""
    from gamebed.leaks import NOTHING
    from gamebed.spec import ExperimentSpec

    spec = ExperimentSpec.of(backend=backend, guest_counts=(sizes[0],), modes=("host",),
                          duration=2, placement="dynamic")
    seen = _resized(tmp_path, spec, sizes)
    *points, end = seen
    for p in points:
        want = list(range(p["n"]))
        assert p["played"] == want and p["recorded"] == want, p
        assert p["cpu_guests"] == want, p  # cgroups per guest: only the running ones
    assert end["leftovers"] == NOTHING and not end["manifest_left"]
    return points


def _resized(tmp_path, spec, sizes: tuple[int, ...]) -> list[dict]:
    import csv

    from gamebed.leaks import leftovers

    run = test_run(spec, tmp_path)
    seen = []
    with run.testbed(sizes[0], tmp_path / "work") as bed:
        for k, n in enumerate(sizes):
            bed.resize(n)
            pdir = tmp_path / f"point{k}-g{n}"
            with bed.mode("host", pdir) as point:
                point.run_load()
            recorded = sorted(int(d.name.removeprefix("guest")) for d in pdir.glob("guest*")
                              if (d / "server_inputs.csv").exists()
                              and len(list(csv.reader((d / "server_inputs.csv").open()))) > 1)
            played = sorted({int(r["guest"]) for r in
                             csv.DictReader((pdir / "client_inputs.csv").open())})
            seen.append({"n": n, "recorded": recorded, "played": played,
                         "cpu_guests": sorted(int(g) for g in json.loads(
                             (pdir / "cpu.json").read_text()).get("guests", {})),
                         "info": bed.backend.guest_info()})
    run.manifest.close()
    seen.append({"leftovers": leftovers(run.manifest.prefix),
                 "manifest_left": run.manifest.path.exists()})
    return seen
