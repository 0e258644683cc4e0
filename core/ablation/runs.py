"""Loading a study's runs from MLflow into pandas, the one shape every reader takes: one row
per trial run with its variant, seed, status, outcome, parent and metrics. The report, the
parents' aggregates after each trial and the adaptive replay all read runs through here."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core import lifecycle, names, tracking
from core.ablation.analysis import finished
from core.lifecycle import Role
from core.study import record

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# row column -> the run tag it comes from
TAGS = {"variant": lifecycle.VARIANT, "seed": lifecycle.SEED,
        "trial_hash": lifecycle.TRIAL_HASH, "outcome": lifecycle.OUTCOME,
        "parent": lifecycle.PARENT, "code": lifecycle.CODE,
        "fingerprint": names.FINGERPRINT, "isa": names.FP_ISA, "onednn": names.FP_ONEDNN,
        "gpu": names.FP_GPU}


def run_row(r: Run, baseline: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {k: r.data.tags.get(v) for k, v in TAGS.items()}
    row.update(run_id=r.info.run_id, status=r.info.status, start_time=r.info.start_time,
               baseline=baseline)
    row.update(r.data.metrics)
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if not df.empty:
        df["seed"] = df["seed"].astype(int)
    return df


def load_runs(study: str, tracking_uri: str | None = None,
              c: MlflowClient | None = None) -> pd.DataFrame:
    """One row per trial run of the study's current variants (the newest parent per variant
    name, so results of an older base config are not mixed in)."""
    c = c or tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(study)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {study!r} in {c.tracking_uri}")
    newest: dict[str | None, Run] = {}
    for p in sorted(record.role_runs(c, exp.experiment_id, Role.VARIANT),
                    key=lambda r: r.info.start_time):
        newest[p.data.tags.get(lifecycle.VARIANT)] = p
    keep = {p.info.run_id: p for p in newest.values()}
    rows = []
    for r in record.trial_runs(c, exp.experiment_id):
        parent = r.tags.get(lifecycle.PARENT)
        if keep and parent not in keep:
            continue
        base = keep[parent].data.tags.get(lifecycle.BASELINE) == "true" if keep else False
        rows.append(run_row(r.run, base))
    df = frame(rows)
    if df.empty:
        return df
    order = {name: i for i, name in enumerate(newest)}
    df["_order"] = df["variant"].map(order).fillna(len(order))
    return df.sort_values(["_order", "seed", "start_time"]).drop(columns="_order") \
        .reset_index(drop=True)


def variant_runs(c: MlflowClient, exp_id: str, parent_run_id: str) -> pd.DataFrame:
    """One variant's trial runs (those nested under its parent), as `load_runs` rows."""
    return frame([run_row(r) for r in record.child_runs(c, exp_id, parent_run_id)])


def histories(runs: pd.DataFrame, c: MlflowClient,
              keys: tuple[str, ...] = ("val_accuracy", "val_loss")) -> pd.DataFrame:
    rows = []
    for r in finished(runs).itertuples():
        for key in keys:
            for m in c.get_metric_history(str(r.run_id), key):
                rows.append({"variant": r.variant, "seed": r.seed, "metric": key,
                             "epoch": m.step, "value": m.value})
    return pd.DataFrame(rows, columns=["variant", "seed", "metric", "epoch", "value"])


def summed_confusions(runs: pd.DataFrame,
                      c: MlflowClient) -> dict[str, tuple[list[str], np.ndarray]]:
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in finished(runs).itertuples():
            try:
                p = c.download_artifacts(str(r.run_id), "confusion_matrix.csv", tmp)
            except Exception:  # noqa: BLE001 - diverged runs have no confusion matrix
                continue
            cm = pd.read_csv(p, index_col=0)
            names, arr = list(cm.columns), cm.to_numpy()
            v = str(r.variant)
            if v in out:
                arr = out[v][1] + arr
            out[v] = (names, arr)
    return out
