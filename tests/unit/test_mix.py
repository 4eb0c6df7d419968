"""Mixed hosts (--mix): shares to guests, guest i's game fixed by i, and each profile
judged under its own SLA (gamebed/spec.py, analysis/mix.py)."""

import pytest

from analysis.capacitytext import capacity_csv
from analysis.mix import judge_mix, profile_guests
from gamebed.spec import ExperimentSpec
from gamebed.workload import mix_counts, mix_sequence, parse_mix

MIX = ("tsai2009:3", "tick128:1")


def test_largest_remainder_with_one_guest_each():
    assert mix_counts([3, 1], 12) == [9, 3]
    assert mix_counts([3, 1], 4) == [3, 1]
    assert mix_counts([3, 1], 5) == [4, 1]  # 3.75 / 1.25
    assert mix_counts([3, 1], 2) == [1, 1]  # at least one each
    assert mix_counts([5, 3, 2], 10) == [5, 3, 2]
    with pytest.raises(ValueError, match="a mix of 2 profiles needs at least 2 guests"):
        mix_counts([3, 1], 1)


@pytest.mark.parametrize("shares", [[3, 1], [1, 1], [5, 3, 2], [2, 1, 1]])
def test_every_count_has_its_shares_and_a_guest_keeps_its_game(shares):
    seq = mix_sequence(shares, 48)
    for n in range(len(shares), 49):
        prefix = seq[:n]
        assert [prefix.count(k) for k in range(len(shares))] == mix_counts(shares, n)
    assert mix_sequence(shares, 20) == seq[:20]  # fixed by index, whatever the count


def test_a_mix_is_named_profiles_with_positive_shares():
    assert parse_mix(MIX) == [("tsai2009", 3.0), ("tick128", 1.0)]
    for bad in (("tsai2009:3",), ("tsai2009:3", "tsai2009:1"), ("tsai2009:x", "tick64:1"),
                ("tsai2009:0", "tick64:1")):
        with pytest.raises(ValueError, match="mix"):
            parse_mix(bad)


def test_a_mixed_spec_gives_each_guest_its_game():
    s = ExperimentSpec.from_dict({"mix": MIX, "guest_counts": (4, 8)})
    assert s.game.profile == "tsai2009"  # the mix's first
    games = [s.guest_spec(i).game.profile for i in range(8)]
    assert games.count("tick128") == 2 and games[:4].count("tick128") == 1
    assert s.server_args(games.index("tick128"))[4:] == ["--tick-hz", "128"]
    assert s.server_args(0)[4:] == []
    with pytest.raises(ValueError, match="unknown profile"):
        ExperimentSpec.from_dict({"mix": ("tsai2009:3", "quake:1")})
    with pytest.raises(ValueError, match="needs at least 2 guests"):
        ExperimentSpec.from_dict({"mix": MIX, "guest_counts": (1, 4)})


def entry(mode, n, tsai_us, tick_us):
    """A mixed point's summary entry: each profile's mean delay (CI ±5 µs), no loss."""
    def fig(d):
        return {"delay_mean_us": d, "delay_mean_ci_lo_us": d - 5, "delay_mean_ci_hi_us": d + 5,
                "loss_ratio": 0.0, "inputs_lost": 0, "inputs_sent": 1000}
    return {"mode": mode, "guests": n, "repeat": 0,
            "profiles": {"tsai2009": {"guest_indices": [0, 2, 3], **fig(tsai_us)},
                         "tick128": {"guest_indices": [1], **fig(tick_us)}}}


def test_each_profile_under_its_own_sla_and_the_mix_under_all():
    spec = ExperimentSpec.from_dict({"mix": MIX, "guest_counts": (4, 8, 12)}).to_dict()
    pts = [entry("guest", 4, 120, 120), entry("guest", 8, 400, 400),
           entry("guest", 12, 1200, 1200)]
    got = judge_mix(pts, spec)
    assert got["slas"]["tick128"]["delay_ms"] == pytest.approx(0.1562)
    tsai = got["profiles"]["tsai2009"][1]["guest"]
    tick = got["profiles"]["tick128"][1]["guest"]
    assert (tsai["capacity"], tsai["first_failure"]) == (8, 12)  # 1 ms SLA
    assert (tick["capacity"], tick["first_failure"]) == (4, 8)  # 0.156 ms SLA
    mix = got["mix"][1]["guest"]
    assert (mix["capacity"], mix["first_failure"]) == (4, 8)  # every profile must pass
    csv = capacity_csv(got["mix"][1], {"stat": "mean", "delay_ms": 1.0, "loss": 0.01},
                       got)
    assert list(csv["profile"]) == ["mix", "tsai2009", "tick128"]
    assert list(csv["capacity"]) == [4, 8, 4]


def test_a_mixed_count_whose_load_generator_set_the_pace_is_invalid():
    """The point's load_bound holds for every profile (one client plays them all): the
    first mixed search counted such counts and reported a capacity they set."""
    spec = ExperimentSpec.from_dict({"mix": MIX, "guest_counts": (4, 8, 12)}).to_dict()
    pts = [entry("guest", 4, 120, 120), {**entry("guest", 8, 120, 400), "load_bound": True},
           {**entry("guest", 12, 1200, 1200), "load_bound": True}]
    got = judge_mix(pts, spec)
    v = got["mix"][0].set_index("guests")["verdict"]
    assert v[4] == "pass" and v[8] == "invalid" and v[12] == "invalid"
    mix = got["mix"][1]["guest"]
    assert mix["capacity"] == 4 and mix["first_failure"] is None and mix["invalid"] == [8, 12]
    assert got["profiles"]["tick128"][1]["guest"]["first_failure"] is None


def test_profile_guests_follow_the_sequence():
    spec = {"mix": list(MIX)}
    assert profile_guests(spec, 4) == {"tsai2009": [0, 2, 3], "tick128": [1]}


def test_a_mixed_search_starts_and_stays_at_a_guest_per_profile():
    """A 2-profile mix cannot run 1 guest: its search starts at 2 and never bisects
    below it (the first search of tsai2009:3,tick128:1 asked for 1 and was refused)."""
    import pandas as pd

    from analysis.capacity import next_count
    from analysis.mix import mix_search_step

    spec = ExperimentSpec.of(mix=("tsai2009:3", "tick128:1"), profile="tsai2009").to_dict()
    assert mix_search_step(spec, 48)([], set()) == 2
    v = pd.DataFrame({"mode": ["guest", "guest"], "guests": [2, 8],
                      "verdict": ["unsure", "fail"]})
    picks = set()
    tried = {2, 8}
    while (n := next_count(v, tried, 48, minimum=2)) is not None and len(picks) < 10:
        picks.add(n)
        tried.add(n)
        v = pd.concat([v, pd.DataFrame({"mode": ["guest"], "guests": [n],
                                        "verdict": ["unsure"]})])
    assert picks and min(picks) >= 3 and 1 not in tried


def test_a_mixed_run_and_search_start_at_a_guest_per_profile(tmp_path, monkeypatch, capsys):
    """Through the CLI (dry run): a mix's default counts and its search begin where a
    guest per profile fits (both were refused at 1 guest before)."""
    import vm
    from gamebed.cli import main

    monkeypatch.setattr(vm, "uml_prerequisites", lambda: None)
    mix = ["--mix", "tsai2009:3,tick128:1", "--backend", "uml", "--dry-run"]
    assert main(["run", *mix, "--guests", "auto", "--max-guests", "4",
                 "--out", str(tmp_path / "a")]) == 0
    assert "[1] 2 guest(s)" in capsys.readouterr().err
    assert main(["run", *mix, "--out", str(tmp_path / "b")]) == 0
    assert "[1/8] 4 guest(s)" in capsys.readouterr().err
