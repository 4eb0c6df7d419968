"""`gamebed run --capture`: a pcapng per point that tshark opens, stamps to the ns."""

import csv
import shutil
import subprocess
from decimal import Decimal

import pytest

from gamebed.cli import main


def test_capture_opens_in_tshark_with_ns_stamps_and_input_comments(netns_ok, tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("needs Debian's tshark: run scripts/setup.sh")
    out = tmp_path / "cap"
    assert main(["run", "--backend", "netns", "--guests", "1", "--modes", "host",
                 "--duration", "2", "--capture", "--out", str(out)]) == 0
    pdir = out / "points" / "host-g001"
    pcap = pdir / "capture.pcapng"
    r = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|",
                        "-e", "frame.time_epoch", "-e", "frame.comment"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|", 1) for line in r.stdout.splitlines()]
    with open(pdir / "shim_inputs.csv") as f:
        truth = {int(x["host_ns"]): x for x in csv.DictReader(f)}
    with open(pdir / "guest0" / "server_inputs.csv") as f:
        used = {(x["player"], x["seq"]): int(x["kernel_ns"]) for x in csv.DictReader(f)}
    raw_frames = 0
    with open(pdir / "uplink.cap", "rb") as f:
        while head := f.read(12):
            raw_frames += 1
            f.seek(int.from_bytes(head[8:12], "little"), 1)
    assert len(rows) == raw_frames > len(truth) > 50  # inputs, plus sync and ARP frames
    commented = 0
    for epoch, comment in rows:
        ns = int(Decimal(epoch) * 10**9)  # tshark prints the 9 decimals if_tsresol allows
        if ns in truth:
            t = truth[ns]
            assert f"guest=0 player={t['player']} seq={t['seq']}" in comment
            assert f"server_stamp_ns={used[(t['player'], t['seq'])]}" in comment
            assert "stamp_error_ns=0 " in comment + " "  # host mode: exact
            commented += 1
    assert commented == len(truth)  # every input's frame, stamped to the nanosecond
