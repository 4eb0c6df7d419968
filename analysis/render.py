"""Render the capacity report as Markdown, self-contained HTML and CSV (no privileges):
what the report shows and in which order (`document`).  Its sections' text is in
analysis/capacitytext.py, analysis/pointtables.py and analysis/modeltext.py; its two
renderings in analysis/blocks.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.blocks import Block, table
from analysis.capacity import capacity_text
from analysis.capacitytext import (
    CAPACITY_HEAD,
    CAPACITY_NOTE,
    MIX_HEAD,
    MIX_NOTE,
    VERDICT_HEAD,
    VERDICT_NOTE,
    capacity_rows,
    game_name,
    invalid_lines,
    mix_rows,
    ratio_lines,
    ratio_text,
    search_lines,
    sla_text,
    verdict_rows,
)
from analysis.modeltext import model_blocks
from analysis.pointtables import (
    BUDGET_HEAD,
    COLS2,
    DELAY_NOTE,
    FAULT_HEAD,
    FAULT_NOTE,
    GAME_HEAD,
    GAME_NOTE,
    MACHINE_HEAD,
    MACHINE_NOTE,
    PAIRED_NOTE,
    PAPER_TITLE,
    SPREAD_HEAD,
    WAN_HEAD,
    WAN_NOTE,
    budget_note,
    budget_rows,
    cols,
    fault_rows,
    game_rows,
    machine_rows,
    setup_lines,
    spread_rows,
    table2_rows,
    table_rows,
    wan_rows,
)
from analysis.waits import WAIT_HEAD, wait_figures, wait_lines, wait_rows


def document(rep: Report) -> list[Block]:
    """The report's content, once: what both renderings show."""
    sla, env, run, df = rep.sla, rep.env, rep.run, rep.points
    out = [Block("h1", "gamebed capacity report"),
           Block("p", sla_text(sla)),
           Block("p", f"Backend: {env.get('backend', '?')}, placement: "
                      f"{env.get('placement', '?')}."),
           Block("list", rows=tuple(setup_lines(env, run)), id="setup")]
    if env.get("accel_reason"):
        out.append(Block("p", f"Accelerator: {env['accel_reason']}", id="accel"))
    if rep.caps:
        out += table("Capacity", "capacity", CAPACITY_HEAD, capacity_rows(rep.caps),
                      CAPACITY_NOTE)
    else:  # a mixed host: the mix's capacity under its profiles' own SLAs
        caps = [[f"{m} stamps", capacity_text(c), str(c["first_failure"] or "–"), "–", "–"]
                for m, c in sorted(rep.cap.items())]
        out += table("Capacity", "capacity", CAPACITY_HEAD, caps, CAPACITY_NOTE)
    if mix := mix_rows(run):
        out += table("Games on this host", "mix", MIX_HEAD, mix, MIX_NOTE)
    ratios = ratio_lines(rep.caps) if rep.caps else [
        f"Host/guest capacity ratio: {ratio_text(rep.cap)}"]
    out += [*(Block("p", x, id=f"ratio{i}") for i, x in enumerate(ratios)),
            *(Block("p", x) for x in invalid_lines(rep.cap, game_name(rep.spec))),
            *(Block("p", x) for x in search_lines(run))]
    if rep.model is not None:
        out += model_blocks(rep.model)
    out += table("Counts: why each passed or failed", "verdicts", VERDICT_HEAD,
                  verdict_rows(run), VERDICT_NOTE)
    if (w := wait_figures(df)) is not None:
        out += table("Why the stamps are late", "waits", WAIT_HEAD, wait_rows(w),
                      " ".join(wait_lines(w)) + " Guest stamps; medians over a count's "
                      "repeats.")
    if spread := spread_rows(df):
        out += table("Spread over repeats", "spread", SPREAD_HEAD, spread,
                      "Each figure over a count's repeated points: mean ± sd (min–max).")
    if rep.spec.get("wan"):
        out += table(f"Network and host (--wan {rep.spec['wan']})", "wan", WAN_HEAD,
                      wan_rows(df), WAN_NOTE)
    if game := game_rows(df, rep.spec):
        out += table("How the game ran", "game", GAME_HEAD, game, GAME_NOTE)
    if machine := machine_rows(df):
        out += table("What the machine took", "machine", MACHINE_HEAD, machine, MACHINE_NOTE)
    if faults := fault_rows(df):
        out += table("Faults and availability", "faults", FAULT_HEAD, faults, FAULT_NOTE)
    if rep.images:
        out += [Block("h2", "Plots"), Block("images", rows=tuple(rep.images.items()))]
    if budget := budget_rows(run):
        out += table("Where the time went (s)", "budget", BUDGET_HEAD, budget,
                      budget_note(run))
    out += table("Per point", "points", [h for _, h in cols(df)], table_rows(df), DELAY_NOTE)
    out += table("Paired stamps and CPU", "paired", [h for _, h in COLS2], table2_rows(df),
                  PAIRED_NOTE)
    out += table("Spec and environment", "environment", ["", ""],
                  [[str(k), str(v)] for k, v in
                   {**env, **{f"spec.{a}": b for a, b in rep.spec.items()}}.items()])
    out += table(PAPER_TITLE, "paper", ["", "Tsai 2009, ch. 6"], [list(r) for r in rep.paper])
    return out

@dataclass(frozen=True)
class Report:
    """What a capacity report is made of (analysis/report.py gathers it)."""

    points: pd.DataFrame
    cap: dict
    sla: dict
    spec: dict
    env: dict
    paper: list
    run: dict
    images: dict = field(default_factory=dict)
    model: dict | None = None  # analysis/forecast.py report_model
    # {"players": (verdicts, caps), "paper": (verdicts, caps)}: the run judged both ways
    caps: dict | None = None
