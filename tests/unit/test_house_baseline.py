"""The house refactor keeps behaviour: `gamebed report` on three stored runs writes the
same capacity.csv and summary.json, byte for byte (points.csv too, but for its renamed
input-count columns), and the main job's dry run prints the same commands (run prefix and
checkout path masked; with --fresh-guests, every count booting afresh, as before counts
kept their guests).  Recorded by tests/house_baseline.py before the refactor; the UML
dry run recorded again once the refactor had been checked against it, when its
commands changed on purpose (per-guest cgroups and directories; a server serving every
point, so no idle exit; guests kept to their CPUs by a cpuset, not a taskset), and
both again when the stamper's object moved to the build cache (build/bpf: compiled once
per guest table, not once per point), which was their only change.  The stored runs'
capacity.csv was recorded again when the judge began to leave out points whose load
generator was the bottleneck: the old client's were all late by more than 200 µs at
p99, so every count of theirs is now invalid (capacity 0, `invalid_counts`); their
summary.json did not change.  Both dry runs were recorded again when the load
generator was made punctual: the client's `--spin-us 150.0 --realtime 10` and the
host CPU's `echo n/a > .../pm_qos_resume_latency_us` were their only changes.  Both
again when the reply path moved into the kernel: the reply program's build, its
`tc -batch` here-documents on the guests' ports, the shim's `--replies-in-kernel` and
the client's `--spin-share 0.1` were their only changes.  The stored runs' summary.json
entries, capacity.csv and points.csv were recorded again when a point became a time
series (its mean delay and loss CIs by batch means, its p95 and p99 CIs by a
sectioning: analysis/stats.py), gained the players' tick figures over the
load window (analysis/ticks.py), the encode time and the loss CI, and capacity.csv
gained the other SLA's capacity beside the run's (the players' SLA and the paper's
terms); every other figure is as it was.  Both dry runs were recorded again when every
cgroup went through one layer (gamebed/cgroups.py), printed as on this machine kind's
hybrid layout: a `mkdir` of each guest's memory group, and the UML guests' cpuset
renamed from `PREFIX-uml` to `PREFIX-guests` (the guests' parent, which a v2 guest's
group must sit under), were their only changes.  The stored runs' summary.json entries
and points.csv were recorded again when a point gained its guests' run-queue wait
(gamebed/schedwait.py): the columns `rq_wait_s`, `rq_waits`, `rq_wait_per_wake_us`,
empty for these runs (recorded before the measure), were their only change.  The
stored runs were then made again (tests/house_baseline.py says how), on the code
before the third pass: at 3 s a point every count of the old ones was unsure, so they
exercised neither a pass nor a fail; a fourth, mixed run over a WAN joined them.
The mixed run's summary.json entries, capacity.csv and points.csv were recorded
again when the four mix bugs were fixed (issue 38: each profile's entry is now the
point's figures over its guests, so it carries the host's loss ratio a --wan run is
judged by): every count had failed for want of it, and now each passes.  The UML dry
run was recorded again when the agents' link became JSON lines (vm/guestlink.py):
`# to umlN: run MODE 0` became `# to umlN: {"id": K, "op": "run", "mode": MODE,
"idle_exit": 0}`, its only change.  Both dry runs were recorded again when links,
addresses, neighbours and namespaces became netlink requests (gamebed/netlink.py):
each of those `ip ...` lines gained the mark `netlink: `, their only change (765 lines
of the namespace run's, 1593 of the UML run's).  Both again when the server's game
got one encoding (ExperimentSpec.server_args): a namespace server's `--dispatch` and
`--work-us` moved after its `--ready-file`, a UML guest's kernel command line lost
`gamebed.dispatch=` and `gamebed.work_us=`, and its agents' `run` requests gained
`"server": ["--dispatch", "epoll", "--work-us", "0.0"]`, their only changes."""

import csv
import re
import shutil

import pytest

from gamebed.cli import main
from tests.house_baseline import DATA, DRY_RUNS, RUNS, dry_run

# points.csv columns renamed by the refactor (one name per figure: summary.json's)
RENAMED = {k: f"inputs_{k}" for k in ("sent", "delivered", "lost", "lost_fault", "host_logged",
                                      "lost_network", "lost_host", "reordered")}
# figures added since the baseline was recorded
ADDED = {"load_first_send_ns", "load_last_send_ns", "tick_hz_achieved", "tick_gap_p99_ms",
         "input_rate_achieved", "send_lateness_p99_us", "load_bound"}
# a BPF object's name carries its source's digest: sources change
BPF_OBJECT = (r"(decoder|stamper|reply)-[0-9a-f]{12}\.o", r"\1-DIGEST.o")


@pytest.mark.parametrize("name", RUNS)
def test_report_on_a_stored_run_writes_the_same_files(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(DATA / name, run)
    assert main(["report", str(run)]) == 0
    for f in ("capacity.csv", "summary.json"):
        assert (run / f).read_bytes() == (DATA / name / f).read_bytes(), f
    # points.csv: the same text in every column it had (its input counts under
    # summary.json's names), and only the columns added since besides
    with open(DATA / name / "points.csv") as a, open(run / "points.csv") as b:
        old, new = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert len(new) == len(old)
    for o, n in zip(old, new, strict=True):
        assert {RENAMED.get(c, c): v for c, v in o.items()} == {
            RENAMED.get(c, c): n[RENAMED.get(c, c)] for c in o}
        assert set(n) - {RENAMED.get(c, c) for c in o} <= ADDED


@pytest.mark.parametrize("backend", sorted(DRY_RUNS))
def test_the_main_jobs_dry_run_prints_the_same_commands(backend, tmp_path, monkeypatch):
    import vm

    # auto resolves by what is installed; pin each backend so the text is this machine's
    monkeypatch.setattr(vm, "uml_prerequisites", lambda: None)
    want = (DATA / f"dry-run-{backend}.txt").read_text()
    assert re.sub(*BPF_OBJECT, dry_run(backend, tmp_path / "out")) == re.sub(*BPF_OBJECT, want)


@pytest.mark.parametrize("name", RUNS)
def test_each_points_summary_entry_is_derived_again_the_same(name):
    import json

    from analysis.point import point_summary

    run = DATA / name
    for p in json.loads((run / "summary.json").read_text())["points"]:
        again = point_summary(run / p["dir"])
        # the sweep's own fields (which point, in which order, how long it took) aside
        stored = {k: v for k, v in p.items()
                  if k not in ("mode", "guests", "repeat", "dir", "order", "budget_s")}
        # the stored figures again, byte for byte; figures added since may join them
        assert {k: again.get(k) for k in stored} == stored, p["dir"]
        assert set(again) - set(stored) <= ADDED


@pytest.mark.parametrize("name", RUNS)
def test_one_judge_for_report_and_search(name, tmp_path):
    """The search judges summary.json's entries, the report points.csv's rows: with one
    name per figure the same judge gives the same capacities."""
    import json

    import pandas as pd

    from analysis.capacity import Sla, judge

    summary = json.loads((DATA / name / "summary.json").read_text())
    sla = Sla.of_run(summary["spec"])
    from_summary = judge(summary["points"], sla)[1]
    run = tmp_path / name
    shutil.copytree(DATA / name, run)
    assert main(["report", str(run)]) == 0
    rows = pd.read_csv(run / "points.csv")
    # figures added since these runs were stored (load_bound) are in the rows only
    rows = rows[[c for c in rows.columns if c in summary["points"][0]]]
    from_rows = judge(rows, sla)[1]
    assert from_summary == from_rows
    assert sla.share == ("host" if summary["spec"].get("wan") else "client")
