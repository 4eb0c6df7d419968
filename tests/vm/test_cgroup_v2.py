"""gamebed on a real cgroup-v2-only host (root; QEMU with KVM or TCG, vm/v2host.py).

The VM boots Debian's cloud kernel (6.1) on this host's own root, read-only under a
tmpfs overlay, so it runs this checkout with its virtualenv and the cached UML kernel
and root image (built here first if they are not).  It boots twice:

- `plain`: a small init mounts cgroup2 alone; gamebed enables its controllers at the
  root and makes its groups there;
- `systemd`: systemd 252 as PID 1 runs the check as a service, and gamebed asks it
  for a delegated scope.

Inside each: the cgroup layer's tests (tests/net/test_cgroups.py: usage, memory, a cap,
the budget's share 0.5 and 0.25 within ±0.05, settle, `gamebed clean`) and a
`--guest-cpus 0.5` run on namespaces whose two servers each want more than a core; in
the plain boot also `gamebed run --backend uml --guests 2 --duration 3` (gamebed makes
the UML guests' groups the same way under either parent, and each run takes 3-4 min
under TCG).  Each run passes `--retries 0` (under TCG the client stalls for 20-240 ms
with no record to explain it, and measuring again would triple a job that tests the
cgroup layer).  Host stamps must be exact, no input lost (the UML run), the budget held
to its half of a CPU (its share of a CPU-bound guest is the layer test's: 0.5 ± 0.05),
the hierarchy recorded as unified with the delegation used, and nothing left behind."""

from __future__ import annotations

import json
import os

import pytest

from tests.support import ROOT
from vm import v2host

JOB = """set -u
cd {root}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export MPLCONFIGDIR=/gamebed-out/mpl
O=/gamebed-out
.venv/bin/python -m pytest -q -s -p no:cacheprovider tests/net/test_cgroups.py > $O/layer.log 2>&1
echo $? > $O/layer.rc
R="--guests 2 --duration 3 --no-report --retries 0"
RUNS=/tmp/gb-budget
if [ {init} = plain ]; then
  RUNS="/tmp/gb-uml $RUNS"
  .venv/bin/gamebed run --backend uml $R --out /tmp/gb-uml > $O/uml.log 2>&1
  echo $? > $O/uml.rc
fi
# two servers that each want more than a core, held to 0.5 of their CPU beside the hogs
.venv/bin/gamebed run --backend netns $R --modes host --guest-cpus 0.5 \\
    --server-work-us 20000 --out /tmp/gb-budget > $O/budget.log 2>&1
echo $? > $O/budget.rc
.venv/bin/python -m tests.support.v2check $RUNS > $O/check.json
"""
DELEGATION = {"plain": "the root's cgroup.subtree_control (no systemd)",
              "systemd": "systemd scope"}


@pytest.fixture(scope="module")
def host_ready():
    if os.geteuid() != 0:
        pytest.skip("needs root to run virtiofsd and QEMU, and UML guests inside")
    problem = v2host.missing()
    if problem:
        pytest.skip(f"no cgroup-v2 test VM: {problem}")
    import vm

    ok, detail = vm.uml_usable()  # the kernel and image are built here, not under TCG
    if not ok:
        pytest.skip(f"UML guests do not run on this host: {detail}")


def _read(out, name: str) -> str:
    p = out / name
    return p.read_text() if p.exists() else ""


@pytest.mark.parametrize("init", v2host.INITS)
def test_gamebed_runs_on_a_cgroup_v2_only_host(init, host_ready, tmp_path):
    # a guard against a hung VM, not a speed target: under TCG on this machine kind the
    # job took 246-279 s (plain) and 257 s to over 280 s (systemd) in three fresh-clone
    # runs of the test command; with the machine watch and the CPU probe in every load
    # (issue 48) its uml and netns runs finished and its budget run was cut at 480 s
    r = v2host.boot(JOB.format(root=ROOT, init=init), tmp_path, init, timeout_s=900)
    out = tmp_path / "out"
    assert r.rc == 0, f"the VM's job did not finish ({r.seconds} s): {r.console[-1500:]}"
    layer = _read(out, "layer.log")
    assert _read(out, "layer.rc").strip() == "0", layer[-3000:]
    runs = ("uml", "budget") if init == "plain" else ("budget",)
    for run in runs:
        assert _read(out, f"{run}.rc").strip() == "0", _read(out, f"{run}.log")[-3000:]
    check = json.loads(_read(out, "check.json"))
    shares = [line for line in layer.splitlines() if "budget" in line and "share" in line]
    print(f"\n{init}: {r.seconds} s; layer: {layer.strip().splitlines()[-1]}; {shares}")
    for run, c in check.items():
        print(f"{init} {run}: {json.dumps(c, sort_keys=True)}")
        cg = c["cgroups"]
        assert cg["hierarchy"] == "unified" and set(cg["controllers"].values()) == {"v2"}
        assert cg["delegation"].startswith(DELEGATION[init]), cg
        assert cg["per_cpu_usage"] == "/proc/stat"
        assert c["leftovers"] == {}
        assert c["host_exact"] == [1.0]
    assert set(check) == {f"gb-{run}" for run in runs}
    if init == "plain":
        assert check["gb-uml"]["lost"] == [0, 0] and min(check["gb-uml"]["sent"]) > 0
    budget = check["gb-budget"]["budgets"][0]
    assert budget["weights"] == {"guests": 10000, "hogs": 10000, "hierarchy": "v2"}
    # servers that want 1.6 cores each got at most their half of the CPU (with no budget
    # there are no hogs and their share is 1), and got some; the share they got is
    # measured over the whole load window, clock syncs and settling included, where
    # they want less (under TCG its share came out 0.22-0.28 in four boots): the layer's
    # tests above measure the share of guests that want the CPU throughout, 0.5 and 0.25
    # within ±0.05
    assert 0 < budget["share"] <= 0.55 and 0 < budget["cores_used"] <= 0.55, budget
    assert budget["guests_s"] > 0 and budget["hog_s"] > 0, budget
