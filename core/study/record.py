"""A study's record in MLflow: one experiment; runs with a role (core.lifecycle.Role): `trial`
(one per trained model), `variant` / `search` parents holding aggregates with their trials
nested under them, and `study` (the report). Runs left RUNNING by a worker that died end KILLED
here, with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import tracking
from core.lifecycle import (
    OUTCOME,
    PARENT,
    QUEUE_NUMBER,
    TRIAL_HASH,
    Outcome,
    Role,
    create_run,
    end_run,
    role_filter,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


@dataclass(frozen=True)
class TrialRun:
    """An MLflow trial run, as the coordinator reads it."""

    run: Run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def status(self) -> str:
        return self.run.info.status

    @property
    def tags(self) -> dict[str, str]:
        return self.run.data.tags

    @property
    def metrics(self) -> dict[str, float]:
        return self.run.data.metrics

    @property
    def hash(self) -> str:
        return self.run.data.tags.get(TRIAL_HASH, "")

    @property
    def outcome(self) -> Outcome:
        return Outcome.of(self.run.data.tags.get(OUTCOME), Outcome.OK)


def quote(v: str) -> str:
    return v.replace("'", "\\'")


def tag_filter(key: dict[str, Any]) -> list[str]:
    return [f"tags.`{k}` = '{quote(str(v))}'" for k, v in key.items()]


def trial_filter(status: str | None = None, **key: Any) -> str:
    parts = [role_filter(Role.TRIAL)]
    if status:
        parts.append(f"attributes.status = '{status}'")
    return " and ".join(parts + tag_filter(key))


def trial_runs(c: MlflowClient, experiment_id: str, status: str | None = None) -> list[TrialRun]:
    return [TrialRun(r) for r in tracking.search(c, experiment_id, trial_filter(status))]


def child_runs(c: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    """The trial runs nested under one parent (a variant)."""
    return tracking.search(c, experiment_id, trial_filter(**{PARENT: parent_run_id}))


def finished_run(c: MlflowClient, experiment_id: str, trial_hash: str) -> TrialRun | None:
    runs = tracking.search(c, experiment_id, trial_filter("FINISHED", **{TRIAL_HASH: trial_hash}),
                           max_results=1)
    return TrialRun(runs[0]) if runs else None


def kill_stale_runs(c: MlflowClient, experiment_id: str, running: set[int]) -> int:
    """Runs left RUNNING whose queue trial is no longer running (its worker died or was
    stopped) end KILLED, tagged with why; their trial is retried under a new run."""
    n = 0
    for r in tracking.search(c, experiment_id, "attributes.status = 'RUNNING'"):
        number = r.data.tags.get(QUEUE_NUMBER)
        if number is None or int(number) in running:
            continue
        end_run(c, r.info.run_id, Outcome.KILLED, "its worker stopped or died mid-trial")
        n += 1
    return n


def close_lost_attempts(c: MlflowClient, experiment_id: str, key: dict[str, str],
                        number: int) -> int:
    """Before a retried trial starts: runs of its earlier attempts still RUNNING (their
    worker died; on RDB storage Optuna's heartbeat noticed it, and no coordinator may be
    there to clean up) end KILLED, tagged with why."""
    f = " and ".join(["attributes.status = 'RUNNING'", *tag_filter(key)])
    n = 0
    for r in tracking.search(c, experiment_id, f):
        if r.data.tags.get(QUEUE_NUMBER) == str(number):
            continue
        end_run(c, r.info.run_id, Outcome.KILLED, "its worker stopped (no heartbeat or "
                f"process gone); retried as queue trial {number}")
        n += 1
    return n


def role_runs(c: MlflowClient, experiment_id: str, role: Role, **key: Any) -> list[Run]:
    f = " and ".join([role_filter(role), *tag_filter(key)])
    return tracking.search(c, experiment_id, f)


def role_run(c: MlflowClient, experiment_id: str, role: Role, key: dict[str, str],
             run_name: str, tags: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> str:
    """The run with this role and these key tags, created (FINISHED, with `tags` and
    `params`) if there is none: parents and report runs are found again on every rerun."""
    f = " and ".join([role_filter(role), *tag_filter(key)])
    found = tracking.search(c, experiment_id, f, max_results=1)
    if found:
        return found[0].info.run_id
    return create_run(c, experiment_id, run_name, role, {**key, **(tags or {})}, params,
                      finished=True)
