"""A variant's parent run in MLflow holds its aggregates, so the MLflow UI, `ablab list`, the
live table and the report compare variants with the same numbers. They are computed by one
function (`analysis.variant_table`, named by `analysis.parent_metrics`) over the seed values
counted with the study's `missing_as`, and written the same way after each trial (by the worker
that ran it) and by the report (which adds the comparison against the baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from core import lifecycle, tracking
from core.ablation.analysis import PARENT_STATS, parent_metrics, variant_table
from core.ablation.runs import variant_runs
from core.lifecycle import Role
from core.study import record

if TYPE_CHECKING:
    from mlflow import MlflowClient


def update_parent(c: MlflowClient, exp_id: str, parent_run_id: str, metric: str,
                  direction: str, missing_as: str) -> dict[str, float]:
    """Recompute a variant's aggregates from its trial runs (step = n_seeds, so the latest
    value is the one with the most seeds even if two workers race)."""
    runs = variant_runs(c, exp_id, parent_run_id)
    if runs.empty:
        return {}
    row = variant_table(runs, metric, direction, missing_as).iloc[0].to_dict()
    m = parent_metrics(row, metric)
    tracking.log_metrics(c, parent_run_id, m, step=int(row["n"]))
    return m


def log_parents(c: MlflowClient, parent_of: dict[str, str], vt: pd.DataFrame,
                ct: pd.DataFrame, metric: str) -> None:
    """The report's numbers on each variant's parent, with its comparison and verdict."""
    comp = ct.set_index("variant").to_dict("index") if len(ct) else {}
    for r in vt.to_dict("records"):
        pid = parent_of.get(r["variant"])
        if not pid:
            continue
        x = comp.get(r["variant"])
        tracking.log_metrics(c, pid, parent_metrics(r, metric, x), step=int(r["n"]))
        if x is not None:
            tracking.set_tags(c, pid, {lifecycle.verdict_tag(metric): x["verdict"]})


def parent_table(c: MlflowClient, exp_id: str, parents: dict[str, str], baseline: str,
                 metric: str) -> pd.DataFrame:
    """The variants' aggregates as their parent runs hold them now (what the live table and
    `ablab list` show), in the `variant_table` shape."""
    held = {r.info.run_id: r.data.metrics for r in record.role_runs(c, exp_id, Role.VARIANT)}
    rows = []
    for name, pid in parents.items():
        m = held.get(pid, {})
        rows.append({"variant": name, "baseline": name == baseline,
                     "n": int(m.get("n_seeds", 0)), "imputed": int(m.get("n_imputed", 0)),
                     **{k: m.get(f"{k}_{metric}", float("nan")) for k in PARENT_STATS}})
    return pd.DataFrame(rows)
