"""Several metrics, one study: the primary metric's verdicts (core/ablation/analysis.py) and,
beside them, each other metric of the ablation's `metrics:` list (by default the cost metrics:
parameters, FLOPs, latency, training time) with its own direction and verdict, and the Pareto
set of variants over all of them. Pure: runs in, tables out.

Multiple testing: each metric is its own family, Holm across that metric's comparisons (as
the primary metric's always were). The primary metric answers the study's question and its
verdicts do not move when a cost metric is added; a cost verdict is read per metric.
Exact quantities (parameters, FLOPs, weights' size) do not vary across seeds: they are
compared as values, without a test ("fewer parameters": better, by its direction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core import names
from core.ablation.analysis import baseline_name, comparison_table, finished, variant_table


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # maximize | minimize

    @property
    def exact(self) -> bool:
        return self.name in names.EXACT_METRICS

    @property
    def arrow(self) -> str:
        return "↑" if self.direction == "maximize" else "↓"


def metric_list(primary: str, direction: str, extra: list | None) -> list[Metric]:
    """The study's metrics: the primary first, then `extra` (names or {name: direction}),
    by default the cost metrics; each direction from names.default_direction unless given."""
    out = [Metric(primary, direction)]
    for item in names.DEFAULT_COSTS if extra is None else extra:
        name, d = next(iter(item.items())) if isinstance(item, dict) else (item, None)
        if name != primary and name not in [m.name for m in out]:
            out.append(Metric(name, d or names.default_direction(name)))
    return out


COLUMNS = ["variant", "metric", "direction", "kind", "mean", "ci95_low", "ci95_high", "diff",
           "diff_ci_low", "diff_ci_high", "p_holm", "verdict", "n"]


def metric_table(runs: pd.DataFrame, metrics: list[Metric]) -> pd.DataFrame:
    """One row per (variant, metric): the variant's mean and interval, its difference from the
    baseline and the verdict in the metric's direction. A metric no run logged is left out.
    Costs of a run that failed are undefined, not imputed (`missing_as: exclude`)."""
    rows: list[dict] = []
    base = baseline_name(runs)
    for m in metrics:
        if m.name not in runs or not runs[m.name].notna().any():
            continue
        if m.exact:
            rows += _exact_rows(runs, m, base)
            continue
        vt = variant_table(runs, m.name, m.direction, "exclude").set_index("variant")
        ct = comparison_table(runs, m.name, m.direction, base, missing_as="exclude")
        comp = ct.set_index("variant").to_dict("index") if len(ct) else {}
        for variant, r in vt.iterrows():
            x = comp.get(variant, {})
            rows.append({"variant": variant, "metric": m.name, "direction": m.direction,
                         "kind": "measured", "mean": r["mean"], "ci95_low": r["ci95_low"],
                         "ci95_high": r["ci95_high"], "diff": x.get("diff", math.nan),
                         "diff_ci_low": x.get("diff_ci_low", math.nan),
                         "diff_ci_high": x.get("diff_ci_high", math.nan),
                         "p_holm": x.get("p_holm", math.nan),
                         "verdict": x.get("verdict", "baseline"), "n": r["n"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def _exact_rows(runs: pd.DataFrame, m: Metric, base: str | None) -> list[dict]:
    fin = finished(runs)
    values = {v: float(g[m.name].median()) for v, g in fin.groupby("variant", sort=False)
              if g[m.name].notna().any()}
    ref = values.get(base or "", math.nan)
    rows = []
    for variant, value in values.items():
        diff = value - ref
        if variant == base:
            verdict = "baseline"
        elif not math.isfinite(diff) or abs(diff) <= 1e-9 * max(1.0, abs(ref)):
            verdict = "equal (exact)"
        else:
            good = diff < 0 if m.direction == "minimize" else diff > 0
            verdict = ("better" if good else "worse") + " (exact)"
        rows.append({"variant": variant, "metric": m.name, "direction": m.direction,
                     "kind": "exact", "mean": value, "ci95_low": math.nan,
                     "ci95_high": math.nan, "diff": diff if variant != base else math.nan,
                     "diff_ci_low": math.nan, "diff_ci_high": math.nan, "p_holm": math.nan,
                     "verdict": verdict, "n": int(fin["variant"].eq(variant).sum())})
    return rows


def pareto(table: pd.DataFrame, metrics: list[Metric]) -> list[str]:
    """The variants no other variant beats on every metric (means, each in its direction):
    a variant is dominated when another is at least as good everywhere and better once."""
    wanted = [m for m in metrics if m.name in set(table["metric"])]
    means = table.pivot_table(index="variant", columns="metric", values="mean", sort=False)
    sign = np.array([1.0 if m.direction == "maximize" else -1.0 for m in wanted])
    score = means[[m.name for m in wanted]].to_numpy(float) * sign
    keep = []
    for i, variant in enumerate(means.index):
        if not np.isfinite(score[i]).all():
            continue
        others = np.delete(score, i, axis=0)
        others = others[np.isfinite(others).all(axis=1)]
        dominated = ((others >= score[i]).all(axis=1) & (others > score[i]).any(axis=1)).any()
        if not dominated:
            keep.append(str(variant))
    return keep


def _value(x: float) -> str:
    if not isinstance(x, float) or not math.isfinite(x):
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def with_primary(table: pd.DataFrame, vt: pd.DataFrame, ct: pd.DataFrame, metric: str,
                 direction: str) -> pd.DataFrame:
    """The primary metric's rows (from the report's own tables) before the others, so one
    view shows every metric of every variant."""
    comp = ct.set_index("variant").to_dict("index") if len(ct) else {}
    rows = [{"variant": r["variant"], "metric": metric, "direction": direction,
             "kind": "measured", "mean": r["mean"], "ci95_low": r["ci95_low"],
             "ci95_high": r["ci95_high"],
             **{k: comp.get(r["variant"], {}).get(k, math.nan)
                for k in ("diff", "diff_ci_low", "diff_ci_high", "p_holm")},
             "verdict": comp.get(r["variant"], {}).get("verdict", "baseline"), "n": r["n"]}
            for r in vt.to_dict("records")]
    return pd.concat([pd.DataFrame(rows, columns=COLUMNS), table], ignore_index=True)


def by_variant(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The console's view: a row per variant, a column per metric (with its arrow) holding
    value, difference and verdict; at 80 columns a card per variant, a line per metric."""
    metrics = list(dict.fromkeys(table["metric"]))
    arrows = {r.metric: "↑" if r.direction == "maximize" else "↓"
              for r in table.itertuples(index=False)}
    full = dict(zip(zip(table["variant"], table["metric"], strict=True), cells(table), strict=True))
    rows = []
    for variant in dict.fromkeys(table["variant"]):
        row = [str(variant)]
        for m in metrics:
            c = full.get((variant, m))
            row.append("" if c is None else " ".join(x for x in (c[2], c[3], c[4]) if x))
        rows.append(row)
    return ["variant", *(f"{m} {arrows[m]}" for m in metrics)], rows


def cells(table: pd.DataFrame) -> list[list[str]]:
    """Rows for markdown and HTML: variant, metric (with its direction), value [95% CI],
    difference [Holm CI], verdict."""
    out = []
    for r in table.itertuples(index=False):
        arrow = "↑" if r.direction == "maximize" else "↓"
        value = _value(r.mean) + ("" if r.kind == "exact" else
                                  f" [{_value(r.ci95_low)}, {_value(r.ci95_high)}]")
        diff = "" if r.verdict == "baseline" else (
            f"{r.diff:+.4g}" + ("" if r.kind == "exact" else
                                 f" [{_value(r.diff_ci_low)}, {_value(r.diff_ci_high)}]"))
        out.append([str(r.variant), f"{r.metric} {arrow}", value, diff, str(r.verdict)])
    return out


HEADERS = ["variant", "metric", "value [95% CI]", "diff [Holm CI]", "verdict"]


def markdown(table: pd.DataFrame, front: list[str]) -> list[str]:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in cells(table)]
    return lines + ["", f"Pareto set over these metrics: {', '.join(front) or '(none)'}."]


def parent_metrics(table: pd.DataFrame, variant: str) -> tuple[dict[str, float],
                                                                dict[str, str]]:
    """What a variant's parent run holds of the other metrics: mean_, ci95_low_, ci95_high_,
    diff_ per metric (metrics) and its verdict per metric (tags)."""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for r in table[table["variant"] == variant].itertuples(index=False):
        for key, value in (("mean", r.mean), ("ci95_low", r.ci95_low),
                           ("ci95_high", r.ci95_high), ("diff", r.diff)):
            if isinstance(value, float) and math.isfinite(value):
                metrics[f"{key}_{r.metric}"] = value
        tags[names.VERDICT_PREFIX + r.metric] = str(r.verdict)
    return metrics, tags

