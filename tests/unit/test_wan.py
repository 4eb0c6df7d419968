"""--wan: its netem arguments, the tc commands, and the host's share in the verdicts."""

import pandas as pd
import pytest

from analysis.capacity import Sla, verdicts
from analysis.point import path_split
from fpsmodel import wire
from gamebed.spec import ExperimentSpec
from gamebed.wan import MSG_TYPE_AT, client_side, host_side, netem_args


def test_netem_arguments_checked():
    assert netem_args("delay 30ms 5ms loss 0.5%") == ["delay", "30ms", "5ms", "loss", "0.5%"]
    assert netem_args("delay 20ms 4ms distribution normal rate 10mbit")[-1] == "10mbit"
    for bad, msg in (("", "empty"), ("jitter 5ms", "not a netem keyword"),
                     ("delay", "needs a value"), ("loss lots", "is not a value"),
                     ("delay 1ms; rm -rf /", "is not a value")):
        with pytest.raises(ValueError, match=msg):
            netem_args(bad)
    with pytest.raises(ValueError, match="--wan: 'jitter'"):
        ExperimentSpec.of(wan="jitter 5ms")


def test_clock_sync_bypasses_the_wan_both_ways():
    up = client_side("gbc", "c0", ["delay", "30ms"])
    down = host_side("", "up0", ["delay", "30ms"])
    assert up[0][:4] == ["ip", "netns", "exec", "gbc"] and down[0][0] == "tc"
    assert up[1][-3:] == ["netem", "delay", "30ms"]
    # the unshaped band takes the sync messages, matched on the game header's type byte
    filt = up[2]
    assert filt[filt.index("u8") + 1] == str(wire.MSG_SYNC_REQ) and filt[-1] == "1:1"
    assert host_side("", "up0", ["loss", "1%"])[2][-6] == str(wire.MSG_SYNC_RESP)
    # the filter's offset lands on the type byte of a real sync request behind IPv4 + UDP
    packet = bytes(20 + 8) + wire.Codec(7).encode_sync_req(player=1, seq=2, t1=3)
    assert packet[MSG_TYPE_AT] == wire.MSG_SYNC_REQ
    assert wire.HEADER.unpack_from(bytes([0, 0, 3]) + bytes(29))[2] == wire.MSG_SYNC_REQ


def test_path_split_at_the_host_stamp():
    j = pd.DataFrame({
        "send_ns": pd.array([0, 0, 0, 0, 0], dtype="Int64"),
        "host_ns": pd.array([30_000, 32_000, None, 31_000, 29_000], dtype="Int64"),
        "delivered": [True, False, False, False, True],
        "stale": [False, True, False, False, False]})
    s = path_split(j)
    assert s.host_logged == 4 and s.lost_network == 1
    assert s.reordered == 1 and s.lost_host == 1  # the stale one is not lost
    assert s.net_mean_us == pytest.approx(30.5)
    assert s.row()["net_delay_mean_us"] == s.net_mean_us  # stored under its old name


def _points(share_delay_us: float, e2e_delay_us: float) -> pd.DataFrame:
    return pd.DataFrame([{
        "mode": "guest", "guests": 4, "inputs_sent": 1000, "inputs_lost": 50, "loss_ratio": 0.05,
        "delay_mean_us": e2e_delay_us, "delay_mean_ci_lo_us": e2e_delay_us - 1,
        "delay_mean_ci_hi_us": e2e_delay_us + 1,
        "stamp_error_mean_us": share_delay_us, "stamp_error_mean_ci_lo_us": share_delay_us - 1,
        "stamp_error_mean_ci_hi_us": share_delay_us + 1,
        "host_loss_ratio": 0.0, "inputs_lost_host": 0, "inputs_host_logged": 950}])


def test_a_slow_lossy_wan_does_not_shrink_the_hosts_capacity():
    pts = _points(share_delay_us=120.0, e2e_delay_us=30_120.0)
    e2e = verdicts(pts, Sla("mean", 1.0, 0.01))
    host = verdicts(pts, Sla("mean", 1.0, 0.01, share="host"))
    assert e2e["verdict"][0] == "fail"  # 30 ms of WAN and 5% of its loss
    assert host["verdict"][0] == "pass" and host["value_us"][0] == 120.0
    slow_host = verdicts(_points(5000.0, 35_000.0), Sla("mean", 1.0, 0.01, "host"))
    assert slow_host["verdict"][0] == "fail"  # the host's own delay still counts
    assert Sla.of_run({"wan": "delay 30ms"}).share == "host"
    assert Sla.of_run({}).share == "client"


def test_client_emulator_delays_jitters_thins_and_paces():
    from fpsmodel.wan import WanLink, WanModel

    m = WanModel.parse(["delay", "20ms", "5ms", "loss", "10%", "rate", "1mbit"])
    assert (m.delay_ns, m.jitter_ns, m.loss, m.rate_bps) == (20e6, 5e6, 0.1, 1e6)
    link = WanLink(m, seed=3)
    for i in range(1000):
        link.put(i * 5_000_000, i, 125)  # 125 bytes: 1 ms on a 1 Mbit/s link
    out = link.due(10**12)
    assert link.dropped + link.passed == 1000 and 60 < link.dropped < 140
    delays = [t - i * 5_000_000 for t, i in out]
    assert all(16e6 <= d <= 26e6 for d in delays)  # 1 ms on the wire + 20 ± 5 ms
    order = [i for _, i in out]
    assert order != sorted(order)  # the jitter reorders (datagrams 5 ms apart, ± 5 ms)
    again = WanLink(m, seed=3)
    for i in range(1000):
        again.put(i * 5_000_000, i, 125)
    assert again.due(10**12) == out  # seeded: the same WAN every time
    with pytest.raises(ValueError, match="needs the kernel's netem"):
        WanModel.parse(["delay", "20ms", "distribution", "normal"])
