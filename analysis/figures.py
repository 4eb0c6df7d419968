"""A point's figures as typed records, and the names they are stored under (no
privileges; pure data).

One record per point (`PointFigures`), whose `figures` are a `Figures` record over
its guests; a mixed point's profiles are the same `Figures` record over each
profile's guests.  A statistic with an interval is a `Stat` (value, lo, hi: analysis/
stats.py), a distribution of per-input values a `Spread`.

The stored names (summary.json's entries and points.csv's columns: docs/records.md)
are spelled here, once, in tables: `DELAY` and `STAMP_ERROR` name a spread's figures,
each record's `row()` is its flat form under its names, in the order points.csv has
always had its columns.  The capacity judge finds a statistic's three columns by
`SHARE_SPREAD[share].stat(name)`, never by building a name from strings.
To add a figure: a field in its record, its name in that record's `row()`, and (to
keep it in summary.json) the name in analysis/point.py SUMMARY_FIELDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from analysis.availability import FaultFigures
from analysis.stats import Stat
from analysis.ticks import TickFigures

NAN = float("nan")
NO_CI = (NAN, NAN)


class StatNames(NamedTuple):
    """The stored names of a Stat's value and its interval's ends."""

    value: str
    lo: str
    hi: str


@dataclass(frozen=True)
class SpreadNames:
    """The stored names of a Spread's figures."""

    mean: StatNames
    p50: str
    p95: StatNames
    p99: StatNames
    p999: str
    min: str
    max: str

    def stat(self, which: str) -> StatNames:
        """The names of the statistic an SLA judges: "mean", "p95" or "p99"."""
        return {"mean": self.mean, "p95": self.p95, "p99": self.p99}[which]

    def values(self) -> tuple[str, ...]:
        return (self.mean.value, self.p50, self.p95.value, self.p99.value, self.p999,
                self.min, self.max)

    def intervals(self) -> tuple[str, ...]:
        return tuple(n for s in (self.mean, self.p95, self.p99) for n in (s.lo, s.hi))


DELAY = SpreadNames(
    StatNames("delay_mean_us", "delay_mean_ci_lo_us", "delay_mean_ci_hi_us"), "delay_p50_us",
    StatNames("delay_p95_us", "delay_p95_ci_lo_us", "delay_p95_ci_hi_us"),
    StatNames("delay_p99_us", "delay_p99_ci_lo_us", "delay_p99_ci_hi_us"),
    "delay_p999_us", "delay_min_us", "delay_max_us")
STAMP_ERROR = SpreadNames(
    StatNames("stamp_error_mean_us", "stamp_error_mean_ci_lo_us", "stamp_error_mean_ci_hi_us"),
    "stamp_error_p50_us",
    StatNames("stamp_error_p95_us", "stamp_error_p95_ci_lo_us", "stamp_error_p95_ci_hi_us"),
    StatNames("stamp_error_p99_us", "stamp_error_p99_ci_lo_us", "stamp_error_p99_ci_hi_us"),
    "stamp_error_p999_us", "stamp_error_min_us", "stamp_error_max_us")
# the SLA's share of the path (analysis/capacity.py SHARES) → the spread it judges:
# the whole path's delay, or from the host's arrival stamp on (--wan)
SHARE_SPREAD = {"client": DELAY, "host": STAMP_ERROR}


@dataclass(frozen=True)
class Spread:
    """One per-input quantity's distribution over a point's delivered inputs (µs), with
    intervals for the statistics an SLA can judge (analysis/stats.py describe_series)."""

    mean: Stat
    p50: float
    p95: Stat
    p99: Stat
    p999: float
    min: float
    max: float

    @classmethod
    def of(cls, s: dict, widen: float = 0.0) -> Spread:
        """From describe_series' figures; `widen` (µs) widens every statistic's interval
        (mean, p95, p99) by the clock uncertainty of the times used: every input's delay
        may be off by that much, and so may each statistic of them."""
        def stat(name: str) -> Stat:
            lo, hi = s.get(f"{name}_ci", NO_CI)
            return Stat(s.get(name, NAN), lo - widen, hi + widen)
        return cls(stat("mean"), s.get("p50", NAN), stat("p95"), stat("p99"),
                   s.get("p999", NAN), s.get("min", NAN), s.get("max", NAN))

    def row(self, n: SpreadNames) -> dict:
        return {n.mean.value: self.mean.value, n.p50: self.p50, n.p95.value: self.p95.value,
                n.p99.value: self.p99.value, n.p999: self.p999, n.min: self.min,
                n.max: self.max, n.p99.lo: self.p99.lo, n.p99.hi: self.p99.hi,
                n.mean.lo: self.mean.lo, n.mean.hi: self.mean.hi,
                n.p95.lo: self.p95.lo, n.p95.hi: self.p95.hi}


@dataclass(frozen=True)
class PathSplit:
    """Each input's path split at the host's arrival stamp (--wan): the network's share
    (its delay in µs, and the inputs the host never saw) and the host's."""

    host_logged: int
    lost_network: int
    lost_host: int
    reordered: int
    net_mean_us: float
    net_p50_us: float
    net_p95_us: float
    net_p99_us: float

    def row(self) -> dict:
        return {"inputs_host_logged": self.host_logged,
                "inputs_lost_network": self.lost_network,
                "inputs_lost_host": self.lost_host, "inputs_reordered": self.reordered,
                "net_delay_mean_us": self.net_mean_us, "net_delay_p50_us": self.net_p50_us,
                "net_delay_p95_us": self.net_p95_us, "net_delay_p99_us": self.net_p99_us}


@dataclass(frozen=True)
class Paired:
    """Both stamps of the same inputs (host mode, UML guests: docs/records.md pairs.csv):
    the guest-stamp error and delay on exactly the load the host stamps saw (µs)."""

    n: int
    coverage: float
    stamp_error_mean_us: float
    stamp_error_p50_us: float
    stamp_error_p95_us: float
    stamp_error_p99_us: float
    guest_delay_mean_us: float
    guest_delay_p95_us: float

    def row(self) -> dict:
        return {"paired_n": self.n, "paired_coverage": self.coverage,
                "paired_stamp_error_mean_us": self.stamp_error_mean_us,
                "paired_stamp_error_p50_us": self.stamp_error_p50_us,
                "paired_stamp_error_p95_us": self.stamp_error_p95_us,
                "paired_stamp_error_p99_us": self.stamp_error_p99_us,
                "paired_guest_delay_mean_us": self.guest_delay_mean_us,
                "paired_guest_delay_p95_us": self.guest_delay_p95_us}


@dataclass(frozen=True)
class InputFigures:
    """What the inputs alone give (analysis/point.py input_figures)."""

    sent: int
    delivered: int
    lost: int
    loss: Stat  # lost/sent, its CI by batch means over the send times
    clock_uncertainty_us: float
    rtt_p50_us: float
    rtt_p99_us: float
    update_jitter_us: float
    app_delay_mean_us: float
    app_stamp_error_mean_us: float
    host_stamp_exact_fraction: float
    delay_batches: int | None
    delay: Spread
    stamp_error: Spread
    path: PathSplit | None


@dataclass(frozen=True)
class Figures:
    """One point's figures over its guests (all of them, or a mixed profile's): the
    inputs', the load's loss (a fault's losses counted apart), the faults', when the
    load ran, and the ticks the players received."""

    inputs: InputFigures
    faults: FaultFigures
    host_loss_ratio: float | None = None  # after the host stamp (--wan's SLA)
    load_window: tuple[int, int] | None = None  # first and last input's send time (ns)
    ticks: TickFigures | None = None
    input_rate_achieved: float | None = None  # a mixed profile's, of its own players

    @property
    def loss(self) -> Stat:
        """The SLA's loss ratio: load's, a fault's losses out (no batch-means interval
        then: the judge takes Wilson's on the load's counts)."""
        i, fault = self.inputs, self.faults.inputs_lost_fault
        if not i.sent:
            return i.loss
        ratio = (i.lost - fault) / i.sent
        return Stat(ratio) if fault else Stat(ratio, i.loss.lo, i.loss.hi)

    def row(self) -> dict:
        i, loss = self.inputs, self.loss
        out = {"inputs_sent": i.sent, "inputs_delivered": i.delivered,
               "inputs_lost": i.lost, "loss_ratio": loss.value,
               "clock_uncertainty_us": i.clock_uncertainty_us,
               "rtt_p50_us": i.rtt_p50_us, "rtt_p99_us": i.rtt_p99_us,
               "update_jitter_us": i.update_jitter_us,
               "app_delay_mean_us": i.app_delay_mean_us,
               "app_stamp_error_mean_us": i.app_stamp_error_mean_us,
               "host_stamp_exact_fraction": i.host_stamp_exact_fraction,
               "delay_batches": i.delay_batches}
        if loss.lo is not None:
            out.update(loss_ci_lo=loss.lo, loss_ci_hi=loss.hi)
        out.update({**i.delay.row(DELAY), **i.stamp_error.row(STAMP_ERROR),
                    **(i.path.row() if i.path else {}), **self.faults.row()})
        if self.host_loss_ratio is not None:
            out["host_loss_ratio"] = self.host_loss_ratio
        if self.load_window is not None:
            out["load_first_send_ns"], out["load_last_send_ns"] = self.load_window
        if self.ticks is not None:
            out.update(self.ticks.row())
        if self.input_rate_achieved is not None:
            out["input_rate_achieved"] = self.input_rate_achieved
        return out


@dataclass(frozen=True)
class PointFigures:
    """Every figure of one point: its setup, its figures over all its guests (and over
    each mixed profile's), both stamps of the same inputs, and the host's and the load
    generator's own (analysis/load.py's, by their stored names)."""

    mode: str | None
    guests: int | None
    placement: str
    backend: str
    figures: Figures
    profiles: dict[str, dict] | None  # a mixed point's summary entry per profile
    paired: Paired | None
    machine: dict  # CPU, host-side counts and load figures (analysis/load.py)
    dropped: dict[str, int]
    client: dict  # the client's own (analysis/load.py client_figures)

    def row(self) -> dict:
        """The report's row: points.csv's columns (the profiles aside)."""
        fig = self.figures.row()
        if self.profiles is not None:
            fig["profiles"] = self.profiles
        out = {"mode": self.mode, "guests": self.guests, "placement": self.placement,
               "backend": self.backend, **fig, **(self.paired.row() if self.paired else {}),
               **self.machine, "dropped": self.dropped, **self.client}
        return out
