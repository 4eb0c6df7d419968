"""`gamebed report A B`: runs side by side, differences with CIs, loads that must match."""

import json

import pytest

from analysis.compare import compare, write_comparison
from analysis.synth import SynthRun, write_run
from gamebed.cli import main

GUESTS = (1, 2, 4)


def _run(out, extra_guest_us: float):
    def shape(mode, g, rng, n):
        delay = rng.exponential(50.0 * g, n) + (extra_guest_us if mode == "guest" else 0.0)
        host = delay.copy() if mode == "host" else delay * 0.2
        return delay, host, 0.0
    write_run(out, shape, SynthRun(guest_counts=GUESTS, inputs_per_point=5000, seed=3))
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cmp")
    return _run(base / "epoll", 0.0), _run(base / "select", 400.0)


def test_differences_find_what_was_built_in(two_runs):
    c = compare(list(two_runs))
    d = c["differences"].set_index(["mode", "guests"])
    for g in GUESTS:  # guest mode: +400 µs built in, beyond the CI; host mode: nothing
        assert 330 < d.loc[("guest", g), "delay_mean_diff_us"] < 470
        assert d.loc[("guest", g), "significant"]
        assert abs(d.loc[("host", g), "delay_mean_diff_us"]) < 30
    assert set(c["caps"]) == {"epoll", "select"}


def test_runs_of_different_load_are_refused_naming_the_field(two_runs, tmp_path):
    other = _run(tmp_path / "seed9", 0.0)
    for pj in other.glob("points/*/point.json"):
        meta = json.loads(pj.read_text())
        meta["spec"] = {"seed": 9}
        pj.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="seed: epoll=None, seed9=9"):
        compare([two_runs[0], other])
    assert compare([two_runs[0], other], allow_load_difference=True)["load_differences"]


@pytest.mark.parametrize("field,value", [("uml_mode", "seccomp"),
                                         ("guest_kernel_digest", "0123456789abcdef")])
def test_runs_on_different_guest_kernels_are_refused_naming_the_field(two_runs, tmp_path,
                                                                       field, value):
    other = _run(tmp_path / "other", 0.0)
    for pj in other.glob("points/*/point.json"):
        meta = json.loads(pj.read_text())
        meta["environment"][field] = value
        pj.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"{field}: epoll=None, other={value}"):
        compare([two_runs[0], other])
    c = compare([two_runs[0], other], allow_kernel_difference=True)
    assert c["kernel_differences"] and not c["load_differences"]
    assert main(["report", str(two_runs[0]), str(other), "--out", str(tmp_path / "c")]) == 2


def test_cli_writes_the_comparison(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["report", *map(str, two_runs), "--out", str(out)]) == 0
    md = (out / "comparison.md").read_text()
    assert "## Differences to the first run" in md and "| select | epoll | guest |" in md
    assert (out / "comparison.csv").stat().st_size > 100


def test_comparison_renders_in_headless_chromium(chromium_ok, two_runs, tmp_path):
    from tests.browser import open_report

    paths = write_comparison(list(two_runs), tmp_path / "cmp")
    facts = open_report(paths["html"], tmp_path / "cmp.png")
    assert facts["title"] == "gamebed comparison"
    assert [i["alt"] for i in facts["imgs"]] == ["mean_delay_by_run"]
    img = facts["imgs"][0]
    assert img["complete"] and img["w"] > 300 and img["shown_w"] > 0
    assert len(facts["capacity_rows"]) == 4  # 2 runs × 2 modes
    assert facts["fetched"] == []
    assert (tmp_path / "cmp.png").stat().st_size > 20_000  # a page was drawn


def test_report_and_compare_judge_a_wan_run_alike(tmp_path):
    """A --wan run is judged on the host's share of the path by both commands (before,
    `report A B` judged its whole path, 30 ms of WAN included, and every count failed)."""
    import pandas as pd

    from analysis.report import write_report

    out = tmp_path / "wan"

    def shape(mode, g, rng, n):
        wan = rng.exponential(30.0, n) + 30_000.0  # before the host stamp
        host = rng.exponential(100.0 * g if mode == "guest" else 20.0, n)
        return wan + host, wan, 0.0
    write_run(out, shape, SynthRun(guest_counts=(1, 4, 16), inputs_per_point=2000))
    for pj in [*out.glob("points/*/point.json"), out / "summary.json"]:
        meta = json.loads(pj.read_text())
        meta["spec"] = {"wan": "delay 30ms"}
        pj.write_text(json.dumps(meta))
    write_report(out)
    report = pd.read_csv(out / "capacity.csv").set_index("mode")
    caps = compare([out, out])["caps"][str(out)]
    for mode in ("guest", "host"):
        assert caps[mode]["capacity"] == report.loc[mode, "capacity"]
        assert caps[mode]["first_failure"] == (None if pd.isna(report.loc[mode, "first_failure"])
                                               else report.loc[mode, "first_failure"])
    assert caps["guest"]["capacity"] == 4 and caps["host"]["capacity"] == 16


def test_capacity_is_weighed_against_the_machines_speed():
    """A run whose guests cost 20% less fits about 1.25 times the guests: an interval
    there is explained by speed; one that moved the other way is beyond it."""
    from analysis.compare import by_speed, speed_line

    def cap(lo, hi):
        return {"capacity": lo, "capacity_hi": hi, "bounded_by_largest_count": hi is None,
                "first_failure": None if hi is None else hi + 1, "largest_measured": 48}

    speeds = {"a": {"guest_cpu_ms_per_1000_inputs": 100.0, "sd": 3.0, "at_guests": 1},
              "b": {"guest_cpu_ms_per_1000_inputs": 80.0, "sd": 2.0, "at_guests": 1}}
    caps = {"a": {"guest": cap(16, 19)}, "b": {"guest": cap(20, 23)}}
    [row] = by_speed(caps, speeds, ["a", "b"])
    assert row["cost_ratio"] == 0.8 and row["verdict"] == "explained by speed"
    caps["b"]["guest"] = cap(8, 11)
    assert by_speed(caps, speeds, ["a", "b"])[0]["verdict"] == "beyond speed"
    line = speed_line({"speeds": speeds})
    assert "-20.0%" in line and "80 against 100" in line
