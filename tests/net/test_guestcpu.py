"""`--guest-cpus K` on a real namespace run: the guests get K of their CPU, cpu.json
records what they got, and nothing of the budget outlives the run (root)."""

import json

import pytest

from gamebed.cgroups import leftovers
from gamebed.cli import main
from tests.support import skip_unless_clang


@pytest.mark.parametrize("by", ["weight", "quota"])
def test_guest_cpus_hold_busy_guests_to_their_share(netns_ok, tmp_path, by):
    skip_unless_clang()
    out = tmp_path / "res"
    # two servers that each want 1.6 cores (simulated game logic), on 0.3 of one CPU
    assert main(["run", "--backend", "netns", "--guests", "2", "--modes", "host",
                 "--duration", "4", "--guest-cpus", "0.3", "--guest-cpus-by", by,
                 "--server-work-us", "20000", "--out", str(out), "--no-report"]) == 0
    s = json.loads((out / "summary.json").read_text())
    cpu = json.loads((out / s["points"][0]["dir"] / "cpu.json").read_text())
    b = cpu["budget"]
    assert b["guest_cpus"] == 0.3 and b["by"] == by and b["cpus"] == [1]
    assert b["cores_used"] == pytest.approx(0.3, abs=0.05)
    if by == "weight":  # the hog took the rest of the guests' CPU
        assert b["share"] == pytest.approx(0.3, abs=0.05)
        assert b["hog_s"] > 0.6 * cpu["window_s"] and b["nr_throttled"] == 0
    else:  # the quota throttled the guests' parent group, no hog ran
        assert b["hog_s"] == 0.0 and b["share"] is None and b["nr_throttled"] > 100
    assert leftovers(s["prefix"]) == []  # the budget's groups are gone, every hierarchy
