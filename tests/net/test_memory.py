"""A run whose count would not fit in memory stops before booting it, says why and what
fits, and leaves nothing (gamebed/memory.py, vm/testbed.py)."""

import json

from gamebed import memory
from gamebed.cli import main
from gamebed.leaks import NOTHING, leftovers
from tests.support import skip_unless_clang, skip_unless_netns


def test_a_count_that_would_not_fit_is_refused_before_it_is_booted(tmp_path, monkeypatch,
                                                                   capsys):
    skip_unless_netns()
    skip_unless_clang()
    # 2 namespace guests fit in 1124 MiB (the reserve and 40 MiB each, before any is
    # measured: every count boots afresh here), 3 do not
    monkeypatch.setattr(memory, "available_mib", lambda: memory.RESERVE_MIB + 100)
    out = tmp_path / "res"
    assert main(["run", "--backend", "netns", "--guests", "2,3", "--modes", "host",
                 "--duration", "1", "--fresh-guests", "--no-report", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "3 more guest(s) need about 1144 MiB (40 MiB each, a game server's" in err
    assert "at most 2 guests fit" in err
    s = json.loads((out / "summary.json").read_text())
    assert [p["guests"] for p in s["points"]] == [2]  # the count that fitted was measured
    assert leftovers(s["prefix"]) == NOTHING
