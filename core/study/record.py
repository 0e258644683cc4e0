"""A study's record in MLflow: one experiment; runs with a role (`ablab.role`): `trial` (one
per trained model), `variant` / `search` parents holding aggregates with their trials nested
under them through `mlflow.parentRunId`, and `study` (the report). Runs left RUNNING by a
worker that died end KILLED here, with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import tracking
from core.stats import aggregate

ROLE = "ablab.role"
NUMBER = "optuna.trial_number"  # the queue trial a run belongs to


@dataclass(frozen=True)
class TrialRun:
    """An MLflow trial run, as the coordinator reads it."""

    run: Any

    run_id = property(lambda self: self.run.info.run_id)
    status = property(lambda self: self.run.info.status)
    tags = property(lambda self: self.run.data.tags)
    metrics = property(lambda self: self.run.data.metrics)
    hash = property(lambda self: self.run.data.tags.get("ablab.trial_hash", ""))


def quote(v: str) -> str:
    return v.replace("'", "\\'")


def trial_runs(c, experiment_id: str, status: str | None = None) -> list[TrialRun]:
    f = f"tags.`{ROLE}` = 'trial'"
    if status:
        f += f" and attributes.status = '{status}'"
    return [TrialRun(r) for r in tracking.search(c, experiment_id, f)]


def finished_by_hash(c, experiment_id: str) -> dict[str, TrialRun]:
    return {r.hash: r for r in trial_runs(c, experiment_id, "FINISHED")}


def finished_run(c, experiment_id: str, trial_hash: str) -> TrialRun | None:
    f = (f"tags.`{ROLE}` = 'trial' and attributes.status = 'FINISHED' and "
         f"tags.`ablab.trial_hash` = '{quote(trial_hash)}'")
    runs = tracking.search(c, experiment_id, f, max_results=1)
    return TrialRun(runs[0]) if runs else None


def kill_stale_runs(c, experiment_id: str, running: set[int]) -> int:
    """Runs left RUNNING whose queue trial is no longer running (its worker died or was
    stopped) end KILLED, tagged with why; their trial is retried under a new run."""
    n = 0
    for r in tracking.search(c, experiment_id, "attributes.status = 'RUNNING'"):
        number = r.data.tags.get(NUMBER)
        if number is None or int(number) in running:
            continue
        tracking.close_run(c, r.info.run_id, "KILLED", "killed",
                           "its worker stopped or died mid-trial")
        n += 1
    return n


def close_lost_attempts(c, experiment_id: str, key: dict[str, str], number: int) -> int:
    """Before a retried trial starts: runs of its earlier attempts still RUNNING (their
    worker died; on RDB storage Optuna's heartbeat noticed it, and no coordinator may be
    there to clean up) end KILLED, tagged with why."""
    f = " and ".join(["attributes.status = 'RUNNING'",
                      *(f"tags.`{k}` = '{quote(str(v))}'" for k, v in key.items())])
    n = 0
    for r in tracking.search(c, experiment_id, f):
        if r.data.tags.get(NUMBER) == str(number):
            continue
        tracking.close_run(c, r.info.run_id, "KILLED", "killed", "its worker stopped (no "
                           f"heartbeat or process gone); retried as queue trial {number}")
        n += 1
    return n


def role_run(c, experiment_id: str, role: str, key: dict[str, str], run_name: str,
             tags: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> str:
    """The run with this role and these key tags, created (FINISHED, with `tags` and
    `params`) if there is none: parents and report runs are found again on every rerun."""
    f = " and ".join([f"tags.`{ROLE}` = '{role}'",
                      *(f"tags.`{k}` = '{quote(str(v))}'" for k, v in key.items())])
    found = tracking.search(c, experiment_id, f, max_results=1)
    if found:
        return found[0].info.run_id
    run = c.create_run(experiment_id, run_name=run_name,
                       tags={ROLE: role, **key, **{k: tracking.fmt(v)
                                                   for k, v in (tags or {}).items()}})
    if params:
        tracking.log_params(c, run.info.run_id, params)
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def update_parent(c, experiment_id: str, parent_run_id: str, metric: str) -> dict[str, float]:
    """Recompute a variant's aggregates from its finished children (step = n_seeds, so the
    latest value is the one with the most seeds even if two workers race)."""
    f = (f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'"
         f" and tags.`{ROLE}` = 'trial'")
    values = [r.data.metrics.get(metric) for r in tracking.search(c, experiment_id, f)]
    agg = aggregate([v for v in values if v is not None], metric)
    tracking.log_metrics(c, parent_run_id, agg, step=int(agg.get("n_seeds", 0)))
    return agg
