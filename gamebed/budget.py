"""Where a sweep's wall time goes, and how much is left (no privileges).

A point's phases (phases.json, CLOCK_REALTIME ns, vm/testbed.py) become its
budget: settle (servers resumed, stamper and shim attached, the guests' CPUs back at
their idle baseline), load (the client: clock sync, play, last updates), collect
(CPU read, shim stopped and stamper detached while every guest writes its records,
those records out, memory read), teardown (the mode's last parts) and analysis (the
point's summary).  A count adds its boot (the guests built or booted for it, or
stopped).  summary.json keeps each point's budget in its
entry and the sweep's per count (`budget_s`); the report shows that table.

`Eta` estimates the rest of a sweep from the budget so far: each remaining point
costs the load's duration plus an overhead that grows linearly with the guest count
(fitted to the points measured), each remaining count boots its new guests at the
measured cost per guest.  Before any point it falls back on the backend's guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PHASES = ("boot", "settle", "load", "collect", "teardown", "analysis")
POINT_SPANS = {"settle": ("enter", "client_start"), "load": ("client_start", "client_done"),
               "collect": ("client_done", "weighed"), "teardown": ("weighed", "left")}


def point_budget(phases: dict[str, int], analysis_s: float) -> dict[str, float]:
    """A point's seconds per phase, from its phases.json marks."""
    out = {}
    for name, (a, b) in POINT_SPANS.items():
        if a in phases and b in phases:
            out[name] = round((phases[b] - phases[a]) / 1e9, 2)
    out["analysis"] = round(analysis_s, 2)
    return out


def sweep_budget(build_s: dict[str, float], points: list[dict]) -> dict:
    """summary.json's `budget_s`: seconds per phase for each count and in all."""
    counts: dict[str, dict[str, float]] = {}
    for n, boot in build_s.items():
        counts.setdefault(str(n), dict.fromkeys(PHASES, 0.0))["boot"] = boot
    for p in points:
        row = counts.setdefault(str(p["guests"]), dict.fromkeys(PHASES, 0.0))
        for k, v in (p.get("budget_s") or {}).items():
            row[k] = row.get(k, 0.0) + v
    total = dict.fromkeys(PHASES, 0.0)
    for row in counts.values():
        row["total"] = sum(row[k] for k in PHASES)
        for k in PHASES:
            total[k] += row[k]
    total["total"] = sum(total[k] for k in PHASES)
    rounded = {n: {k: round(v, 1) for k, v in row.items()} for n, row in counts.items()}
    return {"counts": rounded, "total": {k: round(v, 1) for k, v in total.items()}}


def _linear(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares a + b·x (b = 0 with fewer than two distinct x)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


@dataclass
class Eta:
    """The rest of a sweep, from what it spent so far (seconds)."""

    duration: float  # seconds of play per point
    boot_s_per_guest: float  # the backend's guess, until a count has booted
    overhead_guess: tuple[float, float] = (8.0, 0.5)  # a + b·n per point, until measured
    log: list[dict] = field(default_factory=list)  # estimates made (summary.json `eta`)
    # (count, seconds) a finished count took beyond its boot and its points' budgets:
    # its warm-up, the points measured again, the bookkeeping between (without it the
    # estimate fell 33-43% short on a 48-guest sweep)
    count_extra: list[tuple[int, float]] = field(default_factory=list)

    def point_s(self, n: int, points: list[dict]) -> float:
        measured = [(p["guests"], sum(p["budget_s"].values()) - self.duration)
                    for p in points if p.get("budget_s")]
        a, b = (_linear(*map(list, zip(*measured, strict=True))) if measured
                else self.overhead_guess)
        return self.duration + max(0.0, a + b * n)

    def boot_s(self, new_guests: int, booted: list[tuple[int, float]]) -> float:
        """`booted`: (guests booted, seconds) of the counts so far; a count that shrank
        its testbed booted none, so only the counts that grew say what a boot costs."""
        grew = [(g, s) for g, s in booted if g > 0]
        guests = sum(g for g, _ in grew)
        per = sum(s for _, s in grew) / guests if guests else self.boot_s_per_guest
        return 1.0 + per * max(0, new_guests)

    def extra_s(self, n: int) -> float:
        """What a count of n not begun yet will take beyond its boot and points, from
        the counts finished so far (a + b·n; none before the first is done)."""
        if not self.count_extra:
            return 0.0
        if len(self.count_extra) < 3:  # two counts' slope sent the estimate 40% over
            return sum(x for _, x in self.count_extra) / len(self.count_extra)
        a, b = _linear(*map(list, zip(*self.count_extra, strict=True)))
        return max(0.0, a + b * n)

    def remaining(self, plan: list[tuple[int, int, int]], points: list[dict],
                  booted: list[tuple[int, float]]) -> float:
        """`plan`: (count, guests it boots, points) of what is left: the current count's
        remaining points (0 to boot), then the counts not built yet."""
        return sum((self.boot_s(new, booted) + self.extra_s(n) if new > 0 else 0.0)
                   + k * self.point_s(n, points) for n, new, k in plan)
