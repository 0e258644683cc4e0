"""A variant's parent run in MLflow holds its aggregates, so the MLflow UI, `ablab list`, the
live table and the report compare variants with the same numbers. They are computed by one
function (`analysis.variant_table`, named by `analysis.parent_metrics`) over the seed values
counted with the study's `missing_as`, and written the same way after each trial (by the worker
that ran it) and by the report (which adds the comparison against the baseline).

After each trial the worker appends the trial's value and outcome to its parent as two metric
histories (step = seed: `seed.<metric>`, `seed.outcome`), then recomputes the aggregates from
those two histories: three small reads whatever the study's size, where reading the variant's
trial runs grew with every seed (a study of 10,000 trials would read 2,500 runs per trial)."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import pandas as pd

from core import lifecycle, names, tracking
from core.ablation.analysis import PARENT_STATS, parent_metrics, variant_table
from core.lifecycle import Outcome, Role
from core.study import record

if TYPE_CHECKING:
    from mlflow import MlflowClient


SEED = "seed."  # + the metric: a parent's per-seed values, step = seed
SEED_OUTCOME = "seed.outcome"  # each seed's outcome as its fixed code below, step = seed
# A metric holds a float, so the ledger stores a code per outcome: fixed here, by value, never
# by the enum's order (reordering Outcome must not reread old ledgers). These are the codes
# ledgers were written with.
LEDGER_CODES = {Outcome.OK: 0, Outcome.COLLAPSED: 1, Outcome.DIVERGED: 2, Outcome.PRUNED: 3,
                Outcome.FAILED: 4, Outcome.KILLED: 5, Outcome.CRASHED: 6, Outcome.PREEMPTED: 7,
                Outcome.SKIPPED: 8}
FROM_CODE = {code: outcome for outcome, code in LEDGER_CODES.items()}


def record_seeds(c: MlflowClient, parent_run_id: str, metric: str,
                 results: list[tuple[int, Outcome, dict[str, float]]]) -> None:
    """Append trials' (seed, outcome, metrics) to the parent's ledger, in one batched call."""
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    items, shared = [], {}
    for seed, outcome, metrics in results:
        value = metrics.get(metric)
        items += [Metric(SEED + metric, math.nan if value is None else float(value), ts, seed),
                  Metric(SEED_OUTCOME, float(LEDGER_CODES[outcome]), ts, seed)]
        shared.update({k: float(metrics[k]) for k in ("n_classes", "n_test")
                       if metrics.get(k) is not None})
    items += [Metric(k, v, ts, 0) for k, v in shared.items()]
    c.log_batch(parent_run_id, metrics=items)


def ledger_rows(c: MlflowClient, parent_run_id: str, metric: str) -> pd.DataFrame:
    """The parent's ledger as trial-run rows (the `load_runs` shape `variant_table` takes):
    one per recorded trial, in the order they ended."""
    run = c.get_run(parent_run_id)
    values = sorted(c.get_metric_history(parent_run_id, SEED + metric),
                    key=lambda m: (m.timestamp, m.step))
    outcomes = sorted(c.get_metric_history(parent_run_id, SEED_OUTCOME),
                      key=lambda m: (m.timestamp, m.step))
    n = min(len(values), len(outcomes))
    if not n:
        return pd.DataFrame()
    kinds = [FROM_CODE[int(o.value)] for o in outcomes[:n]]
    held = run.data.metrics
    shared: dict[str, float] = {k: held[k] for k in ("n_classes", "n_test") if k in held}
    return pd.DataFrame({
        "variant": run.data.tags.get(lifecycle.VARIANT, ""),
        "seed": [int(v.step) for v in values[:n]],
        "status": [k.status for k in kinds], "outcome": [k.value for k in kinds],
        "baseline": False, "start_time": [v.timestamp for v in values[:n]],
        metric: [v.value for v in values[:n]], **shared})


def update_parent(c: MlflowClient, parent_run_id: str, metric: str, direction: str,
                  missing_as: str) -> dict[str, float]:
    """Recompute a variant's aggregates from its ledger (step = n_seeds, so the latest value
    is the one with the most seeds even if two workers race)."""
    runs = ledger_rows(c, parent_run_id, metric)
    if runs.empty:
        return {}
    row = variant_table(runs, metric, direction, missing_as).iloc[0].to_dict()
    m = parent_metrics(row, metric)
    tracking.log_metrics(c, parent_run_id, m, step=int(row["n"]))
    return m


EVERY_TRIAL_UP_TO = 200  # seeds; beyond, the parent is recomputed every seed // 100 seeds


def due(seed: int) -> bool:
    """Whether the trial of this seed recomputes its parent's aggregates. Every trial up to
    seed 200; then every (seed // 100)-th seed, so a variant of 2,500 seeds reads its ledger
    of 2,500 points every 25 trials and the cost per trial stays flat (the parent then lags
    by at most 1% of its seeds; the report writes the exact figures)."""
    return seed < EVERY_TRIAL_UP_TO or seed % (seed // 100) == 0


def log_parents(c: MlflowClient, parent_of: dict[str, str], vt: pd.DataFrame,
                ct: pd.DataFrame, metric: str, others: pd.DataFrame | None = None,
                front: list[str] | None = None) -> None:
    """The report's numbers on each variant's parent, with its comparison and verdict, and
    those of the study's other metrics (core/ablation/metrics.py) with the Pareto set."""
    from core.ablation.metrics import parent_metrics as other_metrics

    comp = ct.set_index("variant").to_dict("index") if len(ct) else {}
    for r in vt.to_dict("records"):
        pid = parent_of.get(r["variant"])
        if not pid:
            continue
        x = comp.get(r["variant"])
        m, tags = (other_metrics(others, r["variant"]) if others is not None and len(others)
                   else ({}, {}))
        tracking.log_metrics(c, pid, {**parent_metrics(r, metric, x), **m}, step=int(r["n"]))
        if x is not None:
            tags[lifecycle.verdict_tag(metric)] = x["verdict"]
        if front is not None:
            tags[names.PARETO] = str(r["variant"] in front).lower()
        tracking.set_tags(c, pid, tags)


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
