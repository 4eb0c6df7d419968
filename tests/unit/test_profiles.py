"""Workload profiles (gamebed/spec.py): validation, presets, TOML, and the commands
they give the game's server and client; `gamebed play --profile` per preset."""

import json

import pytest

from gamebed.cli import build_parser, main, spec_from_args
from gamebed.spec import ExperimentSpec
from gamebed.workload import PRESETS, WorkloadProfile, sla_rule


def test_the_default_profile_is_the_papers_game_unchanged():
    s = ExperimentSpec()
    assert s.game.profile == "tsai2009" and s.game.workload() == PRESETS["tsai2009"]
    g = s.game
    assert (g.players, g.rate, g.tick_hz, g.input_bytes, g.input_process) == (
        4, 20.0, 20.0, 296, "poisson")
    assert (s.sla.sla_stat, s.sla.sla_delay_ms, s.sla.sla_loss) == ("mean", 1.0, 0.01)
    # its commands are today's: nothing added to server or client
    assert s.game.server_flags() == [] and s.game.client_flags() == []


def test_every_presets_sla_follows_the_one_rule():
    for p in PRESETS.values():
        assert p.sla_delay_ms == sla_rule(p.tick_hz)
        assert (p.sla_stat, p.sla_loss) == ("mean", 0.01)
    assert sla_rule(20.0) == 1.0 and sla_rule(128.0) == pytest.approx(0.15625, abs=1e-4)


def test_a_profile_sets_the_load_and_flags_still_override():
    s = ExperimentSpec.from_dict({"profile": "tick128"})
    g = s.game
    assert (g.players, g.tick_hz, g.rate, g.input_process) == (10, 128.0, 128.0, "per_tick")
    assert s.game.server_flags() == ["--tick-hz", "128"]
    assert s.server_args() == ["--dispatch", "epoll", "--work-us", 0.0, "--tick-hz", "128"]
    assert s.game.client_flags() == ["--input-process", "per_tick"]
    s = ExperimentSpec.from_dict({"profile": "br30", "players": 8})
    assert s.game.players == 8 and s.game.tick_hz == 30.0 and s.game.input_jitter == 0.2
    assert ExperimentSpec.from_dict({"profile": "br30"}).game.server_flags()[-2:] == [
        "--max-players", 100]


@pytest.mark.parametrize("fields,msg", [
    ({"tick_hz": 0}, "tick_hz"), ({"input_process": "bursty"}, "input_process"),
    ({"input_jitter": 1.0}, "input_jitter"), ({"input_bytes": 103}, "input_bytes must be 104"),
    ({"input_bytes": 1457}, "input_bytes must be 104..1456"),
    ({"sla_stat": "median"}, "the SLA"), ({"sla_loss": 1.5}, "the SLA")])
def test_bad_profiles_are_refused_with_the_reason(fields, msg):
    with pytest.raises(ValueError, match=msg):
        WorkloadProfile("x", **fields)


def test_unknown_profile_and_libvirt_are_refused():
    with pytest.raises(ValueError, match="unknown profile 'quake'"):
        ExperimentSpec.of(profile="quake")
    with pytest.raises(ValueError, match="libvirt's guests run the default game only"):
        ExperimentSpec.from_dict({"profile": "tick64", "backend": "libvirt"})


def test_a_toml_spec_defines_its_own_profile(tmp_path):
    f = tmp_path / "spec.toml"
    f.write_text('profile = "mygame"\nduration = 3\n[profiles.mygame]\nplayers = 6\n'
                 'tick_hz = 60\ninput_process = "periodic"\ninput_rate_hz = 60\n'
                 'input_bytes = 1216\nsla_delay_ms = 0.5\n')
    s = ExperimentSpec.from_toml(f)
    g = s.game
    assert (g.players, g.tick_hz, g.rate, g.input_bytes, s.sla.sla_delay_ms) == (
        6, 60.0, 60.0, 1216, 0.5)
    assert s.design.duration == 3
    # written into the results and read back, it is the same spec
    assert ExperimentSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_profile_flag_on_run_and_launch():
    a = build_parser().parse_args(["run", "--profile", "tick64", "--players", "12"])
    s = spec_from_args(a)
    assert s.game.profile == "tick64" and s.game.tick_hz == 64.0 and s.game.players == 12


def test_dry_run_passes_the_game_to_server_and_client(tmp_path, capsys):
    assert main(["run", "--dry-run", "--backend", "netns", "--guests", "1", "--profile",
                 "tick128", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "fpsmodel server" in out and "--tick-hz 128" in out
    assert "--input-process per_tick" in out and "--players 10" in out and "--rate 128.0" in out


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_play_achieves_each_presets_rates(name, tmp_path, capsys):
    """On loopback (no root): the server's ticks and the players' inputs at the preset's
    rates, to 2% (Poisson: the client sends its seeded schedule whole)."""
    p = PRESETS[name]
    players = min(p.players, 20)  # br30's 100 players: 20 keep the test short
    assert main(["play", "--profile", name, "--players", str(players), "--duration", "3",
                 "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["inputs_lost"] == 0 and s["dropped"] == {}
    assert s["input_payload_sizes"] == [p.input_bytes]
    assert s["tick_hz_achieved"] == pytest.approx(p.tick_hz, rel=0.02)
    if p.input_process == "poisson":
        assert s["inputs_sent"] > 0.8 * p.rate_hz * 3 * players
    else:
        assert s["input_rate_per_player"] == pytest.approx(p.rate_hz, rel=0.02)


def _point(tmp_path, lateness_us, ticks=((19.9, 60.0), (20.1, 55.0))):
    from fpsmodel.records import CLIENT_INPUT_FIELDS, CLIENT_INPUTS

    for i, (hz, gap) in enumerate(ticks):
        g = tmp_path / f"guest{i}"
        g.mkdir()
        (g / "server_summary.json").write_text(json.dumps(
            {"tick_hz_achieved": hz, "tick_gap_p99_ms": gap}))
    rows = [",".join(CLIENT_INPUT_FIELDS)] + [
        f"0,0,{k},0,0,{int(x * 1000)},0" for k, x in enumerate(lateness_us)]
    (tmp_path / CLIENT_INPUTS).write_text("\n".join(rows) + "\n")
    return {"guests": 2, "spec": {"players": 4, "duration": 10.0}}


def test_load_figures_say_how_the_game_ran(tmp_path):
    from analysis.load import load_figures

    meta = _point(tmp_path, [100.0] * 1580 + [150.0] * 20)  # 1600 inputs, 80 player-s
    f = load_figures(tmp_path, meta, host_busy=0.2)
    assert f["tick_hz_achieved"] == pytest.approx(20.0) and f["tick_gap_p99_ms"] == 60.0
    assert f["input_rate_achieved"] == pytest.approx(20.0)
    assert f["send_lateness_p99_us"] == pytest.approx(150.0, abs=1)
    assert f["load_bound"] is False
    assert load_figures(tmp_path, meta, host_busy=0.95)["load_bound"] is True


def test_a_late_client_makes_the_point_load_bound(tmp_path):
    from analysis.load import load_figures

    meta = _point(tmp_path, [100.0] * 95 + [900.0] * 5)
    assert load_figures(tmp_path, meta, host_busy=0.1)["load_bound"] is True


def test_report_flags_a_game_off_its_profile():
    import pandas as pd

    from analysis.pointtables import game_rows

    spec = {"tick_hz": 128.0, "rate": 128.0, "players": 10, "duration": 10.0,
            "input_process": "per_tick"}
    df = pd.DataFrame([
        {"mode": "host", "guests": 2, "repeat": 0, "tick_hz_achieved": 127.9,
         "tick_gap_p99_ms": 9.0, "input_rate_achieved": 128.0, "send_lateness_p99_us": 80.0,
         "load_bound": False},
        {"mode": "guest", "guests": 2, "repeat": 0, "tick_hz_achieved": 120.0,
         "tick_gap_p99_ms": 30.0, "input_rate_achieved": 125.0, "send_lateness_p99_us": 900.0,
         "load_bound": True}])
    rows = {r[0]: r for r in game_rows(df, spec)}
    assert rows["host"][-2:] == ["no", "–"]
    assert rows["guest"][-2] == "yes" and rows["guest"][-1] == "tick -6.2%, inputs -2.3%"
    # a Poisson schedule's count varies: 2% off 800 inputs is within 3 standard deviations
    poisson = {**spec, "rate": 20.0, "tick_hz": 20.0, "players": 4, "input_process": "poisson"}
    one = df.iloc[[0]].assign(guests=1, tick_hz_achieved=20.0, input_rate_achieved=20.4)
    assert game_rows(one, poisson)[0][-1] == "–"
    assert game_rows(df.drop(columns=["tick_hz_achieved"]), spec) == []


def test_a_games_fields_have_one_home_the_default_profile():
    """The spec's game and SLA default to the default profile's fields (one owner), and a
    bad value is named by the spec key the user gave, checked by the profile's rules."""
    from gamebed.specparts import Game, SlaSpec
    from gamebed.workload import DEFAULT_PROFILE, SPEC_KEYS

    fields = {**vars(Game()), **vars(SlaSpec())}
    profile = DEFAULT_PROFILE.spec_fields()
    for key in SPEC_KEYS.values():
        assert fields[key] == profile[key], key
    bad = Game(players=0, server_work_us=-1, input_jitter=1.5).problems()
    assert bad == ["players, tick_hz (1..1000) and rate must be positive",
                   "input_jitter is a fraction of a period in [0, 1)",
                   "server_work_us is CPU microseconds per player per tick, 0..1e6"]
