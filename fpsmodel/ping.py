"""Ask game servers for the time: proves each answers, and gives its clock offset.

`python -m fpsmodel.ping HOST:PORT ...` (run where the client runs: the client namespace)
prints one JSON object per server: samples answered, best offset (server − here) and
round trip.  No privileges beyond reaching the servers.
"""

from __future__ import annotations

import json
import sys

from fpsmodel import wire
from fpsmodel.client import open_socket
from fpsmodel.clientconfig import parse_target
from fpsmodel.clocksync import clock_sync_rounds
from fpsmodel.timing import best_sample


def ping(target: str, samples: int = 5) -> dict:
    t = parse_target(target, 0)
    sock = open_socket(t)
    try:
        got = clock_sync_rounds({0: (sock, wire.Codec(t.session, wire.DEFAULT_PSK), 0)},
                                samples, timeout=1.0)[0]
    finally:
        sock.close()
    out = {"server": target, "answered": len(got), "samples": samples}
    if got:
        best, unc = best_sample(got)
        out.update(offset_ns=best.offset_ns, rtt_ns=best.delay_ns, uncertainty_ns=unc)
    return out


def main(argv: list[str] | None = None) -> int:
    results = [ping(t) for t in (argv if argv is not None else sys.argv[1:])]
    print(json.dumps(results))
    return 0 if all(r["answered"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
