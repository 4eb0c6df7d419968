"""A mixed point's per-profile figures are the point's own figures over fewer guests
(analysis/point.py), and a report judges them by the SLA it is given (analysis/mix.py,
analysis/report.py).  Each test here failed before its fix (issue 38): the mix with
--wan, the report's --sla-* on a mix, the input rate's players and the fault's losses.
"""

import json

import numpy as np
import pytest

from analysis.capacity import SlaTerms
from analysis.mix import judge_mix, profile_guests
from analysis.point import analyze_point
from analysis.synth import T0, SynthPoint, write_point

# two games of one tick rate (the synthetic point's 20 Hz: its tick terms pass), apart
# in players and SLA; guest 0 plays "few", guest 1 "many" (profile_guests)
PROFILES = {"few": {"players": 1, "sla_delay_ms": 2.0},
            "many": {"players": 3, "sla_delay_ms": 1.0}}
MIX = ["few:1", "many:1"]
N = 2000  # inputs over 10 s, 1000 a guest: enough that no loss is a pass by Wilson
STEP = 10_000_000_000 // N  # ns between two inputs (analysis/synth.py write_point)


def mixed_point(pdir, delay_us=300.0, lost=None, **spec):
    """A mixed 2-guest point (guest stamps): every input `delay_us` late, those in
    `lost` lost; the spec's players are the first profile's, as a mixed spec keeps them."""
    mask = np.zeros(N, bool) if lost is None else lost
    write_point(pdir, SynthPoint("guest", 2, np.full(N, delay_us), np.full(N, 50.0), mask))
    meta = json.loads((pdir / "point.json").read_text())
    meta["spec"] = {"mix": MIX, "profiles": PROFILES, "players": 1, "duration": 10.0,
                    "tick_hz": 20.0, "sla_terms": "players", **spec}
    (pdir / "point.json").write_text(json.dumps(meta))
    return meta["spec"]


def test_the_profiles_are_guest_0_and_guest_1():
    assert profile_guests({"mix": MIX}, 2) == {"few": [0], "many": [1]}


def test_a_mixed_run_over_a_wan_judges_each_profile_by_the_hosts_loss(tmp_path):
    """--mix with --wan: each profile's entry carries the host's loss ratio, which the
    host's share of the SLA judges by (before: absent, so every count failed)."""
    spec = mixed_point(tmp_path / "p", wan="delay 5ms")
    row, _ = analyze_point(tmp_path / "p")
    for name in ("few", "many"):
        assert row["profiles"][name]["host_loss_ratio"] == 0.0
    got = judge_mix([{**row, "repeat": 0}], spec)
    for name in ("few", "many"):
        assert list(got["profiles"][name][0]["verdict"]) == ["pass"]


def test_a_report_on_a_mix_judges_every_profile_by_the_sla_it_is_given(tmp_path):
    """`gamebed report DIR --sla-delay-ms X` on a mix: X for every profile, as printed
    (before: each profile by its own SLA, whatever was given)."""
    import csv

    from analysis.report import write_report

    run = tmp_path / "run"
    mixed_point(run / "points" / "guest-g002", delay_us=300.0)

    def profiles(given=None):
        write_report(run, given, players_total=0)
        rows = csv.DictReader((run / "capacity.csv").open())
        return {r["profile"]: (r["capacity"], r["sla_delay_ms"]) for r in rows}
    # (the mix's row has no SLA of its own: every profile's must hold)
    assert profiles() == {"mix": ("2", ""), "few": ("2", "2.0"), "many": ("2", "1.0")}
    assert profiles(SlaTerms(delay_ms=0.1)) == {
        "mix": ("0", ""), "few": ("0", "0.1"), "many": ("0", "0.1")}


def test_the_input_rate_is_over_every_guests_own_players(tmp_path):
    """A mix's players differ by profile: the achieved rate divides the inputs by each
    guest's players (1 + 3), not by the first profile's for every guest (1 + 1)."""
    mixed_point(tmp_path / "p")
    row, _ = analyze_point(tmp_path / "p")
    assert row["input_rate_achieved"] == pytest.approx(N / ((1 + 3) * 10.0))
    assert row["profiles"]["few"]["input_rate_achieved"] == pytest.approx(N / 2 / 10.0)
    # a profile's entry is summary.json's, to 3 decimals
    assert row["profiles"]["many"]["input_rate_achieved"] == pytest.approx(N / 2 / 30.0, abs=1e-3)


def test_a_profiles_loss_leaves_out_the_faults_losses_as_the_points_does(tmp_path):
    """Inputs lost to a fault (faults.json) are not load's: taken out of the point's
    loss and, the same way, out of its profile's (before: the profile kept them)."""
    idx = np.arange(N)
    guest0 = (idx % 4) < 2  # round-robin over 2 guests × 2 players
    lost = guest0 & (idx >= 100) & (idx < 200)
    mixed_point(tmp_path / "p", lost=lost)
    fault = {"fault": "kill", "guest": 0, "fault_ns": T0 + 100 * STEP,
             "restarted_ns": T0 + 200 * STEP}
    (tmp_path / "p" / "faults.json").write_text(json.dumps({"faults": [fault]}))
    row, _ = analyze_point(tmp_path / "p")
    assert row["inputs_lost_fault"] == int(lost.sum()) == 50
    assert row["loss_ratio"] == 0.0
    few = row["profiles"]["few"]
    assert few["inputs_lost"] == 50 and few["inputs_lost_fault"] == 50
    assert few["loss_ratio"] == 0.0
    assert row["profiles"]["many"]["inputs_lost_fault"] == 0
