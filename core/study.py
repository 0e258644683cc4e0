"""A study's record in MLflow: one experiment; a parent run per variant holding the aggregates;
each trial's run nested under it through the `mlflow.parentRunId` tag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import tracking
from core.ablation import Variant
from core.stats import aggregate

ROLE = "ablab.role"


@dataclass
class TrialRun:
    run_id: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]

    @property
    def hash(self) -> str:
        return self.tags.get("ablab.trial_hash", "")


def _q(v: str) -> str:
    return v.replace("'", "\\'")


def trial_runs(c, experiment_id: str, status: str | None = None) -> list[TrialRun]:
    f = f"tags.`{ROLE}` = 'trial'"
    if status:
        f += f" and attributes.status = '{status}'"
    return [TrialRun(r.info.run_id, r.info.status, r.data.tags, r.data.metrics)
            for r in tracking.search(c, experiment_id, f)]


def finished_by_hash(c, experiment_id: str) -> dict[str, TrialRun]:
    return {r.hash: r for r in trial_runs(c, experiment_id, "FINISHED")}


def finished_run(c, experiment_id: str, trial_hash: str) -> TrialRun | None:
    f = (f"tags.`{ROLE}` = 'trial' and attributes.status = 'FINISHED' and "
         f"tags.`ablab.trial_hash` = '{_q(trial_hash)}'")
    runs = tracking.search(c, experiment_id, f, max_results=1)
    if not runs:
        return None
    r = runs[0]
    return TrialRun(r.info.run_id, r.info.status, r.data.tags, r.data.metrics)


def kill_stale_runs(c, experiment_id: str, alive_hashes: set[str]) -> int:
    """Trial runs left RUNNING by a dead process end as KILLED (their trial is rerun)."""
    n = 0
    for r in trial_runs(c, experiment_id, "RUNNING"):
        if r.hash in alive_hashes:
            continue
        tracking.set_tags(c, r.run_id, {"ablab.outcome": "killed"})
        c.set_terminated(r.run_id, "KILLED")
        n += 1
    return n


def ensure_parents(c, experiment_id: str, study: str, variants: list[Variant],
                   metric: str) -> dict[str, str]:
    """Get or create the parent run of each variant, keyed by its config (not just its name),
    so changing the base config gives new parents instead of mixing results."""
    existing = {
        (r.data.tags.get("ablab.variant"), r.data.tags.get("ablab.variant_hash")): r.info.run_id
        for r in tracking.search(c, experiment_id, f"tags.`{ROLE}` = 'variant'")
    }
    out = {}
    for v in variants:
        key = (v.name, v.hash)
        if key in existing:
            out[v.name] = existing[key]
            continue
        run = c.create_run(experiment_id, run_name=v.name, tags={
            ROLE: "variant", "ablab.variant": v.name, "ablab.variant_hash": v.hash,
            "ablab.study": study, "ablab.baseline": str(v.is_baseline).lower(),
            "ablab.metric": metric})
        tracking.log_params(c, run.info.run_id, {**v.exp.flat(), "variant": v.name})
        tracking.log_metrics(c, run.info.run_id, {"n_seeds": 0}, step=0)
        c.set_terminated(run.info.run_id, "FINISHED")
        out[v.name] = run.info.run_id
    return out


def update_parent(c, experiment_id: str, parent_run_id: str, metric: str) -> dict[str, float]:
    """Recompute a variant's aggregates from its finished children (step = n_seeds, so the
    latest value is the one with the most seeds even if two workers race)."""
    f = (f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'"
         f" and tags.`{ROLE}` = 'trial'")
    values = [r.data.metrics.get(metric) for r in tracking.search(c, experiment_id, f)]
    agg = aggregate([v for v in values if v is not None], metric)
    tracking.log_metrics(c, parent_run_id, agg, step=int(agg.get("n_seeds", 0)))
    return agg


def trial_attrs(study: str, mlflow_experiment: str, variant: Variant, seed: int,
                trial_hash: str, parent_run_id: str, metric: str) -> dict[str, Any]:
    """Everything a worker anywhere needs to run the trial, stored in the Optuna trial."""
    import json

    return {
        "trial_hash": trial_hash,
        "study": study,
        "mlflow_experiment": mlflow_experiment,
        "variant": variant.name,
        "seed": seed,
        "parent_run_id": parent_run_id,
        "metric": metric,
        "config": json.dumps(variant.exp.model_dump(mode="json")),
    }
