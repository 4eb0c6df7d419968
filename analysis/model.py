"""A capacity model calibrated on a run's own records, and its predictions (no privileges).

docs/model.md explains it in a page.  In short, per mode and for the run's game:

- **cost**: each guest's CPU use per second at full tick rate, d(N) = d0 + d1·N
  (cores, from cpu.json at points whose guests were not short of CPU); the part a
  guest cannot shed, d_min(N) = d(N) − c_tick·f (an overloaded server ticks slower:
  c_tick, CPU per tick, comes from how far the tick rate fell against the CPU the
  guest got);
- **supply**: C cores for the guests: the guests' CPUs whole, or what a --guest-cpus
  budget actually gave them (cpu.json `budget`), less the host side's use where the
  two share CPUs (dynamic placement);
- **loss**: inputs are lost once the guests cannot even pay d_min: N·d_min(N)/C
  beyond a threshold x* (the calibration's last passing and first failing point);
- **ticks** (the players' SLA): the servers stop keeping their players' ticks once
  ρ = N·d(N)/C passes ρ_tick, bracketed the same way by the points whose tick terms
  passed and failed; it bounds both modes, and host stamps end there before the loss
  limit (which stays a second bound);
- **delay**: the mean delay at utilisation ρ = N·d(N)/C is a waiting-time curve,
  y0 + b·Q(ρ, c)·(1 + v·(1 − k)/k): Q is Sakasegawa's M/G/c form
  ρ^(α(√(2(c+1))−1))/(c(1 − ρ)) over c guest CPUs with a fitted exponent α, and the
  last factor stretches every queued wait by a competing process's turns when it
  holds 1 − k of each CPU (an M/G/c queue with vacations).  y0, b, v by
  non-negative least squares of the relative error over the guest-mode points, α on
  a grid.

A mode's capacity is the largest count before the first one predicted to break the
SLA; its interval comes from refitting on bootstrap resamples of the points.  What
the model reads of a run (its points as observations, the game) is in
analysis/modelruns.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from analysis.ticks import tick_verdicts

MODEL_VERSION = 2  # 2: the tick term (the players' SLA)
BOOTSTRAPS = 400
INTERVAL = (5.0, 95.0)  # the predicted interval: these percentiles of the bootstrap's
UNSATURATED = 0.85  # demand fitted where the guests used at most this share of C
SLOWED = 0.9  # a point's servers were short of CPU when they ticked below 90% of f
MEMORY_RESERVE_MIB = 1024  # the host's own (kernel, host side) beside the guests


@dataclass(frozen=True)
class Obs:
    """One point, as the model sees it."""

    run: int  # which calibration run (bootstrap strata)
    mode: str
    guests: int
    cpus: int  # c: the guests' CPUs
    k: float  # the share of each that the guests could have (recorded)
    supply: float  # C: cores for the guests
    used: float  # cores the guests used, all together
    tick_hz: float  # achieved
    delay_us: float
    loss: float
    load_bound: bool
    ticks: str | None = None  # the players' tick terms: pass, fail, unsure (None: not kept)


@dataclass(frozen=True)
class Game:
    """What the calibration runs played and were judged by."""

    profile: str
    tick_hz: float
    players: int
    rate_hz: float
    sla_delay_us: float
    sla_loss: float
    pss_mib: float  # the most one guest took (guests.json), over the runs
    host_side: tuple[float, float]  # host side's cores: a + b·(inputs/s)

    def host_cores(self, guests: int) -> float:
        """The host side's (client, shim, stamper) cores at `guests` guests."""
        a, b = self.host_side
        return a + b * guests * self.players * self.rate_hz


@dataclass(frozen=True)
class Params:
    d: tuple[float, float]  # d0, d1 (cores per guest at full tick)
    c_tick: float | None  # cores·s per tick (None: no slowed point to learn it from)
    x_star: float | None  # loss threshold on N·d_min/C (None: no loss point either side)
    x_censored: bool  # no point lost inputs: x* is a lower bound
    delay: tuple[float, ...]  # y0 (µs), b (µs), v, alpha
    h_fitted: bool  # some calibration point had a competing process (k < 1)
    # the tick threshold on ρ = N·d(N)/C beyond which the servers stop keeping their
    # players' ticks (None: no point recorded them); censored: none failed, a lower bound
    rho_tick: float | None = None
    tick_censored: bool = True

    def demand(self, n: np.ndarray | int) -> np.ndarray:
        return self.d[0] + self.d[1] * np.asarray(n, dtype=float)

    def floor(self, n: np.ndarray | int, tick_hz: float) -> np.ndarray:
        """d_min: what a guest costs at the least it can shed to (no ticks at all)."""
        shed = (self.c_tick or 0.0) * tick_hz
        return np.maximum(self.demand(n) - shed, 0.05 * self.demand(n))


@dataclass(frozen=True)
class Target:
    """A host to predict: `cores` for the guests, their placement."""

    cores: float  # K: whole cores (≥ 1: that many CPUs) or a share of one CPU (< 1)
    placement: str = "restricted"
    cpus: int | None = None  # the CPUs they spread over (default ceil(K); dynamic: all)
    k_ratio: float = 1.0  # recorded/asked share a budget gave in calibration

    def shape(self) -> tuple[int, float]:
        """(c, k): CPUs and the share of each the guests may have."""
        c = self.cpus or max(1, math.ceil(self.cores - 1e-9))
        if self.placement == "dynamic":  # whole CPUs, shared with the host side
            return c, 1.0
        return c, min(1.0, self.cores * self.k_ratio / c)


def line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares line y = a + b·x (b = 0 where x has one value)."""
    if len(np.unique(x)) < 2:
        return float(np.mean(y)) if len(y) else 0.0, 0.0
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


# -- fitting ------------------------------------------------------------------------------

def queue_term(rho: np.ndarray, c: int | np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Sakasegawa's M/G/c waiting-time shape, ρ^(√(2(c+1))−1) / (c(1 − ρ)) (ρ/(1 − ρ) on
    one CPU), with its exponent times `alpha`: how long the wait stays flat before it
    climbs (fitted; 1 is the textbook queue)."""
    rho = np.clip(np.asarray(rho, dtype=float), 0.0, 0.999)
    c = np.asarray(c, dtype=float)
    return rho ** (alpha * (np.sqrt(2 * (c + 1)) - 1)) / (c * (1 - rho))


def hog_factor(k: float) -> float:
    """(1 − k)/k: how much more a queued guest waits when a competing process holds 1 − k
    of each CPU (its turns are vacations of the guests' server); 0 at k = 1."""
    return (1 - k) / max(k, 1e-3)


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient ≥ 0 (a few columns: every subset tried)."""
    best, best_res = np.zeros(x.shape[1]), float(np.sum(y ** 2))
    for mask in range(1, 2 ** x.shape[1]):
        cols = [j for j in range(x.shape[1]) if mask >> j & 1]
        coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
        if np.any(coef < 0):
            continue
        res = float(np.sum((x[:, cols] @ coef - y) ** 2))
        if res < best_res - 1e-12:
            best_res, best = res, np.zeros(x.shape[1])
            best[cols] = coef
    return best


def fit_demand(obs: list[Obs], tick_hz: float) -> tuple[float, float]:
    """d(N) = d0 + d1·N: cores per guest at full tick, where the guests were not short
    of CPU (used ≤ UNSATURATED of C, servers at their tick rate)."""
    pts = [o for o in obs if not o.load_bound and o.used <= UNSATURATED * o.supply
           and o.tick_hz >= SLOWED * tick_hz]
    if not pts:
        raise ValueError("no calibration point whose guests had CPU to spare: measure "
                         "fewer guests (e.g. --guests auto)")
    return line_fit(np.array([o.guests for o in pts], float),
                 np.array([o.used / o.guests for o in pts]))


def fit_tick_cost(obs: list[Obs], d: tuple[float, float], tick_hz: float) -> float | None:
    """CPU per tick: a server short of CPU ticks slower, and what its guest got fell
    below d(N) by c_tick per tick it skipped (median over such points)."""
    vals = []
    for o in obs:
        if o.load_bound or not 0 < o.tick_hz < SLOWED * tick_hz:
            continue
        gap = d[0] + d[1] * o.guests - o.used / o.guests
        if gap > 0:
            vals.append(gap / (tick_hz - o.tick_hz))
    return float(np.median(vals)) if vals else None


def fit_loss(obs: list[Obs], p: Params, game: Game) -> tuple[float, float] | None:
    """The bracket of x*, where loss begins on N·d_min(N)/C: from the last passing to the
    first failing point's x (censored, both ends the largest passing x, where nothing
    failed); None where no point counts."""
    return _bracket([(o.guests * float(p.floor(o.guests, game.tick_hz)) / o.supply,
                      o.loss > game.sla_loss) for o in obs if not o.load_bound])


def _bracket(xs: list[tuple[float, bool]]) -> tuple[float, float] | None:
    """(x, failed) pairs → (the last passing x below the first failing one, the first
    failing x); with no failure both ends the largest passing x; None with no x."""
    fails = [x for x, bad in xs if bad]
    passes = [x for x, bad in xs if not bad]
    if fails:
        below = [x for x in passes if x < min(fails)]
        return (max(below) if below else 0.0), min(fails)
    return (max(passes), max(passes)) if passes else None


def tick_verdict(point: dict, tick_hz: float) -> str | None:
    """A point's players' tick terms together (the judge's, analysis/capacity.py): fail
    where either fails, pass where both pass, else unsure; None where not recorded."""
    if point.get("ticks_share_ci_lo") is None or point.get("tick_gap_p99_ci_lo_ms") is None:
        return None
    terms = tick_verdicts((point["ticks_share_ci_lo"], point["ticks_share_ci_hi"]),
                          (point["tick_gap_p99_ci_lo_ms"], point["tick_gap_p99_ci_hi_ms"]),
                          tick_hz).values()
    return "fail" if "fail" in terms else "pass" if set(terms) == {"pass"} else "unsure"


def fit_ticks(obs: list[Obs], p: Params) -> tuple[float, float] | None:
    """The bracket of ρ_tick, where the servers stop keeping their players' ticks on
    ρ = N·d(N)/C: from the last passing to the first failing point's ρ (censored: both
    ends the largest passing ρ); unsure points count neither way; None where no point
    recorded ticks.  Both modes' points count: a server's ticks do not depend on where
    its inputs were stamped."""
    return _bracket([(o.guests * float(p.demand(o.guests)) / o.supply, o.ticks == "fail")
                     for o in obs if not o.load_bound and o.ticks in ("pass", "fail")])


ALPHAS = tuple(np.arange(1.0, 8.01, 0.25))  # the queue exponent's grid


def fit_delay(obs: list[Obs], p: Params, alphas: tuple[float, ...] = ALPHAS
              ) -> tuple[tuple[float, ...], bool]:
    """y0, b, v and alpha of the mean delay's curve y0 + b·Q(ρ)·(1 + v·(1 − k)/k), by
    non-negative least squares of the relative error (a 100 µs point counts as much as
    a 1 ms one) over the guest-mode points with ρ < 0.97, at the alpha of the grid that
    fits best."""
    use = [o for o in obs if o.mode == "guest" and not o.load_bound
           and np.isfinite(o.delay_us)]
    rho = np.array([o.guests * float(p.demand(o.guests)) / o.supply for o in use])
    keep = rho < 0.97
    if not keep.any():
        raise ValueError("no guest-mode point below saturation to fit the delay curve on")
    rho, use = rho[keep], [o for o, k in zip(use, keep, strict=True) if k]
    y = np.array([o.delay_us for o in use])
    cpus = np.array([o.cpus for o in use])
    hogf = np.array([hog_factor(o.k) for o in use])
    hog = bool(np.any(hogf > 0))
    best: tuple[float, tuple[float, ...]] | None = None
    for alpha in alphas:
        q = queue_term(rho, cpus, alpha)
        x = np.column_stack([np.ones_like(q), q] + ([q * hogf] if hog else []))
        coef = _nnls(x / y[:, None], np.ones_like(y))  # relative errors: every ρ counts
        res = float(np.sum((x @ coef / y - 1) ** 2))
        if best is None or res < best[0]:
            v = float(coef[2]) / coef[1] if hog and coef[1] > 0 else 0.0
            best = (res, (float(coef[0]), float(coef[1]), v, float(alpha)))
    return best[1], hog


def fit(obs: list[Obs], game: Game, rng: np.random.Generator | None = None,
        alphas: tuple[float, ...] = ALPHAS) -> Params:
    """Every parameter, from these points.  x* is the middle of its bracket, or with
    `rng` (a bootstrap draw) anywhere in it: the counts between the last passing and
    the first failing point were not measured, so any threshold there fits them."""
    d = fit_demand(obs, game.tick_hz)
    p = Params(d, fit_tick_cost(obs, d, game.tick_hz), None, True, (0.0, 0.0, 0.0, 1.0),
               False)
    bracket = fit_loss(obs, p, game)
    if bracket is not None:
        lo, hi = bracket
        x_star = (lo + hi) / 2 if rng is None else float(rng.uniform(lo, hi))
        p = replace(p, x_star=x_star, x_censored=lo == hi)
    bracket = fit_ticks(obs, p)
    if bracket is not None:  # like x*: any threshold between the two points fits them
        lo, hi = bracket
        rho = (lo + hi) / 2 if rng is None else float(rng.uniform(lo, hi))
        p = replace(p, rho_tick=rho, tick_censored=lo == hi)
    delay, hog = fit_delay(obs, p, alphas)
    return replace(p, delay=delay, h_fitted=hog)


# -- predicting ---------------------------------------------------------------------------

def memory_limit(game: Game, memory_mib: float) -> int:
    """Guests that fit in memory: what is left after the host's own, per guest's PSS."""
    return max(0, int((memory_mib - MEMORY_RESERVE_MIB) // game.pss_mib))


def _supply(t: Target, game: Game, n: np.ndarray) -> np.ndarray:
    c, k = t.shape()
    if t.placement == "dynamic":  # the host side shares the guests' CPUs
        return np.maximum(c - game.host_cores(n), 0.1)
    return np.full(n.shape, c * k)


def breaks(p: Params, game: Game, t: Target, n: np.ndarray) -> dict[str, np.ndarray]:
    """Per count n and mode: whether the model says it breaks the SLA (loss or delay)."""
    c, k = t.shape()
    supply = _supply(t, game, n)
    rho = n * p.demand(n) / supply
    lost = (n * p.floor(n, game.tick_hz) / supply > p.x_star if p.x_star is not None
            else np.zeros(n.shape, bool))
    # the players' SLA: past ρ_tick the servers no longer keep their ticks, in both modes
    ticks = rho > p.rho_tick if p.rho_tick is not None else np.zeros(n.shape, bool)
    delay = delay_us(p, rho, c, k)
    late = (rho >= 1.0) | (delay > game.sla_delay_us)
    return {"guest": lost | late | ticks, "host": lost | ticks}


def delay_us(p: Params, rho: np.ndarray, c: int, k: float) -> np.ndarray:
    """The model's mean delay with guest stamps at utilisation ρ."""
    y0, b, v, alpha = p.delay
    return y0 + b * queue_term(rho, c, alpha) * (1 + v * hog_factor(k))


def capacities(p: Params, game: Game, t: Target, top: int) -> dict[str, int]:
    """Per mode: the largest count (≤ top) below the first count predicted to break."""
    n = np.arange(1, top + 1)
    out = {}
    for mode, bad in breaks(p, game, t, n).items():
        first = np.flatnonzero(bad)
        out[mode] = int(first[0]) if len(first) else top
    return out


def _resample(obs: list[Obs], rng: np.random.Generator) -> list[Obs]:
    """A bootstrap sample: each run's points drawn with replacement within the run."""
    out = []
    for r in sorted({o.run for o in obs}):
        pts = [o for o in obs if o.run == r]
        out += [pts[i] for i in rng.integers(0, len(pts), len(pts))]
    return out


def bootstrap(obs: list[Obs], game: Game, seed: int = 0) -> tuple[Params, list[Params]]:
    """The fit on every point, and the fits on BOOTSTRAPS resamples (each with its x*
    drawn in its bracket, its alpha within ±1 of the whole fit's)."""
    p = fit(obs, game)
    near = tuple(a for a in ALPHAS if abs(a - p.delay[3]) <= 1.0)
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(BOOTSTRAPS):
        try:
            fits.append(fit(_resample(obs, rng), game, rng, near))
        except ValueError:  # a resample without the points one part needs
            continue
    return p, fits


def predict(fits: tuple[Params, list[Params]], game: Game, t: Target, top: int) -> dict:
    """Each mode's predicted capacity on `t`: the whole fit's, and the interval of the
    bootstrap fits'; `limit` says what stops it there (≥: a loss limit never seen)."""
    p, draws_p = fits
    central = capacities(p, game, t, top)
    draws: dict[str, list[int]] = {m: [] for m in central}
    for q in draws_p:
        for m, v in capacities(q, game, t, top).items():
            draws[m].append(v)
    out = {}
    for m, v in central.items():
        lo, hi = (np.percentile(draws[m], INTERVAL) if draws[m] else (v, v))
        limit = _limit(p, game, t, m, v, top)
        censored = (limit == "loss" and p.x_censored) or (limit == "ticks" and p.tick_censored)
        out[m] = {"capacity": v, "lo": int(math.floor(lo)), "hi": int(math.ceil(hi)),
                  "limit": limit, "at_least": bool(censored or v >= top)}
    return {"modes": out, "params": asdict(p)}


def _limit(p: Params, game: Game, t: Target, mode: str, v: int, top: int) -> str:
    if v >= top:
        return "top"
    n = np.array([v + 1])
    supply = _supply(t, game, n)
    if p.rho_tick is not None and (n * p.demand(n) / supply)[0] > p.rho_tick:
        return "ticks"
    if p.x_star is not None and (n * p.floor(n, game.tick_hz) / supply)[0] > p.x_star:
        return "loss"
    return "delay"


def digest(params: dict, calibration: list[str]) -> str:
    """The model's digest: its source, its fitted parameters and its calibration runs."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(json.dumps({"params": params, "runs": calibration}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def scaled(p: Params, factor: float) -> Params:
    """The same model with every guest costing `factor` times as much CPU."""
    d = (p.d[0] * factor, p.d[1] * factor)
    return replace(p, d=d, c_tick=None if p.c_tick is None else p.c_tick * factor)


def cost_ratio_for(p: Params, game: Game, t: Target, mode: str, want: int,
                   top: int) -> float | None:
    """The least cost factor (1.0..10, 0.05 steps) at which `mode`'s predicted capacity
    on `t` falls to `want` or below; None if none does."""
    for factor in np.arange(1.0, 10.0001, 0.05):
        if capacities(scaled(p, float(factor)), game, t, top)[mode] <= want:
            return round(float(factor), 2)
    return None
