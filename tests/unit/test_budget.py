"""The time budget (gamebed/budget.py) and the settle criterion (gamebed/cpustat.py)."""

import pytest

from gamebed import cpustat
from gamebed.budget import PHASES, Eta, point_budget, sweep_budget
from gamebed.cgroups import PerCpuSource

S = 1_000_000_000


def phases(t0: int, settle: float, load: float, collect: float, teardown: float) -> dict:
    marks = {"enter": t0}
    t = t0
    for name, d in (("client_start", settle), ("client_done", load), ("weighed", collect),
                    ("left", teardown)):
        t += int(d * S)
        marks[name] = t
    return marks


def test_point_budget_splits_the_phases():
    b = point_budget(phases(5 * S, 0.5, 10.25, 1.5, 0.25), 0.4)
    assert b == {"settle": 0.5, "load": 10.25, "collect": 1.5, "teardown": 0.25,
                 "analysis": 0.4}


def test_point_budget_leaves_out_phases_it_lacks():
    assert point_budget({"enter": 0, "client_start": S}, 0.1) == {"settle": 1.0,
                                                                  "analysis": 0.1}


def test_sweep_budget_adds_points_to_their_count():
    pts = [{"guests": 1, "budget_s": {"settle": 1.0, "load": 10.0, "collect": 0.5}},
           {"guests": 1, "budget_s": {"settle": 0.5, "load": 10.0, "analysis": 0.2}},
           {"guests": 4, "budget_s": {"load": 11.0}}]
    b = sweep_budget({"1": 3.0, "4": 2.5}, pts)
    assert b["counts"]["1"] == {"boot": 3.0, "settle": 1.5, "load": 20.0, "collect": 0.5,
                                "teardown": 0.0, "analysis": 0.2, "total": 25.2}
    assert b["counts"]["4"]["total"] == 13.5
    assert b["total"]["total"] == pytest.approx(38.7)
    assert set(b["total"]) == {*PHASES, "total"}


def point(n: int, overhead: float, duration: float = 10.0) -> dict:
    return {"guests": n, "budget_s": {"load": duration, "collect": overhead}}


def test_eta_fits_the_overhead_to_the_guest_count():
    eta = Eta(10.0, boot_s_per_guest=2.0)
    pts = [point(1, 2.0), point(1, 2.0), point(4, 3.5), point(4, 3.5)]  # 1.5 + 0.5 n
    assert eta.point_s(48, pts) == pytest.approx(10.0 + 1.5 + 0.5 * 48)
    # boots at the measured cost per guest: 3 + 5 s for 1 + 4 guests → 1.6 s each
    left = eta.remaining([(4, 0, 1), (8, 4, 2)], pts, [(1, 3.0), (4, 5.0)])
    assert left == pytest.approx(eta.point_s(4, pts) + 1.0 + 1.6 * 4 + 2 * eta.point_s(8, pts))


def test_eta_guesses_before_any_point():
    eta = Eta(10.0, boot_s_per_guest=2.0, overhead_guess=(8.0, 0.5))
    assert eta.point_s(10, []) == 23.0
    assert eta.boot_s(5, []) == 11.0


def test_a_shrinking_count_boots_nothing_and_the_boot_estimate_stays_positive():
    """A search that shrinks its testbed (48 guests, then 24) stops guests, it boots
    none: the boot estimate per guest is over the counts that grew alone (before, the
    shrink's -24 guests made it negative)."""
    eta = Eta(10.0, boot_s_per_guest=2.0)
    grew = [(8, 16.0), (40, 80.0)]  # 2 s a guest
    assert eta.boot_s(4, [*grew, (-24, 3.0)]) == eta.boot_s(4, grew) == 9.0
    assert eta.boot_s(4, [(8, 16.0), (-40, 1.0)]) == 9.0  # not -0.5 s a guest
    assert eta.boot_s(4, [(-8, 1.0)]) == 9.0  # nothing booted yet: the backend's guess


class FakeCpus:
    """cpuacct's per-CPU nanoseconds: CPU 1 is busy by `busy` (a list, one per window)."""

    def __init__(self, tmp_path, busy: list[float], window: float = 0.1):
        self.path, self.busy, self.window = tmp_path / "usage_percpu", list(busy), window
        self.t, self.used = 0.0, [0, 0]
        self._write()

    def _write(self):
        self.path.write_text(" ".join(str(int(u)) for u in self.used) + " \n")

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self.used[1] += self.busy.pop(0) * s * 1e9
        self._write()


@pytest.fixture
def cpus(tmp_path, monkeypatch):
    def make(busy):
        fake = FakeCpus(tmp_path, busy)
        fake.source = PerCpuSource("fake usage_percpu", fake.path, 1e-9)
        return fake
    return make


def test_settle_measures_a_steady_baseline_first(cpus):
    # boot work running down: falling windows are not idle until three agree
    fake = cpus([0.9, 0.6, 0.3, 0.2, 0.11, 0.1, 0.12, 0.5, 0.3, 0.12])
    st = cpustat.Settle((1,), window_s=0.1, margin=0.03, min_windows=3, source=fake.source)
    out = st.wait(fake.clock, fake.sleep)
    assert out["settled"] and out["windows"] == [0.9, 0.6, 0.3, 0.2, 0.11, 0.1, 0.12]
    assert out["baseline_busy"] == 0.1
    # the next point at the same count keeps its baseline: 0.5 and 0.3 are not idle
    out = st.wait(fake.clock, fake.sleep)
    assert out["windows"] == [0.5, 0.3, 0.12] and out["settled"]


def test_settle_gives_up_and_says_so(cpus):
    fake = cpus([0.9, 0.5] * 20)
    st = cpustat.Settle((1,), window_s=0.1, margin=0.03, min_windows=3, timeout_s=0.95,
                        source=fake.source)
    out = st.wait(fake.clock, fake.sleep)
    assert out["settled"] is False and out["baseline_busy"] is None
    assert len(out["windows"]) == 10


def test_report_table_and_eta_note():
    from analysis.pointtables import budget_note, budget_rows

    pts = [{"guests": 4, "budget_s": {"load": 11.0}}, {"guests": 1, "budget_s": {"load": 10.0}}]
    run = {"budget_s": sweep_budget({"1": 2.0, "4": 3.0}, pts),
           "eta": [{"after_count": 1, "remaining_est_s": 12.0, "remaining_actual_s": 14.0,
                    "error": -0.143}]}
    rows = budget_rows(run)
    assert [r[0] for r in rows] == ["1", "4", "all"]
    assert rows[1] == ["4", "3.0", "0.0", "11.0", "0.0", "0.0", "0.0", "14.0"]
    assert rows[-1][-1] == "26.0"
    assert "1 guests 12 s (14 s, -14%)" in budget_note(run)
    assert budget_rows({}) == []


def test_eta_adds_what_finished_counts_took_beyond_boot_and_points():
    """A count not begun gets the extra the finished ones took (their warm-up, retries):
    their mean before three counts are done, then a + b·n; the current count's points
    get none."""
    eta = Eta(10.0, boot_s_per_guest=2.0)
    pts = [point(1, 2.0), point(4, 3.5)]
    base = eta.remaining([(4, 0, 1), (8, 4, 2)], pts, [(1, 3.0)])
    eta.count_extra += [(1, 1.0), (4, 4.0)]
    assert eta.extra_s(8) == 2.5
    assert eta.remaining([(4, 0, 1), (8, 4, 2)], pts, [(1, 3.0)]) == pytest.approx(base + 2.5)
    assert eta.remaining([(4, 0, 1)], pts, [(1, 3.0)]) == pytest.approx(eta.point_s(4, pts))
    eta.count_extra.append((8, 8.0))  # 0 + 1·n
    assert eta.extra_s(16) == pytest.approx(16.0)


@pytest.mark.parametrize("run", ["run1", "run2"])
def test_eta_replayed_on_stored_main_jobs_is_nearer_than_the_recorded_one(run):
    """Replay each stored main job's counts through Eta: from the third count on, each
    estimate of the time left misses what it really took by less than the estimate
    that run recorded (made without the counts' extra; 40-50% short at the end)."""
    import json
    from pathlib import Path

    s = json.loads((Path(__file__).parents[1] / "data" / "noisy" / run /
                    "summary.json").read_text())
    counts = sorted(int(n) for n in s["build_s"])
    ends = {e["after_count"]: e["elapsed_s"] for e in s["eta"]}
    recorded = {e["after_count"]: e["error"] for e in s["eta"]}
    eta, booted, start, last = Eta(10.0, boot_s_per_guest=3.0), [], 0.0, 0
    for i, n in enumerate(counts[:-1]):
        pts = [p for p in s["points"] if p["guests"] == n]
        known = s["build_s"][str(n)] + sum(sum(p["budget_s"].values()) for p in pts)
        eta.count_extra.append((n, max(0.0, ends[n] - start - known)))
        start, booted = ends[n], [*booted, (n - last, s["build_s"][str(n)])]
        plan, prev = [], n
        for m in counts[i + 1:]:
            plan.append((m, m - prev, 2))
            prev = m
        done = [p for p in s["points"] if p["guests"] <= n]
        actual = s["elapsed_s"] - ends[n]
        error = eta.remaining(plan, done, booted) / actual - 1
        if i >= 2:
            assert abs(error) < abs(recorded[n]), (n, error, recorded[n])
        last = n
