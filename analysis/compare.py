"""`gamebed report A B [...]`: several runs side by side (no privileges; reads only files).

For runs that differ in how they were measured (backend, stamper, dispatch, ...) but
not in the load they offered, it gives each run's capacity per mode, each point's
delay with its CI, and the difference of every run to the first at the points they
share, with a CI for that difference (normal approximation: the two means' CI
half-widths combine in quadrature).  Runs whose load differs (players, rate,
duration, seed) are refused unless asked, naming the field, since a difference in
delay would then say nothing about the testbeds.

The same code measures differently on different hours: the guests' CPU cost moves
with the machine.  Each run's speed (analysis/load.py machine_speed: the guests' CPU
per 1000 inputs at the lowest count) is given beside its capacity, and each run's
capacity is set against the first run's scaled by their speeds (capacity goes
inversely with a guest's cost): "explained by speed" where the two intervals
overlap, "beyond speed" where they do not.
Writes OUT/comparison.html, OUT/comparison.md and OUT/comparison.csv.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.capacity import Sla, SlaTerms, capacity_text, judge  # noqa: E402
from analysis.load import machine_speed  # noqa: E402
from analysis.records import load_json  # noqa: E402
from analysis.report import _png, analyze, per_count  # noqa: E402

LOAD_FIELDS = ("players", "rate", "duration", "seed")
# the guest kernel and how it ran (UML): a run mixing them is refused like a mixed load
KERNEL_FIELDS = ("guest_kernel_digest", "uml_mode")
SETUP_FIELDS = ("backend", "stamper", "dispatch", "placement", "cpu_cap", "cpu_weight",
                "server_work_us")


def differing(records: dict[str, dict], fields: tuple[str, ...]) -> list[str]:
    """'field: run=value, ...' for each of `fields` on which the runs' records disagree
    (the load in their specs, the guest kernel in their environments)."""
    out = []
    for f in fields:
        vals = {label: r.get(f) for label, r in records.items()}
        if len(set(map(str, vals.values()))) > 1:
            out.append(f"{f}: " + ", ".join(f"{k}={v}" for k, v in vals.items()))
    return out


def _labels(dirs: list[Path]) -> list[str]:
    names = [d.resolve().name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]


def compare(dirs: list[Path], terms: SlaTerms | None = None,
            allow_load_difference: bool = False, allow_kernel_difference: bool = False) -> dict:
    """Every run analysed, capacities, the joined point table and the differences."""
    if len(dirs) < 2:
        raise ValueError("a comparison needs two or more results directories")
    runs, specs, envs, speeds = {}, {}, {}, {}
    for label, d in zip(_labels(dirs), dirs, strict=True):
        df, _dists, meta = analyze(d)
        runs[label], specs[label] = df.assign(run=label), meta.get("spec", {})
        envs[label] = meta.get("environment", {})
        summary = load_json(Path(d) / "summary.json", {}) or {}
        speeds[label] = summary.get("machine_speed") or machine_speed(df.to_dict("records"))
    diff = differing(specs, LOAD_FIELDS)
    kdiff = differing(envs, KERNEL_FIELDS)
    if kdiff and not allow_kernel_difference:
        raise ValueError("the runs' guests ran different kernels or UML modes ("
                         + "; ".join(kdiff) + "): compare runs of one kernel and mode, or "
                         "pass --allow-kernel-difference to compare the kernels themselves")
    if diff and not allow_load_difference:
        raise ValueError("the runs offered different loads (" + "; ".join(diff) + "): a "
                         "delay difference would not be the testbeds'. Compare runs of the "
                         "same load, or pass --allow-load-difference")
    # the SLA terms not given are the first run's
    first = Sla.of_run(next(iter(specs.values())), terms)
    # each run judged as `gamebed report` judges it: a --wan run on the host's share
    caps = {label: judge(df, Sla.of_run(specs[label], first.terms_asked()))[1]
            for label, df in runs.items()}
    other = "paper" if first.terms == "players" else "players"
    other_caps = {label: judge(df, Sla.of_run(specs[label], first.terms_asked())
                               .with_terms(other))[1] for label, df in runs.items()}
    # repeated points: their median per count (the capacities above use every repeat)
    points = pd.concat([per_count(df).assign(run=label) for label, df in runs.items()],
                       ignore_index=True)
    return {"runs": runs, "specs": specs, "caps": caps, "points": points,
            "differences": differences(points, list(runs)), "load_differences": diff,
            "kernel_differences": kdiff, "speeds": speeds,
            "other_caps": other_caps, "other_terms": other,
            "by_speed": by_speed(caps, speeds, list(runs)), "sla": first.as_dict()}


def by_speed(caps: dict, speeds: dict, labels: list[str]) -> list[dict]:
    """Each later run's capacity against the first run's scaled by their speeds (a guest
    that costs r times as much fits 1/r times as often): per mode, the speed ratio, the
    expected interval, and whether the measured one overlaps it."""
    base, s0 = caps[labels[0]], (speeds.get(labels[0]) or {})
    out = []
    for label in labels[1:]:
        s1 = speeds.get(label) or {}
        c0, c1 = s0.get("guest_cpu_ms_per_1000_inputs"), s1.get("guest_cpu_ms_per_1000_inputs")
        if not c0 or not c1:
            continue
        r = c0 / c1  # > 1: this run's guests were cheaper
        for mode, c in sorted(caps[label].items()):
            b = base.get(mode)
            if not b or b["capacity"] == 0 or c["capacity"] == 0:
                continue
            lo = b["capacity"] * r
            hi = None if b["capacity_hi"] is None else (b["capacity_hi"] + 1) * r
            c_hi = c["capacity_hi"]
            overlap = (c_hi is None or c_hi >= math.floor(lo)) and \
                (hi is None or c["capacity"] <= math.ceil(hi))
            out.append({"run": label, "mode": mode, "cost_ratio": round(c1 / c0, 3),
                        "expected": f"{math.floor(lo)}–{'' if hi is None else math.ceil(hi)}",
                        "measured": capacity_text(c),
                        "verdict": "explained by speed" if overlap else "beyond speed"})
    return out


def differences(points: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Mean delay of each run minus the first run's, at each (mode, guests) both have."""
    base = points[points["run"] == labels[0]].set_index(["mode", "guests"])
    rows = []
    for label in labels[1:]:
        other = points[points["run"] == label].set_index(["mode", "guests"])
        for key in sorted(set(base.index) & set(other.index)):
            a, b = base.loc[key], other.loc[key]
            ha = (a["delay_mean_ci_hi_us"] - a["delay_mean_ci_lo_us"]) / 2
            hb = (b["delay_mean_ci_hi_us"] - b["delay_mean_ci_lo_us"]) / 2
            d = b["delay_mean_us"] - a["delay_mean_us"]
            half = math.hypot(ha, hb)
            rows.append({"run": label, "versus": labels[0], "mode": key[0], "guests": key[1],
                         "delay_mean_diff_us": d, "diff_ci_lo_us": d - half,
                         "diff_ci_hi_us": d + half,
                         "significant": bool(abs(d) > half) if half == half else None,
                         "loss_diff": b["loss_ratio"] - a["loss_ratio"]})
    return pd.DataFrame(rows)


def _plot(points: pd.DataFrame, sla_us: float) -> bytes:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for (run, mode), g in points.groupby(["run", "mode"]):
        g = g.sort_values("guests")
        ax.plot(g["guests"], g["delay_mean_us"], marker="o", label=f"{run}: {mode} stamps")
    ax.axhline(sla_us, color="red", linestyle="--", label=f"SLA {sla_us:g} µs")
    ax.set_xlabel("game-server guests on the host")
    ax.set_ylabel("mean delay (µs)")
    ax.set_yscale("symlog", linthresh=100)
    ax.set_title("Mean delay per run and mode")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "–" if v != v else f"{v:.1f}"
    return str(v)


def speed_text(sp: dict | None) -> str:
    """A run's machine speed, and what the hypervisor stole from its loads where
    recorded: e.g. '838 ms CPU / 1000 inputs at 1; steal 2.1 s (1.2% of the loads)'."""
    if not sp:
        return "–"
    text = f"{sp['guest_cpu_ms_per_1000_inputs']:g} ms CPU / 1000 inputs at {sp['at_guests']}"
    if sp.get("steal_share") is not None:
        text += f"; steal {sp['steal_s']:g} s ({100 * sp['steal_share']:.1f}% of the loads)"
    return text


def tables(c: dict) -> dict[str, list[list[str]]]:
    """The comparison's tables as rows of text (header first)."""
    setup = [["run", *LOAD_FIELDS, *SETUP_FIELDS]]
    for label, s in c["specs"].items():
        setup.append([label, *(_fmt(s.get(f)) for f in (*LOAD_FIELDS, *SETUP_FIELDS))])
    other = c["other_terms"]
    caps = [["run", "mode", f"capacity, {c['sla'].get('terms', 'players')}' terms",
             "first failing count", f"capacity, {other}' terms", "machine speed"]]
    for label, cap in c["caps"].items():
        sp = c["speeds"].get(label)
        for m, v in sorted(cap.items()):
            o = c["other_caps"][label].get(m)
            caps.append([label, m, capacity_text(v), _fmt(v["first_failure"] or "–"),
                         capacity_text(o) if o else "–",
                         speed_text(sp)])
    speed = [["run", "mode", "its guests' cost / the first's", "the first's capacity at "
              "that cost", "measured", "verdict"]]
    for r in c["by_speed"]:
        speed.append([r["run"], r["mode"], f"{r['cost_ratio']:.3f}", r["expected"],
                      r["measured"], r["verdict"]])
    pts = [["run", "mode", "guests", "sent", "loss", "delay mean µs", "mean 95% CI µs",
            "delay p95 µs", "stamp err mean µs"]]
    for _, r in c["points"].sort_values(["mode", "guests", "run"]).iterrows():
        pts.append([r["run"], r["mode"], str(r["guests"]), str(r["inputs_sent"]),
                    f"{r['loss_ratio']:.4f}", _fmt(r["delay_mean_us"]),
                    f"{r['delay_mean_ci_lo_us']:.1f}–{r['delay_mean_ci_hi_us']:.1f}",
                    _fmt(r["delay_p95_us"]), _fmt(r["stamp_error_mean_us"])])
    diffs = [["run", "minus", "mode", "guests", "Δ mean delay µs", "95% CI µs", "beyond CI",
              "Δ loss"]]
    for _, r in c["differences"].iterrows():
        diffs.append([r["run"], r["versus"], r["mode"], str(r["guests"]),
                      _fmt(r["delay_mean_diff_us"]),
                      f"{r['diff_ci_lo_us']:.1f}–{r['diff_ci_hi_us']:.1f}",
                      "yes" if r["significant"] else "no", f"{r['loss_diff']:+.4f}"])
    return {"Setup and load": setup, "Capacity": caps,
            "Capacity against the machine's speed": speed, "Per point": pts,
            "Differences to the first run": diffs}


def speed_line(c: dict) -> str:
    """How far each run's machine speed lay from the first's, with the spread within a
    run (the sd of its points at the lowest count): a difference called beyond CI where
    the speeds differ by more than that spread may be the machine's, not the testbed's."""
    labels = list(c["speeds"])
    s0 = c["speeds"].get(labels[0]) or {}
    parts = []
    for label in labels[1:]:
        s1 = c["speeds"].get(label) or {}
        a, b = s0.get("guest_cpu_ms_per_1000_inputs"), s1.get("guest_cpu_ms_per_1000_inputs")
        if a and b:
            sd = max(s0.get("sd") or 0.0, s1.get("sd") or 0.0)
            parts.append(f"{label}'s guests used {b / a - 1:+.1%} of the CPU per input of "
                         f"{labels[0]}'s ({b:g} against {a:g} ms per 1000 inputs; the larger "
                         f"spread within a run: {sd:g})")
    if not parts:
        return ""
    return ("Machine speed: " + "; ".join(parts) + ". Where the speeds differ by more than "
            "that spread, a difference called beyond CI may be the machine's, not the code's.")


def write_comparison(dirs: list[Path], out: Path, terms: SlaTerms | None = None,
                     allow_load_difference: bool = False,
                     allow_kernel_difference: bool = False) -> dict[str, Path]:
    c = compare([Path(d) for d in dirs], terms, allow_load_difference, allow_kernel_difference)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sla = c["sla"]
    head = (f"SLA: {sla['stat']} delay ≤ {sla['delay_ms']:g} ms and loss ≤ {sla['loss']:g}. "
            "Δ = this run − the first; 'beyond CI' when the difference's 95% CI excludes 0.")
    if (speed := speed_line(c)):
        head += " " + speed
    if c["load_differences"]:
        head += " The loads differ (" + "; ".join(c["load_differences"]) + ")."
    if c.get("kernel_differences"):
        head += " The guest kernels differ (" + "; ".join(c["kernel_differences"]) + ")."
    md = ["# gamebed comparison", "", head, ""]
    e = html.escape
    body = [f"<h1>gamebed comparison</h1><p>{e(head)}</p>"]
    for title, rows in tables(c).items():
        md += [f"## {title}", "", "| " + " | ".join(rows[0]) + " |",
               "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]] + [""]
        ident = title.split()[0].lower()
        body.append(f"<h2>{e(title)}</h2><table id=\"{ident}\"><tr>"
                    + "".join(f"<th>{e(h)}</th>" for h in rows[0]) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>"
                              for r in rows[1:]) + "</table>")
    png = base64.b64encode(_plot(c["points"], sla["delay_ms"] * 1000.0)).decode()
    body.insert(1, f'<figure><img alt="mean_delay_by_run" src="data:image/png;base64,{png}">'
                   "<figcaption>Mean delay per run and mode</figcaption></figure>")
    paths = {"html": out / "comparison.html", "md": out / "comparison.md",
             "csv": out / "comparison.csv"}
    paths["md"].write_text("\n".join(md))
    paths["html"].write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>gamebed comparison</title>'
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid "
        "#ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}img{max-width:700px}"
        "</style></head><body>" + "".join(body) + "</body></html>\n")
    c["points"].to_csv(paths["csv"], index=False)
    return paths

