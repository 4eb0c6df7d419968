"""The core package without root: the run manifest, spec parsing, the topology value,
the CLI's choices and argument errors, and the import rules between the parts."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from gamebed import spec as spec_mod
from gamebed.cli import build_parser, main
from gamebed.manifest import Manifest
from gamebed.spec import ExperimentSpec, stamp_driver
from gamebed.topology import Topology
from gamebed.workload import PRESETS

ROOT = Path(__file__).resolve().parents[2]


# -- manifest -------------------------------------------------------------------------------

def test_manifest_lists_before_and_strikes_after(tmp_path):
    m = Manifest("gbtest01", state_dir=tmp_path)
    a = m.add(kind="netns", name="gbtest01-a")
    b = m.add(kind="veth", netns="gbtest01-a", name="gbtest01u")
    on_disk = json.loads(m.path.read_text())
    assert on_disk == {"prefix": "gbtest01", "entries": [a, b]}
    m.remove(a)
    assert Manifest.load(m.path).entries == [b]
    m.close()
    assert m.path.exists()  # still lists b: a later `gamebed clean` needs it
    m.remove(b)
    m.close()
    assert not m.path.exists()


def test_manifest_survives_a_crash_mid_write(tmp_path, monkeypatch):
    m = Manifest("gbtest02", state_dir=tmp_path)
    m.add(kind="netns", name="gbtest02-a")

    def crash(*_a, **_k):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        m.add(kind="netns", name="gbtest02-b")
    # the file on disk is the last complete version, never a half-written one
    assert [e["name"] for e in Manifest.load(m.path).entries] == ["gbtest02-a"]


def test_dry_run_manifest_writes_nothing(tmp_path):
    m = Manifest("gbtest03", state_dir=tmp_path, dry_run=True)
    m.add(kind="netns", name="x")
    assert list(tmp_path.iterdir()) == []


# -- spec -----------------------------------------------------------------------------------

def test_spec_from_toml_and_overrides(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text('guest_counts = [1, 3]\nmodes = ["host"]\nplayers = 2\nbackend = "libvirt"\n')
    s = ExperimentSpec.from_toml(f, players=5, seed=None)
    assert s.design.guest_counts == (1, 3) and s.design.modes == ("host",) and s.game.players == 5
    assert s.backend == "libvirt" and s.design.seed == 1
    assert s.counts == (1, 3)
    assert ExperimentSpec.from_dict(s.to_dict()) == s


def test_the_spec_in_parts_keeps_the_keys_of_stored_runs():
    """A spec is made of parts, but its keys (TOML, spec.json, flags) stay flat and as
    they were: the stored runs' specs (recorded before the parts) have exactly these
    keys, each owned by one part, and they read back into the spec that wrote them."""
    import json

    stored = json.loads((ROOT / "tests/data/house/mix/summary.json").read_text())["spec"]
    added = {"client_shards": 1, "client_cpus": None, "players_on": None, "ssh_config": None,
             "players_python": "python3", "retries": 2,
             "stalls": None}  # keys added since, and their defaults
    assert set(stored) | set(added) == set(spec_mod.KEYS) == set(ExperimentSpec().to_dict())
    s = ExperimentSpec.from_dict(stored)
    assert json.loads(json.dumps(s.to_dict())) == {**stored, **added}
    assert s.game.mix == ("tsai2009:1", "small64:1")
    assert (s.design.guest_counts, s.design.wan) == ((2, 3), "delay 5ms 1ms")
    with pytest.raises(AttributeError, match=r"spec\.game\.players"):
        _ = s.players  # a flat key asked of the whole spec says where it lives now


def test_a_search_is_a_spec_the_spec_fills_in():
    s = ExperimentSpec.of(backend="uml").searching_up_to()
    d = s.design
    assert d.search_max == max(spec_mod.DEFAULT_COUNTS["uml"]) and d.guest_counts is None
    assert s.design.repeats == spec_mod.SEARCH_REPEATS and s.counts[:3] == (1, 2, 4)
    t = ExperimentSpec.of(backend="netns", guest_counts=(1, 2)).searching_up_to(8, 2)
    assert (t.design.search_max, t.design.repeats, t.counts) == (8, 2, (1, 2, 4, 8))


def test_spec_refuses_unknown_keys_and_bad_values(tmp_path):
    f = tmp_path / "exp.toml"
    f.write_text("guests = [1]\n")
    with pytest.raises(ValueError, match=r"unknown spec keys \['guests'\]"):
        ExperimentSpec.from_toml(f)
    for bad, word in ((dict(guest_counts=(0,)), "guest_counts"), (dict(modes=("both",)), "modes"),
                      (dict(backend="xen"), "backend"), (dict(stamper="dpdk"), "stamper"),
                      (dict(dispatch="kqueue"), "dispatch"), (dict(players=0), "players"),
                      (dict(cpu_cap=2.0), "cpu_cap"), (dict(game_port=70000), "game_port"),
                      (dict(guest_counts=(2, 2)), "each count once")):
        with pytest.raises(ValueError, match=word):
            ExperimentSpec.of(**bad)


def test_one_mode_vocabulary_maps_to_drivers():
    assert stamp_driver("host").decoder and stamp_driver("host").virtio_net == "patched"
    assert not stamp_driver("guest").decoder and stamp_driver("guest").virtio_net == "stock"
    assert set(spec_mod.MODES) == set(spec_mod._DRIVERS)


# -- topology -------------------------------------------------------------------------------

def test_topology_names_fit_and_addresses_are_distinct():
    t = Topology.build("gbabcdef", 250, 27960)
    names = [t.uplink, t.client_nic] + [g.host_port for g in t.guests] + \
            [g.nic_name for g in t.guests]
    assert max(len(n) for n in names) <= 15  # IFNAMSIZ - 1
    assert len({g.nic.ip for g in t.guests}) == len({g.nic.mac for g in t.guests}) == 250
    assert t.client.ip not in {g.nic.ip for g in t.guests}
    assert t.host_ns == "gbabcdef-host"
    assert Topology.build("gbabcdef", 1, 27960, host_in_root_ns=True).host_ns == ""
    assert t.server_targets()[:2] == ["198.18.1.1:27960", "198.18.1.2:27960"]


# -- CLI ------------------------------------------------------------------------------------

def _action(parser, cmd: str, dest: str):
    sub = next(a for a in parser._actions if a.dest == "cmd").choices[cmd]
    return next(a for a in sub._actions if a.dest == dest)


def test_cli_choices_come_from_the_spec():
    p = build_parser()
    for dest, key in (("backend", "backend"), ("stamper", "stamper"),
                      ("placement", "placement"), ("accel", "accel"), ("dispatch", "dispatch")):
        assert tuple(_action(p, "run", dest).choices) == spec_mod.CHOICES[key]
        assert tuple(_action(p, "launch", dest).choices) == spec_mod.CHOICES[key]
    assert f"{spec_mod.default('players')} for tsai2009" in _action(p, "run", "players").help
    for cmd in ("run", "launch", "play"):  # every preset is offered by name
        assert all(name in _action(p, cmd, "profile").help for name in PRESETS)


@pytest.mark.parametrize("argv,msg", [
    (["run", "--guests", "abc"], "--guests: expected comma-separated guest counts"),
    (["run", "--guests", "0,2"], "--guests: each count must be 1..250"),
    (["run", "--guests", "2,2"], "--guests: each count once, not '2,2'"),
    (["run", "--modes", "host,both"], "--modes: modes are among guest,host"),
])
def test_bad_arguments_get_one_clear_line(argv, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--dry-run", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- layering -------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


# what each package may import of the others (docs/architecture.md's table); the CLI is
# the top layer: it may import anything, and nothing imports it
MAY_IMPORT = {"fpsmodel": set(),  # the guest image carries fpsmodel alone
              "gamebed": {"fpsmodel"},
              "hostside": {"gamebed", "fpsmodel"},
              "analysis": {"gamebed", "fpsmodel"},
              "vm": {"gamebed", "hostside", "fpsmodel"}}


def test_layers_import_downwards_only():
    cli, entry = ROOT / "gamebed" / "cli", ROOT / "gamebed" / "__main__.py"
    for part, allowed in MAY_IMPORT.items():
        for f in (ROOT / part).rglob("*.py"):
            if cli in f.parents:  # the command's own modules
                continue
            wrong = _imports(f) & (set(MAY_IMPORT) - {part} - allowed)
            assert not wrong, f"{f.relative_to(ROOT)} imports {sorted(wrong)}"
            if f != entry:  # `python -m gamebed` is the CLI's own door
                assert "gamebed.cli" not in f.read_text(), f"{f.relative_to(ROOT)} imports the CLI"


def test_architecture_lists_every_module():
    """docs/architecture.md's module table names every module of the five packages (a
    module with code; an empty __init__ aside), and no module that is gone."""
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text()
    table = doc.split("## The tree, module by module", 1)[1]
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", table, re.M))
    present = {str(f.relative_to(ROOT)) for part in MAY_IMPORT for f in (ROOT / part).rglob("*.py")
               if f.read_text().strip()}
    assert present - listed == set(), "not in docs/architecture.md"
    assert listed - present == set(), "listed in docs/architecture.md but gone"


def test_no_backend_class_inherits_from_another():
    from vm import BACKENDS, backend_class

    assert set(BACKENDS) == set(spec_mod.BACKENDS) - {"auto"}  # one registry, all of them
    for name in BACKENDS:
        assert backend_class(name).__mro__[1:] == (object,), name


def test_every_backend_implements_the_whole_interface():
    """What callers use is what gamebed/backend.py declares, and every backend has it."""
    import inspect

    from gamebed.backend import GuestBackend
    from vm import BACKENDS, backend_class

    methods = {n for n, v in vars(GuestBackend).items()
               if callable(v) and not n.startswith("_")}
    assert {"add_guests", "remove_guests", "guest_info", "begin", "stop"} <= methods
    for name in BACKENDS:
        cls = backend_class(name)
        for m in methods:
            proto = inspect.signature(getattr(GuestBackend, m))
            mine = inspect.signature(getattr(cls, m))
            assert list(mine.parameters) == list(proto.parameters), (name, m)
        assert cls.name == name and isinstance(cls.BOOT_S_PER_GUEST, float)
        assert isinstance(cls.host_in_root_ns, bool)
        assert list(inspect.signature(cls).parameters) == ["ctx"], name
        # the interface's one attribute: each guest's cgroup (empty where none is ours)
        assert "self.cgroups = GuestCgroups()" in inspect.getsource(cls.__init__), name


# -- results directories --------------------------------------------------------------------

def test_results_directory_of_an_earlier_run_is_refused_resumed_or_overwritten(tmp_path):
    from gamebed.sweep import prepare_out

    spec = ExperimentSpec.of(backend="netns", guest_counts=(1, 2))
    out = tmp_path / "res"
    assert prepare_out(out, spec) is None  # new: fine, and nothing created
    assert not out.exists()
    (out / "points" / "host-g001").mkdir(parents=True)
    summary = {"spec": json.loads(json.dumps(spec.to_dict())), "prefix": "gbold",
               "points": [{"mode": "host", "guests": 1, "dir": "points/host-g001"}]}
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="already holds results .1 points.*--overwrite"):
        prepare_out(out, spec)
    with pytest.raises(ValueError, match="differs .* in duration"):
        prepare_out(out, spec.replace(duration=3.0), resume=True)
    assert prepare_out(out, spec, resume=True)["points"][0]["guests"] == 1
    with pytest.raises(ValueError, match="exclude"):
        prepare_out(out, spec, resume=True, overwrite=True)
    prepare_out(out, spec, overwrite=True, dry_run=True)  # a dry run removes nothing
    assert (out / "summary.json").exists()
    assert prepare_out(out, spec, overwrite=True) is None
    assert not (out / "points").exists() and not (out / "summary.json").exists()


def test_report_reads_only_the_points_summary_lists(tmp_path):
    import numpy as np

    from analysis.report import analyze, point_files
    from analysis.synth import SynthRun, write_run

    write_run(tmp_path, lambda m, g, r, n: (np.full(n, 50.0), np.full(n, 40.0), 0.0),
              SynthRun(guest_counts=(1, 2), inputs_per_point=200))
    summary = json.loads((tmp_path / "summary.json").read_text())
    summary["points"] = [{"mode": m, "guests": 1, "dir": f"points/{m}-g001"}
                         for m in ("guest", "host")]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    files, others = point_files(tmp_path)
    assert [f.parent.name for f in files] == ["guest-g001", "host-g001"]
    assert others == ["points/guest-g002", "points/host-g002"]
    df, _, _ = analyze(tmp_path)
    assert sorted(df["guests"].unique()) == [1]


def test_a_signal_during_a_shielded_teardown_step_is_raised_when_it_ends():
    from gamebed.proc import interrupt, shielded

    done = []
    with pytest.raises(KeyboardInterrupt):
        with shielded():
            with shielded():
                interrupt(KeyboardInterrupt("signal 2"))  # what the handler does
                done.append("inner step finished")
            done.append("outer step finished")
    assert done == ["inner step finished", "outer step finished"]
    with pytest.raises(KeyboardInterrupt):  # outside a shielded step: at once
        interrupt(KeyboardInterrupt("signal 15"))
    with shielded():  # nothing pending is left over from before
        pass


def test_clean_removes_a_listed_directory_and_the_run_directory_it_leaves_empty(tmp_path):
    from gamebed.proc import Runner
    from gamebed.resources import clean_manifest

    m = Manifest("gbc1ea11", state_dir=tmp_path / "state")
    run_dir = tmp_path / "vm" / m.prefix
    for d in ("uml-g001", "uml-g002"):
        (run_dir / d / "results").mkdir(parents=True)
        m.add(kind="dir", path=str(run_dir / d))
    other = tmp_path / "vm" / "gbother1" / "uml-g001"
    other.mkdir(parents=True)  # another run's: not listed, not touched
    done = clean_manifest(m.path, Runner())
    assert not run_dir.exists() and f"removed {run_dir}" in done
    assert other.is_dir() and not m.path.exists()


WRITER = """
import signal, sys, time
from pathlib import Path
out, rows = Path(sys.argv[1]), int(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
out.with_suffix(".ready").write_text("")
while not stop:
    time.sleep(0.01)
with open(out, "ab", buffering=0) as f:
    for _ in range(rows):  # the results, written after the stop, slowly
        f.write(b"x" * 1024)
        time.sleep(0.25)
if rows == 0:
    time.sleep(3600)  # stalled: must be killed
sys.exit(3)
"""


@pytest.mark.parametrize("rows", [8, 0])
def test_a_child_writing_its_results_after_the_stop_is_waited_for_and_a_stalled_one_killed(
        tmp_path, rows):
    import signal
    import sys
    import time

    from gamebed.proc import How, Process, Runner, wait_for

    out = tmp_path / "results.csv"
    said: list[str] = []
    p = Process([sys.executable, "-c", WRITER, str(out), str(rows)], Runner(),
                how=How(term_timeout=0.3)).start()
    wait_for(out.with_suffix(".ready").exists, 20, "the writer")
    t0 = time.monotonic()
    rc = p.stop_while_writing(out, interval=0.6, progress=said.append)
    took = time.monotonic() - t0
    if rows:  # 2 s of writing, far past the 0.3 s grace: all of it, its own exit
        assert rc == 3 and out.stat().st_size == rows * 1024
        assert said and "still writing results.csv" in said[0]
    else:  # no growth from one look to the next: the grace, then the kill
        assert rc == -signal.SIGKILL and took < 3
