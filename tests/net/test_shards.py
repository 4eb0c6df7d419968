"""A real run whose players are split over two client shards (hostside/shards.py): the
point's records are the usual files, merged, and its host stamps exact."""

import json

import pandas as pd

from analysis.point import analyze_point
from gamebed.cli import main
from gamebed.leaks import NOTHING, leftovers
from tests.support import skip_unless_clang, skip_unless_netns


def test_a_run_with_two_client_shards(tmp_path):
    skip_unless_netns()
    skip_unless_clang()
    out = tmp_path / "res"
    assert main(["run", "--backend", "netns", "--guests", "3", "--modes", "host",
                 "--duration", "2", "--client-shards", "2", "--no-report",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["spec"]["client_shards"] == 2
    (entry,) = s["points"]
    pdir = out / entry["dir"]
    client = json.loads((pdir / "client_summary.json").read_text())
    assert [sh["guests"] for sh in client["shards"]] == [[0, 2], [2, 3]]
    assert len({sh["start_ns"] for sh in client["shards"]}) == 1  # one load
    inputs = pd.read_csv(pdir / "client_inputs.csv")
    assert sorted(inputs["guest"].unique()) == [0, 1, 2]
    assert len(inputs) == client["inputs_sent"]
    assert sorted(p.name for p in pdir.glob("client-shard*.log")) == [
        "client-shard0.log", "client-shard1.log"]
    assert not list(pdir.glob("shard*"))  # merged into the point's files
    row, _ = analyze_point(pdir)
    assert row["host_stamp_exact_fraction"] == 1.0  # host stamps, whoever sent them
    assert len(row["send_lateness_p99_by_shard_us"]) == 2
    assert leftovers(s["prefix"]) == NOTHING
