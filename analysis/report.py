"""`gamebed report DIR`: statistics, capacity under an SLA, plots, report (no privileges).

Reads only raw records and each point's point.json (docs/records.md), so any
results directory can be re-analysed for another SLA in seconds, anywhere.
Writes DIR/report.html (self-contained), DIR/report.md and DIR/capacity.csv.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.capacity import Sla, SlaTerms, judge  # noqa: E402
from analysis.point import FIGURES, analyze_point  # noqa: E402
from analysis.records import load_json  # noqa: E402
from analysis.waits import WaitFigures, wait_figures  # noqa: E402
from fpsmodel.records import CLIENT_INPUTS  # noqa: E402

PAPER = [("Host", "Xen, 2 dual-core CPUs (4 cores), 1 vCPU / 32 MB per game VM"),
         ("Loss < 1% (restricted CPU assignment)", "up to 46 VMs (< 3%: 48)"),
         ("Capacity at 1 ms mean delay, host stamps", "44 VMs"),
         ("Capacity at 1 ms mean delay, guest stamps", "30 VMs (+47% with host stamps)"),
         ("Mean timestamp error removed at 46 VMs", "3.1 ms")]


PLAYERS_TOTAL = 10000  # the report's "hosts needed" line: for this many players


def point_files(results: Path) -> tuple[list[Path], list[str]]:
    """The point.json files of the points summary.json lists (all under points/ when it
    lists none, as for a synthetic run), and the point directories it does not list."""
    results = Path(results)
    found = sorted(results.glob("points/*/point.json"))
    summary = load_json(results / "summary.json", {}) or {}
    listed = summary.get("points")
    if listed is None:
        return found, []
    want = [results / p["dir"] / "point.json" for p in listed if p.get("dir")]
    # a point's earlier tries, measured again (analysis/stalls.py): the run's, not judged
    tries = {results / p["dir"] / "point.json" for p in summary.get("retried", [])}
    keep = [pj for pj in want if pj.exists()]
    others = sorted(str(pj.parent.relative_to(results)) for pj in found
                    if pj not in want and pj not in tries)
    return keep, others


def analyze(results: Path) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray], dict]:
    rows, errors, meta = [], {}, {}
    files, others = point_files(results)
    if others:
        print(f"report: ignoring {len(others)} point directories that {results}/summary.json "
              f"does not list (another run's?): {', '.join(others)}", file=sys.stderr)
    entries = {p.get("dir"): p for p in
               (load_json(Path(results) / "summary.json", {}) or {}).get("points", [])}
    for pj in files:
        row, err = point_row(pj.parent)
        pmeta = load_json(pj)
        row["repeat"] = int(pmeta.get("repeat", 0))
        tries = entries.get(str(pj.parent.relative_to(results)), {}).get("tries")
        if tries is not None:  # how often the sweep measured it (analysis/stalls.py)
            row["tries"] = tries
        rows.append(row)
        key = (row["mode"], row["guests"])
        if key in errors:  # a repeat: its stamp errors join the count's; the tail plot
            errors[key]["stamp_error"] = np.concatenate(  # keeps the first repeat's
                [errors[key]["stamp_error"], err["stamp_error"]])
        else:
            errors[key] = err
        # the largest count's environment: its boot time and memory are the telling ones
        if not meta or pmeta.get("guests", 0) >= meta.get("guests", 0):
            meta = pmeta
    if not rows:
        raise FileNotFoundError(f"{results}: no points/*/point.json; is this a gamebed run "
                                "directory?")
    return pd.DataFrame(rows).sort_values(["mode", "guests", "repeat"]), errors, meta


def point_row(pdir: Path) -> tuple[dict, dict]:
    """A point's row as the sweep stored it (figures.json: what its search judged), and
    its distributions for the plots; a point of an older run, which stored none, is
    analysed afresh; one whose raw records are gone plots nothing."""
    stored = load_json(Path(pdir) / FIGURES)
    raw = (Path(pdir) / CLIENT_INPUTS).exists()
    if stored is not None and not raw:
        return stored, {"stamp_error": np.array([]), "delay_ccdf": (np.array([]), np.array([]))}
    row, dists = analyze_point(pdir)
    return (stored if stored is not None else row), dists


def per_count(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (mode, guests): the median over repeats (the plots' points)."""
    return df.groupby(["mode", "guests", "placement"], as_index=False).median(numeric_only=True)


# -- plots ----------------------------------------------------------------------------------

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


@dataclass(frozen=True)
class Lines:
    """A figure against the guest count, one line per `by` value."""

    col: str
    title: str
    ylabel: str
    sla: float | None = None  # the SLA's limit, drawn where it applies to this figure
    by: str = "mode"
    ci: tuple[str, str] | None = None  # the columns of its 95% CI's ends
    unit: str = " µs"


def _lines(df: pd.DataFrame, f: Lines) -> bytes:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    col, ci = f.col, f.ci
    for key, g in df.groupby(f.by):
        g = g.sort_values("guests")
        yerr = None
        if ci is not None:
            yerr = np.vstack([(g[col] - g[ci[0]]).clip(lower=0),
                              (g[ci[1]] - g[col]).clip(lower=0)])
        label = f"{key} stamps" if f.by == "mode" else str(key)
        ax.errorbar(g["guests"], g[col], yerr=yerr, marker="o", capsize=3, label=label)
    if f.sla is not None:
        ax.axhline(f.sla, color="red", linestyle="--", label=f"SLA {f.sla:g}{f.unit}")
    ax.set_xlabel("game-server guests on the host")
    counts = sorted(df["guests"].unique())
    if len(counts) <= 12:
        ax.set_xticks(counts)  # guest counts are whole numbers: tick what was measured
    ax.set_ylim(bottom=0)  # delays and loss ratios are never negative
    ax.set_ylabel(f.ylabel)
    ax.set_title(f.title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _cdf(dists: dict, guests: int) -> bytes:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for (mode, g), dist in sorted(dists.items()):
        e = dist["stamp_error"]
        if g == guests and len(e):
            x = np.sort(e)
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=f"{mode} stamps")
    ax.set_xlabel("stamp error: stamp the server used − host arrival stamp (µs)")
    ax.set_ylabel("fraction of inputs")
    ax.set_title(f"Stamp error CDF at {guests} guests")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def _ccdf(dists: dict, mode: str) -> bytes:
    """Delay tail per guest count for one mode: P(delay > x) on log axes."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for (m, g), dist in sorted(dists.items(), key=lambda kv: kv[0][1]):
        x, p = dist["delay_ccdf"]
        if m == mode and len(x):
            ax.step(np.maximum(x, 1e-3), p, where="post", label=f"{g} guests")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("delay, client send → server stamp (µs)")
    ax.set_ylabel("fraction of inputs later than x")
    ax.set_title(f"Delay tail, {mode} stamps (complementary CDF)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def _waits(w: WaitFigures) -> bytes:
    """The mean stamp error against the mean wait per wake-up, one point per count."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    x = [r.wait_per_wake_us for r in w.rows]
    y = [r.stamp_error_mean_us for r in w.rows]
    ax.plot(x, y, "o")
    for r in w.rows:
        ax.annotate(str(r.guests), (r.wait_per_wake_us, r.stamp_error_mean_us),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    top = max(x + y) if x else 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle=":", label="wait = stamp error")
    ax.set_xlabel("guests' mean run-queue wait per wake-up (µs, schedstat)")
    ax.set_ylabel("mean stamp error, guest stamps (µs)")
    ax.set_title("Why guest stamps are late (labels: guest count)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def plots(df: pd.DataFrame, errors: dict, sla_us: float, sla_loss: float,
          stat: str) -> dict[str, bytes]:
    w = wait_figures(df)  # over every point, before the medians per count
    df = per_count(df)
    df = df.assign(placement_mode=df["placement"] + ", " + df["mode"] + " stamps")
    return {
        "loss": _lines(df, Lines("loss_ratio", "Input loss ratio vs guests (cf. paper Fig. "
                                 "6.4)", "loss ratio", sla_loss, by="placement_mode", unit="")),
        "mean_delay": _lines(df, Lines("delay_mean_us", "Mean delivery delay (cf. Fig. 6.5)",
                                       "mean delay, client send → server stamp (µs)",
                                       sla_us if stat == "mean" else None,
                                       ci=("delay_mean_ci_lo_us", "delay_mean_ci_hi_us"))),
        "p95_delay": _lines(df, Lines("delay_p95_us", "95th-percentile delay (cf. Fig. 6.6)",
                                      "p95 delay (µs)", sla_us if stat == "p95" else None,
                                      ci=("delay_p95_ci_lo_us", "delay_p95_ci_hi_us"))),
        "stamp_error_cdf": _cdf(errors, int(df["guests"].max())),
        **{f"delay_ccdf_{m}": _ccdf(errors, m) for m in sorted(df["mode"].unique())},
        **({"stamp_vs_wait": _waits(w)} if w else {}),
    }


def write_report(results: Path, given: SlaTerms | None = None,
                 players_total: int | None = PLAYERS_TOTAL) -> dict[str, Path]:
    """Analyse DIR and write report.html, report.md, capacity.csv and points.csv there.
    The SLA terms not given are the run's (its spec), else 1 ms mean delay and 1% loss."""
    from analysis import render
    from analysis.blocks import to_html, to_markdown
    from analysis.capacitytext import capacity_csv

    results = Path(results)
    df, errors, meta = analyze(results)
    spec, env = meta.get("spec", {}), dict(meta.get("environment", {}))
    terms = Sla.of_run(spec, given)
    judged, cap = judge(df, terms)
    sla = terms.as_dict()
    # both readings side by side: the players' SLA (how many fit) and the paper's terms
    # (what host stamps buy)
    both = {t: judge(df, terms.with_terms(t)) for t in ("players", "paper")}
    mixed = None
    if spec.get("mix"):  # a mixed host: every profile under its own SLA, and the mix
        from analysis.mix import judge_mix

        mixed = judge_mix(df, spec, given)
        judged, cap = mixed["mix"]
        both = None
    run = dict(load_json(results / "summary.json", {}) or {})
    run["ignored_points"] = point_files(results)[1]
    run["verdicts"] = judged
    run["mix"] = mixed
    if "machine_speed" not in run:  # a run before the measure, or a synthetic one
        from analysis.load import machine_speed

        run["machine_speed"] = machine_speed(df.to_dict("records"))
    env.update({k: v for k, v in run.get("environment", {}).items() if k not in env})
    images = plots(df, errors, terms.delay_us, terms.loss, terms.stat)
    paths = {"html": results / "report.html", "md": results / "report.md",
             "csv": results / "capacity.csv", "points": results / "points.csv"}
    model = None
    if players_total and not spec.get("mix"):  # analysis/model.py: one game per model
        from analysis.forecast import report_model

        model = report_model(results, players_total, terms)
    rep = render.Report(df, cap, sla, spec, env, PAPER, run, images, model, both)
    paths["md"].write_text(to_markdown(render.document(dataclasses.replace(rep, images={}))))
    paths["html"].write_text(to_html(render.document(rep)))
    capacity_csv(cap, sla, mixed, both).to_csv(paths["csv"], index=False)
    df.drop(columns=["profiles"], errors="ignore").to_csv(paths["points"], index=False)
    return paths
