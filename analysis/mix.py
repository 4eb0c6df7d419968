"""A mixed host (--mix): each profile judged under its own SLA, and the mix (no
privileges).

A mixed run's points carry, besides the figures of all their guests, one summary
entry per profile (`profiles`, analysis/point.py: the same figures over that
profile's guests).  `judge_mix` judges each profile's entries with that profile's
SLA (gamebed/workload.py WorkloadProfile) and the mix count by count: a count passes
when every profile passes there, fails when any fails, and is unsure otherwise.
The mix's capacity is then the largest count at which every profile meets its SLA.
"""

from __future__ import annotations

import pandas as pd

from analysis.capacity import Sla, SlaTerms, interval, judge
from gamebed.spec import ExperimentSpec
from gamebed.workload import mix_sequence, parse_mix


def profile_guests(spec: dict, n_guests: int) -> dict[str, list[int]]:
    """Which of a point's guests play which profile (fixed by index)."""
    mix = parse_mix(tuple(spec["mix"]))
    seq = mix_sequence([w for _, w in mix], n_guests)
    return {name: [i for i, k in enumerate(seq) if k == j] for j, (name, _) in enumerate(mix)}


def _by_guest(meta: dict, field: str, default: float) -> dict[int, float]:
    """Each of a point's guests' value of a game's `field`: the run's (its spec's, else
    `default`), or in a mix its profile's."""
    spec, n = meta.get("spec") or {}, int(meta.get("guests") or 0)
    out = dict.fromkeys(range(n), spec.get(field, default))
    if spec.get("mix"):
        known = ExperimentSpec.from_dict({k: v for k, v in spec.items()
                                          if k != "mix"}).game.known_profiles()
        for name, guests in profile_guests(spec, n).items():
            out.update(dict.fromkeys(guests, getattr(known[name], field)))
    return out


def tick_hz_by_guest(meta: dict) -> dict[int, float]:
    """Each guest's tick rate: the run's game's, or in a mix its profile's."""
    return {g: float(v) for g, v in _by_guest(meta, "tick_hz", 20.0).items()}


def players_by_guest(meta: dict) -> dict[int, int]:
    """Each guest's players: the run's game's, or in a mix its profile's (0 where a
    spec does not say)."""
    return {g: int(v) for g, v in _by_guest(meta, "players", 0).items()}


def profile_slas(spec: dict, given: SlaTerms | None = None) -> dict[str, Sla]:
    """Each profile's own SLA, but for the terms `given` (`gamebed report --sla-*`: for
    every profile alike); the host's share for a --wan run, as for the run's."""
    s = ExperimentSpec.from_dict({k: v for k, v in spec.items() if k != "mix"})
    known = s.game.known_profiles()
    g = given or SlaTerms()
    share = "host" if spec.get("wan") else "client"
    terms = g.terms or spec.get("sla_terms", "players")

    def pick(asked, own):
        return own if asked is None else asked
    return {name: Sla(pick(g.stat, known[name].sla_stat),
                      float(pick(g.delay_ms, known[name].sla_delay_ms)),
                      float(pick(g.loss, known[name].sla_loss)), share, terms,
                      known[name].tick_hz)
            for name, _ in parse_mix(tuple(spec["mix"]))}


def _combined(per: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    keys = sorted({(m, int(n)) for v in per.values() for m, n in zip(v["mode"], v["guests"],
                                                                     strict=True)})
    for mode, n in keys:
        got = [v[(v["mode"] == mode) & (v["guests"] == n)]["verdict"] for v in per.values()]
        verdicts = [g.iloc[0] if len(g) else "unsure" for g in got]
        verdict = ("fail" if "fail" in verdicts else
                   "invalid" if "invalid" in verdicts else  # one client: all or none
                   "pass" if all(x == "pass" for x in verdicts) else "unsure")
        why = "; ".join(f"{name} {x}" for name, x in zip(per, verdicts, strict=True))
        rows.append({"mode": mode, "guests": n, "k": 0, "verdict": verdict,
                     "reason": f"the mix: {why}"})
    return pd.DataFrame(rows)


def judge_mix(points: list[dict] | pd.DataFrame, spec: dict,
              given: SlaTerms | None = None) -> dict:
    """{"profiles": {name: (verdicts, {mode: capacity})}, "mix": (verdicts, {mode:
    capacity})} from a mixed run's points (summary.json's entries or report rows), each
    profile under its own SLA but for the terms `given`."""
    entries = points.to_dict("records") if isinstance(points, pd.DataFrame) else points
    slas, per, caps = profile_slas(spec, given), {}, {}
    for name, sla in slas.items():
        # one client played every profile: the point's load_bound is each profile's
        rows = [{**p["profiles"][name], "mode": p["mode"], "guests": p["guests"],
                 "repeat": p.get("repeat", 0), "load_bound": p.get("load_bound")}
                for p in entries
                if isinstance(p.get("profiles"), dict) and name in p["profiles"]]
        per[name], caps[name] = judge(pd.DataFrame(rows), sla) if rows else (
            pd.DataFrame(columns=["mode", "guests", "verdict"]), {})
    mixed = _combined(per)
    mix_caps = {m: interval(g) for m, g in mixed.groupby("mode")} if len(mixed) else {}
    return {"profiles": {n: (per[n], caps[n]) for n in per}, "mix": (mixed, mix_caps),
            "slas": {n: s.as_dict() for n, s in slas.items()}}


def mix_search_step(spec: dict, maximum: int):
    """--guests auto on a mixed host: the search follows the mix's verdicts."""
    from analysis.capacity import next_count

    least = len(spec["mix"])  # a guest per profile, at the least

    def step(points: list[dict], tried: set[int], out=None) -> int | None:
        from analysis.point import stored_figures

        judged, _ = judge_mix(stored_figures(out, points) if out else points, spec)["mix"]
        return next_count(judged, tried, maximum, least)
    return step
