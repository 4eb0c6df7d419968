"""The netlink door without privileges: a dry run prints each request as the `ip` line
it stands for, marked, and keeps it in the runner's history; a request outside the
grammar (gamebed/netlink.py) is refused in a dry run too, so a dry run shows only what
a run can carry out."""

import pytest

from gamebed.proc import Runner


def test_a_dry_run_prints_each_request_as_its_ip_line():
    lines: list[str] = []
    r = Runner(dry_run=True, echo=lines.append)
    assert r.ip("gbX-g0", "neigh", "replace", "198.18.0.1", "lladdr", "02:67:62:00:00:01",
                "dev", "gbXn0", "nud", "permanent") == 0
    assert r.ip("", "netns", "add", "gbX-g0") == 0
    assert lines == ["netlink: ip -n gbX-g0 neigh replace 198.18.0.1 lladdr "
                     "02:67:62:00:00:01 dev gbXn0 nud permanent",
                     "netlink: ip netns add gbX-g0"]
    assert r.history[-1] == ["netlink:", "ip", "netns", "add", "gbX-g0"]


@pytest.mark.parametrize("args", [("route", "add", "default"), ("link",), ("netns", "exec", "x")])
def test_a_request_outside_the_grammar_is_refused_before_anything_is_printed(args):
    lines: list[str] = []
    with pytest.raises(ValueError, match="gamebed/netlink.py has no request"):
        Runner(dry_run=True, echo=lines.append).ip("", *args)
    assert lines == []


def test_a_sweep_closes_its_netlink_sockets_and_its_manifest_whatever_the_exit(tmp_path):
    """The run's runner keeps a netlink socket per namespace it spoke to; the sweep's
    end closes them with the manifest, on an error too (a socket pins its namespace)."""
    from gamebed.manifest import Manifest, new_prefix
    from gamebed.progress import Progress
    from gamebed.run import Layers, Run
    from gamebed.spec import ExperimentSpec
    from gamebed.sweep import _closing

    run = Run(ExperimentSpec.of(backend="netns"), tmp_path / "out", Layers(None), Runner(),
              Manifest(new_prefix(), state_dir=tmp_path / "state"), Progress())
    assert run.runner.ip("", "link", "show", "lo") == 0  # opens the root's socket
    assert run.runner._netlink is not None and run.manifest.path.exists()
    with pytest.raises(RuntimeError, match="boom"), _closing(run):
        raise RuntimeError("boom")
    assert run.runner._netlink is None
    assert not run.manifest.path.exists()
