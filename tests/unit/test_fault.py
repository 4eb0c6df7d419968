"""--fault: its grammar, its checks, its schedule, and the availability it reports."""

import json
import threading
import time

import pandas as pd
import pytest

from analysis.availability import FLUSH_SLACK_NS, fault_figures
from analysis.records import read_csv
from fpsmodel import records as schema
from gamebed.cli import main
from gamebed.fault import Fault, FaultSchedule, check_faults, parse_faults
from gamebed.spec import ExperimentSpec


def test_grammar_round_trips_and_refuses_the_rest():
    f = Fault.parse("server:1@4.5+2")
    assert (f.kind, f.guest, f.at, f.restart_after) == ("server", 1, 4.5, 2.0)
    assert Fault.parse(f.text()) == f
    assert Fault.parse("guest:0@3").restart_after is None
    for bad in ("server:1", "disk:0@3", "server:x@3", "server:1@-2", "server:1@3+"):
        with pytest.raises(ValueError, match="expected KIND:GUEST@SECOND"):
            Fault.parse(bad)


@pytest.mark.parametrize("faults,backend,msg", [
    (("server:0@3",), "libvirt", "not on the libvirt backend"),
    (("server:0@3",), "uml", "not on the uml backend"),
    (("guest:0@3+1",), "uml", "not on the uml backend"),
    (("server:0@12",), "netns", "inside the load"),
    (("server:3@2",), "netns", r"guest 3 does not exist at 2 guest\(s\)"),
    (("server:1@2", "guest:1@4"), "netns", "one fault per guest"),
])
def test_a_fault_the_run_cannot_carry_out_is_refused(faults, backend, msg):
    with pytest.raises(ValueError, match=msg):
        ExperimentSpec.of(backend=backend, guest_counts=(2, 4), duration=10, faults=faults)


def test_what_each_backend_can_do_is_accepted():
    s = ExperimentSpec.of(backend="netns", guest_counts=(2,), faults=("server:1@2+1", "guest:0@3"))
    assert [f.text() for f in parse_faults(s.design.faults)] == ["server:1@2+1", "guest:0@3"]
    s = ExperimentSpec.of(backend="uml", guest_counts=(2,), faults=("guest:1@2",))
    assert parse_faults(s.design.faults)[0].guest == 1
    assert check_faults(("server:0@1",), "", 5, 1) is None  # auto: checked once resolved
    # the same faults on a backend that cannot do them are refused (the check can fail)
    with pytest.raises(ValueError, match="not on the libvirt backend"):
        check_faults(("guest:1@2",), "libvirt", 5, 2)


def test_bad_fault_on_the_command_line_gets_one_line_and_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["run", "--fault", "server@3", "--dry-run", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "--fault: 'server@3': expected KIND:GUEST@SECOND" in capsys.readouterr().err
    rc = main(["run", "--backend", "netns", "--guests", "1", "--fault", "server:2@3",
               "--dry-run", "--out", str(tmp_path / "o")])
    assert rc == 2 and "guest 2 does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_schedule_breaks_and_restores_on_time_from_the_load_start(tmp_path):
    calls = []
    start = tmp_path / "load.started"
    faults = [Fault("server", 1, 0.2, 0.1), Fault("server", 0, 0.1)]
    sched = FaultSchedule(faults, start, tmp_path, lambda f: calls.append(("kill", f.guest,
                                                                          time.time_ns())),
                          lambda f: calls.append(("back", f.guest, time.time_ns())))
    with sched:
        time.sleep(0.1)  # nothing happens before the load starts
        assert calls == []
        t0 = time.time_ns()
        start.write_text(f"{t0}\n")
        time.sleep(0.5)
    assert [c[:2] for c in calls] == [("kill", 0), ("kill", 1), ("back", 1)]
    for (_, _, t), due in zip(calls, (0.1, 0.2, 0.3), strict=True):
        assert 0 <= (t - t0) / 1e9 - due < 0.06
    rec = json.loads((tmp_path / "faults.json").read_text())["faults"]
    assert rec[0]["fault"] == "server:1@0.2+0.1" and rec[0]["restarted_ns"] > rec[0]["fault_ns"]
    assert rec[1]["restart_ns"] is None


def test_schedule_error_is_recorded_and_raised(tmp_path):
    (tmp_path / "s").write_text(f"{time.time_ns()}\n")

    def broken(_f):
        raise OSError("no such process")

    sched = FaultSchedule([Fault("server", 0, 0.01)], tmp_path / "s", tmp_path, broken, broken)
    with pytest.raises(RuntimeError, match="could not be carried out: no such process"):
        with sched:
            time.sleep(0.1)
    assert "no such process" in json.loads((tmp_path / "faults.json").read_text())["error"]
    assert not any(t.name == "faults" for t in threading.enumerate())


def _point(tmp_path, fault_ns, restarted_ns):
    """3 guests, inputs every 10 ms for 2 s; guest 1 loses what was sent from 20 ms before
    the fault until 30 ms after the restart, guest 2 loses one input to load."""
    rows = []
    t0 = 1_000_000_000_000
    for g in range(3):
        for k in range(200):
            t = t0 + k * 10_000_000
            lost = (g == 1 and fault_ns - 20_000_000 <= t < (restarted_ns or 10**30) + 30_000_000)
            rows.append({"guest": g, "send_ns": t, "delivered": not (lost or (g == 2 and k == 7))})
    j = pd.DataFrame(rows)
    ups = pd.DataFrame({"guest": [1, 1, 0], "recv_ns": [
        fault_ns - 1000, (restarted_ns or 0) + 35_000_000, fault_ns + 5]})
    rec = {"fault": "server:1@0.5+0.5", "guest": 1, "fault_ns": fault_ns,
           "restarted_ns": restarted_ns}
    (tmp_path / "faults.json").write_text(json.dumps({"faults": [rec]}))
    return j, ups


def test_availability_splits_fault_losses_from_load_losses(tmp_path):
    t0 = 1_000_000_000_000
    j, ups = _point(tmp_path, t0 + 500_000_000, t0 + 1_000_000_000)
    r = fault_figures(tmp_path, j, ups).row()
    lost1 = int((~j[j.guest == 1].delivered).sum())  # 2 before the kill, 50, 3 after
    assert lost1 == 2 + 50 + 3
    assert r["inputs_lost_fault"] == lost1
    assert r["availability_by_guest"] == {"0": 1.0, "1": round(1 - lost1 / 200, 6),
                                          "2": 0.995}
    assert r["availability_others_min"] == 0.995
    assert r["faults"][0]["answered_again_s"] == pytest.approx(0.535)
    assert r["availability"] == pytest.approx(1 - (lost1 + 1) / 600)
    assert FLUSH_SLACK_NS >= 20_000_000  # the window reaches back over unflushed records


def test_a_guest_that_never_came_back_loses_the_rest_to_the_fault(tmp_path):
    t0 = 1_000_000_000_000
    j, ups = _point(tmp_path, t0 + 1_500_000_000, None)
    r = fault_figures(tmp_path, j, ups).row()
    assert r["inputs_lost_fault"] == 2 + 50 and r["faults"][0]["answered_again_s"] is None


def test_no_faults_no_fault_figures(tmp_path):
    j = pd.DataFrame({"guest": [0, 0], "send_ns": [1, 2], "delivered": [True, False]})
    r = fault_figures(tmp_path, j, pd.DataFrame({"guest": [], "recv_ns": []}))
    assert r.availability == 0.5 and r.inputs_lost_fault == 0 and r.faults == ()
    assert not r.faulted and "availability_others_min" not in r.row()


def test_a_row_cut_short_by_a_kill_is_dropped_and_the_rest_kept(tmp_path):
    p = tmp_path / schema.SERVER_INPUTS
    head = ",".join(schema.SERVER_INPUT_FIELDS)
    p.write_text(f"{head}\n1,0,0,5,6,0,7,296,ok\n1,0,1,8,9,0,10,296,ok\n1,0,2,11,12")
    df = read_csv(p, schema.SERVER_INPUT_FIELDS)
    assert list(df["seq"]) == [0, 1]


def test_inputs_after_the_servers_last_record_are_the_faults(tmp_path):
    """A server whose last recorded input came 80 ms before its kill (its tick ran
    late, more than the 50-ms slack): the inputs lost since are the kill's."""
    import json

    import pandas as pd

    from analysis.availability import fault_figures

    ms = 1_000_000
    t0 = 10_000 * ms
    send = [t0 - 200 * ms + k * 20 * ms for k in range(20)]  # every 20 ms, to t0 + 180 ms
    delivered = [s <= t0 - 80 * ms for s in send]
    j = pd.DataFrame({"guest": 1, "send_ns": send, "delivered": delivered})
    (tmp_path / "faults.json").write_text(json.dumps(
        {"faults": [{"fault": "kill 1 at 10s", "guest": 1, "fault_ns": t0}]}))
    f = fault_figures(tmp_path, j, pd.DataFrame({"guest": [], "player": [], "arrive_ns": []}))
    assert f.inputs_lost_fault == sum(not d for d in delivered) == 13
