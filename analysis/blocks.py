"""The report's pieces (Block) and their two renderings, Markdown and self-contained
HTML (no privileges)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

CAPTIONS = {"loss": "Inputs lost (never reached the server) per placement and mode",
            "mean_delay": "Mean delay with its 95% CI (clock uncertainty included)",
            "p95_delay": "95th-percentile delay with its distribution-free 95% CI",
            "stamp_error_cdf": "Stamp error at the largest guest count: 0 = the host's stamp",
            "delay_ccdf_guest": "Delay tail with guest stamps, per guest count (log-log)",
            "delay_ccdf_host": "Delay tail with host stamps, per guest count (log-log)",
            "stamp_vs_wait": "Guest-stamp error against the guests' run-queue wait per "
                             "wake-up (schedstat), per guest count"}

@dataclass(frozen=True)
class Block:
    """One piece of the report: kind is h1, h2, p, note, list, table or images."""

    kind: str
    text: str = ""
    rows: tuple = ()  # list: lines; table: (head, rows); images: (name, png) pairs
    id: str = ""

def table(title: str, tid: str, head: list[str], rows: list[list[str]],
           note: str = "") -> list[Block]:
    out = [Block("h2", title), Block("table", rows=(head, rows), id=tid)]
    return out + ([Block("note", note)] if note else [])

def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows)]

def html_table(tid: str, head: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    return (f'<table id="{tid}"><tr>' + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")

def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out += [f"# {b.text}", ""]
        elif b.kind == "h2":
            out += [f"## {b.text}", ""]
        elif b.kind in ("p", "note"):
            out += [b.text, ""]
        elif b.kind == "list":
            out += [*(f"- {line}" for line in b.rows), ""]
        elif b.kind == "table":
            out += [*md_table(*b.rows), ""]
        # images: the HTML page carries the plots
    return "\n".join(out)

HTML_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
              "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
              "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
              "th{background:#f3f3f3}figure{display:inline-block;margin:.5em}"
              "img{max-width:520px}.note{color:#666;font-size:13px}")

def _html_block(b: Block) -> str:
    e = html.escape
    ident = f' id="{b.id}"' if b.id else ""
    if b.kind in ("h1", "h2"):
        return f"<{b.kind}>{e(b.text)}</{b.kind}>"
    if b.kind in ("p", "note"):
        cls = ' class="note"' if b.kind == "note" else ""
        return f"<p{ident}{cls}>{e(b.text)}</p>"
    if b.kind == "list":
        return f"<ul{ident}>" + "".join(f"<li>{e(x)}</li>" for x in b.rows) + "</ul>"
    if b.kind == "table":
        return html_table(b.id, *b.rows)
    return "".join(f'<figure><img alt="{k}" src="data:image/png;base64,'
                   f'{base64.b64encode(v).decode()}"><figcaption>{e(CAPTIONS.get(k, k))}'
                   "</figcaption></figure>" for k, v in b.rows)

def to_html(blocks: list[Block]) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><title>gamebed report</title>'
            f"<style>{HTML_STYLE}</style></head><body>\n"
            + "\n".join(_html_block(b) for b in blocks) + "\n</body></html>\n")
