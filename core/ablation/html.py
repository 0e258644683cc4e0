"""The report as one self-contained HTML file: plots embedded as data URIs, styles inline, no
script and nothing fetched, so it opens from disk and can be mailed to a colleague. Built from
the same tables and columns as summary.md (pure: strings in, a string out)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from core.ablation.render import COMPARISON_COLUMNS, HTML, VARIANT_COLUMNS, cells, with_delta

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto;
       max-width: 1180px; color: #1d1d1f; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; font-size: 1.2em; }
.meta { color: #666; } blockquote { border-left: 3px solid #ccc; margin: 1em 0;
  padding: .2em 1em; color: #444; white-space: pre-line; }
table { border-collapse: collapse; margin: .6em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f4f4f6; } td:first-child, th:first-child { text-align: left; }
.better { background: #d9f2dc; } .worse { background: #f9d6d5; }
.equivalent { background: #dde8f7; } .inconclusive, .not { background: #f3f0e0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 12px; } code { background: #f4f4f6; padding: 0 3px; }
.runs td { font-family: ui-monospace, monospace; font-size: 12px; }
"""


def _table(head: list[str], rows: list[list[str]], cls: list[str] | None = None,
           table_cls: str = "") -> str:
    out = [f'<table class="{table_cls}"><thead><tr>'
           + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        c = f' class="{cls[i]}"' if cls and cls[i] else ""
        out.append(f"<tr{c}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "".join(out) + "</tbody></table>"


def image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


CAPTIONS = {
    "per_seed.png": "Every seed's value per variant (box: quartiles, bar: mean; red crosses: "
                    "seeds that diverged or failed, counted as missing_as says).",
    "score_distribution.png": "Score distribution over seeds: empirical CDF per variant with "
                              "its 95% DKW confidence band.",
    "learning_curves.png": "Validation accuracy and loss per epoch: mean over seeds, band = ±1 "
                           "std.",
    "confusion_matrices.png": "Confusion matrices summed over seeds.",
    "tradeoffs.png": "The primary metric against each cost: means with 95% intervals; filled "
                     "points are the Pareto set over all the study's metrics.",
}


def run_links(runs: pd.DataFrame, exp_id: str, ui: str) -> str:
    """Each variant's parent run and its trials' run ids, linked into the MLflow UI."""
    def link(run_id: str) -> str:
        return (f'<a href="{html.escape(ui)}/#/experiments/{exp_id}/runs/{run_id}">'
                f"{run_id}</a>")

    rows = []
    for name, g in runs.groupby("variant", sort=False):
        parent = g["parent"].dropna().iloc[0] if g["parent"].notna().any() else ""
        trials = ", ".join(f"seed {s}: {link(rid)} ({html.escape(st.lower())})" for s, rid, st
                           in zip(g["seed"], g["run_id"], g["status"], strict=True))
        rows.append([html.escape(name), link(parent) if parent else "–", trials])
    return _table(["variant", "parent run (aggregates)", "trial runs"], rows,
                  table_cls="runs")


def data_section(card, plots: list[Path]) -> str:
    """The data card (core.data.card) as HTML: prose, the counts table, its plots."""
    counts = card.counts.reset_index()
    parts = ["<h2>Data</h2>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in card.lines()]
    parts.append(_table([str(c) for c in counts.columns],
                        [[html.escape(str(v)) for v in row] for row in counts.to_numpy()],
                        table_cls="data"))
    parts += [image(p, DATA_CAPTIONS.get(p.name, p.stem.replace("_", " "))) for p in plots]
    return "\n".join(parts)


DATA_CAPTIONS = {"class_counts.png": "Images per class and split.",
                 "examples.png": "Training images per class, as the model sees them."}


def data_page(card, plots: list[Path]) -> str:
    """`ablab data`'s page: the data card alone, self-contained."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(card.name)}: data card</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(card.name)}</h1>{data_section(card, plots)}</body></html>")


def render(study: str, metric: str, direction: str, question: str, vt: pd.DataFrame,
           ct: pd.DataFrame, missing: list[str], plots: list[Path], runs: pd.DataFrame,
           exp_id: str, ui: str, notes: list[str], delta: float | None,
           recall: pd.DataFrame | None = None,
           adaptive: tuple[str, list[dict]] | None = None, data: str = "",
           others: tuple[list[str], list[list[str]], list[str]] | None = None) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(study)}: ablab report</title><style>{STYLE}</style></head>"
             f"<body><h1>{html.escape(study)}</h1><p class='meta'>{html.escape(metric)} "
             f"({html.escape(direction)}) · {len(runs)} trial runs · MLflow experiment "
             f"{exp_id}</p>"]
    if question:
        parts.append(f"<blockquote>{html.escape(question)}</blockquote>")
    if len(ct):
        verdict_cls = [str(v).split()[0] for v in ct["verdict"]]
        parts.append(f"<h2>Against the baseline ({html.escape(ct['baseline'].iloc[0])})</h2>")
        parts.append(_table([c.header for c in COMPARISON_COLUMNS],
                            cells(COMPARISON_COLUMNS, with_delta(ct, delta), HTML),
                            verdict_cls, "comparisons"))
    if adaptive is not None:
        parts.append("<h2>Adaptive seeds: the looks, and where each variant stopped</h2>"
                     f"<p>{html.escape(adaptive[0])}</p>")
        parts.append(_table(["variant", "decision", "seeds", "why", "looks"], [
            [html.escape(r["variant"]), f"<b>{html.escape(r['decision'])}</b>", str(r["n"]),
             html.escape(r["why"]), html.escape(r["looks"]).replace("; ", "<br>")]
            for r in adaptive[1]], table_cls="looks"))
    if others is not None and others[1]:
        head, rows, front = others
        parts.append("<h2>Every metric, with its direction (↑ higher is better, ↓ lower)</h2>")
        parts.append(_table(head, [[html.escape(c) for c in r] for r in rows],
                            table_cls="metrics"))
        parts.append(f"<p>Pareto set over these metrics: <b>"
                     f"{html.escape(', '.join(front) or '(none)')}</b></p>")
    parts.append("<h2>Per variant</h2>")
    parts.append(_table([c.header for c in VARIANT_COLUMNS], cells(VARIANT_COLUMNS, vt, HTML),
                        table_cls="variants"))
    if recall is not None:
        parts.append("<h2>Per-class recall (imbalanced test set; mean over seeds)</h2>")
        parts.append(_table(list(recall.columns), [
            [html.escape(str(r[0])), *(HTML.num(v, 3) for v in r[1:])]
            for r in recall.itertuples(index=False)], table_cls="recall"))
    if missing:
        parts.append(f"<h2>Missing ({len(missing)} trial(s) without a finished run)</h2><ul>"
                     + "".join(f"<li>{html.escape(m)}</li>" for m in missing[:50]) + "</ul>")
    if data:
        parts.append(data)
    parts.append("<h2>Plots</h2>")
    parts += [image(p, CAPTIONS.get(p.name, p.stem)) for p in plots]
    parts.append("<h2>MLflow runs</h2>")
    parts.append(f"<p class='meta'>Links open the MLflow UI at {html.escape(ui)} "
                 "(<code>ablab ui</code> serves it for a local store).</p>")
    parts.append(run_links(runs, exp_id, ui))
    parts.append("<h2>How to read this</h2>" + "".join(f"<p>{html.escape(n)}</p>"
                                                       for n in notes))
    parts.append("</body></html>")
    return "\n".join(parts)
