"""A trial's life, owned here and nowhere else: how a trial can end (`Outcome`), what each end
means in the queue (Optuna state) and in the record (MLflow run status), the run roles and the
tag names ablab writes, and the calls every run starts and ends through: `create_run` (or
`reopen_run`, a preempted trial continued) and `end_run` for its MLflow run, `finish` for its
queue trial. Ablation trials, packed trials and search trials alike.

As MLflow keeps every tag name in `mlflow/utils/mlflow_tags.py` and Optuna ends every trial in
`study/_tell.py`: a new outcome, role or tag is one line here, and every reader (the report,
`ablab list`, the UI) finds it under the same name.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from core.names import (  # noqa: F401  (re-exported: lifecycle.ROLE, ...)
    BASELINE,
    CODE,
    CODE_PREFIX,
    DATA_PREFIX,
    DECISION,
    DECISION_WHY,
    DETERMINISTIC,
    DEVICE,
    DTYPE_POLICY,
    END_REASON,
    ERROR,
    EXPERIMENT,
    GIT_COMMIT,
    METRIC,
    MODEL_URI,
    N_SEEDS,
    ONEDNN,
    OPTUNA_BEST_TRIAL,
    OPTUNA_PARAMS,
    OPTUNA_STATE,
    OPTUNA_STUDY,
    OUTCOME,
    PACK,
    PARENT,
    PREEMPTIONS,
    PRETRAIN_HASH,
    PRETRAIN_SOURCE,
    PRETRAINED_FROM,
    QUEUE_NUMBER,
    REPORT_METRIC,
    ROLE,
    SEED,
    SLOT,
    STUDY,
    TICKET,
    TRIAL_HASH,
    VARIANT,
    VARIANT_HASH,
    VERDICT_PREFIX,
    WEIGHTS_DIGEST,
    WORKER,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


class Outcome(str, Enum):
    """How one trial ended. `state`: its Optuna state; `status`: its MLflow run's status."""

    OK = "ok"  # trained and evaluated
    COLLAPSED = "collapsed"  # trained, but its predictions carry no information (core.outcome)
    DIVERGED = "diverged"  # NaN/inf loss: no metric of its own; counts as `missing_as` says
    PRUNED = "pruned"  # a search's pruner stopped it
    FAILED = "failed"  # an exception of its own: recorded, not retried within the run
    KILLED = "killed"  # stopped by Ctrl-C or SIGTERM, or its worker died: retried
    CRASHED = "crashed"  # its worker process vanished (journal storage): retried
    PREEMPTED = "preempted"  # its worker was told to stop by a cluster: back in the queue
    SKIPPED = "skipped"  # a finished run of its trial already existed: nothing was trained

    def __str__(self) -> str:  # its name in messages and f-strings, as MLflow shows it
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def state(self) -> TrialState:
        return _STATE[self]

    @property
    def status(self) -> str:
        return _STATUS[self]

    @property
    def retried(self) -> bool:
        """Ended without a result of its own: the trial runs again."""
        return self in (Outcome.KILLED, Outcome.CRASHED, Outcome.PREEMPTED)

    @property
    def trained(self) -> bool:
        """A model was trained to the end and evaluated (it has the metric)."""
        return self in (Outcome.OK, Outcome.COLLAPSED)

    @classmethod
    def of(cls, name: str | None, default: Outcome | None = None) -> Outcome:
        """An outcome from a tag or attr value; `default` when there is none."""
        if name is None and default is not None:
            return default
        return cls(name)


_STATE = {Outcome.OK: TrialState.COMPLETE, Outcome.COLLAPSED: TrialState.COMPLETE,
          Outcome.SKIPPED: TrialState.COMPLETE, Outcome.DIVERGED: TrialState.PRUNED,
          Outcome.PRUNED: TrialState.PRUNED, Outcome.FAILED: TrialState.FAIL,
          Outcome.KILLED: TrialState.FAIL, Outcome.CRASHED: TrialState.FAIL,
          # the same queue trial waits again: not a failed attempt, nothing left FAIL
          Outcome.PREEMPTED: TrialState.WAITING}
_STATUS = {Outcome.OK: "FINISHED", Outcome.COLLAPSED: "FINISHED", Outcome.SKIPPED: "FINISHED",
           Outcome.DIVERGED: "FINISHED", Outcome.PRUNED: "FINISHED", Outcome.FAILED: "FAILED",
           Outcome.KILLED: "KILLED", Outcome.CRASHED: "KILLED", Outcome.PREEMPTED: "KILLED"}

# ------------------------------------------------------------------------ run roles and tags



class Role(str, Enum):
    TRIAL = "trial"  # one trained model (one seed of a variant, one search trial)
    SEED = "seed"  # a search trial's seed, nested under its `trial` run
    VARIANT = "variant"  # an ablation variant's parent: aggregates over its seeds
    SEARCH = "search"  # a search's parent
    STUDY = "study"  # the study's report
    PRETRAIN = "pretrain"  # a pretraining source's backbone


def verdict_tag(metric: str) -> str:
    return VERDICT_PREFIX + metric


def role_filter(role: Role | None, op: str = "=") -> str:
    """An MLflow search filter on the run role (None: the empty role, so `!=` finds every
    run that has one)."""
    return f"tags.`{ROLE}` {op} '{role.value if role else ''}'"


def role_of(tags: dict[str, str]) -> Role | None:
    r = tags.get(ROLE)
    return Role(r) if r in Role._value2member_map_ else None


# ------------------------------------------------------------------------ queue trial attrs

ATTR_OUTCOME = "outcome"
ATTR_RUN_ID = "mlflow_run_id"
ATTR_ERROR = "error"
ATTR_WORKER = "worker"
ATTR_KEY = "key"
ATTR_PREEMPTIONS = "preemptions"
ATTR_CHECKPOINT = "checkpoint"  # where a preempted trial continues from (core.checkpoint)
ATTR_PARTNERS = "pack_partners"  # a preempted pack's queue trial ids: claimed together


class QueueTrial(Protocol):
    """What the bookkeeping reads of a queue trial: an Optuna FrozenTrial, or the light
    row `core.study.rdb` reads without its config."""

    @property
    def state(self) -> TrialState: ...

    @property
    def user_attrs(self) -> dict[str, Any]: ...


def attr_outcome(t: QueueTrial) -> Outcome | None:
    v = t.user_attrs.get(ATTR_OUTCOME)
    return Outcome(v) if v in Outcome._value2member_map_ else None


def lost(t: QueueTrial) -> bool:
    """A queue trial that ended without a result of its own: its worker died or was stopped
    (Optuna's heartbeat failing it leaves no outcome at all)."""
    return t.state == TrialState.FAIL and attr_outcome(t) != Outcome.FAILED


def failed_on_its_own(t: QueueTrial) -> bool:
    return t.state == TrialState.FAIL and attr_outcome(t) == Outcome.FAILED


# ------------------------------------------------------------------------ a run's start and end


def create_run(c: MlflowClient, experiment_id: str, run_name: str, role: Role,
               tags: dict[str, Any], params: dict[str, Any] | None = None,
               finished: bool = False) -> str:
    """Every run ablab writes starts here (trials, search trials, parents, reports); a trial
    ends through `end_run`. `finished`: a record run (a parent, a report), which holds
    figures, not a training, and ends FINISHED at once."""
    from core import tracking

    run = c.create_run(experiment_id, run_name=run_name, tags={
        ROLE: role.value, **{k: tracking.fmt(v) for k, v in tags.items()}})
    if params:
        tracking.log_params(c, run.info.run_id, params)
    if finished:
        c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def reopen_run(c: MlflowClient, run_id: str) -> None:
    """A preempted trial's run, continued by the worker that resumes it: RUNNING again,
    the same run (one trial, one metric history), its outcome decided when it ends."""
    c.update_run(run_id, status="RUNNING")
    held = c.get_run(run_id).data.tags
    for tag in (OUTCOME, END_REASON):
        if tag in held:
            c.delete_tag(run_id, tag)


def end_run(c: MlflowClient, run_id: str, outcome: Outcome, why: str | None = None,
            error: str | None = None) -> None:
    """End an MLflow run with its outcome tag (and why, when something else ended it): the
    status comes from the outcome, so a run and its queue trial always agree."""
    from core import tracking

    tags: dict[str, Any] = {OUTCOME: outcome.value}
    if why:
        tags[END_REASON] = why
    if error:
        tags[ERROR] = error[:5000]
    try:
        tracking.set_tags(c, run_id, tags)
    finally:
        c.set_terminated(run_id, outcome.status)


def return_to_queue(storage: QueueStorage, trial_id: int, run_id: str | None = None,
                    checkpoint_run: str | None = None, partners: list[int] | None = None
                    ) -> None:
    """A preempted trial waits again as the same queue trial (RUNNING -> WAITING through the
    storage's own state update), its preemptions counted and its run's checkpoint named: no
    coordinator is needed to retry it, it is not a failed attempt, and the worker that claims
    it next continues that run from its checkpoint (a pack's is in its first run, and its
    trials are resumed together: `partners`)."""
    n = 0
    get = getattr(storage, "get_trial", None)
    if get is not None:
        n = int(get(trial_id).user_attrs.get(ATTR_PREEMPTIONS, 0))
    storage.set_trial_user_attr(trial_id, ATTR_PREEMPTIONS, n + 1)
    if run_id:
        from core.checkpoint import ARTIFACT_PATH

        storage.set_trial_user_attr(trial_id, ATTR_RUN_ID, run_id)
        storage.set_trial_user_attr(trial_id, ATTR_CHECKPOINT,
                                    f"runs:/{checkpoint_run or run_id}/{ARTIFACT_PATH}")
        if partners:
            storage.set_trial_user_attr(trial_id, ATTR_PARTNERS, list(partners))
    with contextlib.suppress(UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, TrialState.WAITING)


class QueueStorage(Protocol):
    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None: ...

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: list[float] | None = None) -> bool: ...


def fail_lost(storage: QueueStorage, trial_id: int, outcome: Outcome) -> bool:
    """A RUNNING queue trial whose worker is gone ends FAIL with why it ended (`outcome`:
    killed or crashed, so it is retried); False if it had ended meanwhile."""
    try:
        storage.set_trial_user_attr(trial_id, ATTR_OUTCOME, outcome.value)
        return storage.set_trial_state_values(trial_id, outcome.state)
    except UpdateFinishedTrialError:
        return False


Tell = Callable[..., Any]  # optuna.Study.tell, bound to a study with the search's sampler


def finish(storage: QueueStorage, trial_id: int, outcome: Outcome,
           value: float | list[float] | None = None,
           run_id: str | None = None, *, error: str | None = None,
           tell: Tell | None = None, trial: Any = None, checkpoint_run: str | None = None,
           partners: list[int] | None = None) -> Outcome:
    """End one queue trial: its outcome, run and error as attrs, then its Optuna state with
    the value (a list: one per objective of a multi-objective search). A trained trial
    without a finite value has no result to compare and ends FAIL/failed. `tell` (a search:
    Optuna's `Study.tell`, so its sampler sees the result) sets the state instead of the
    storage. A trial already ended meanwhile (failed as stale while its result was on the
    way) is left as it is: the finished MLflow run is what counts."""
    values = None if value is None else [float(v) for v in (
        value if isinstance(value, list) else [value])]
    if outcome.trained and (values is None or not all(math.isfinite(v) for v in values)):
        outcome, error = Outcome.FAILED, error or "no finite value of the study's metric"
    if outcome == Outcome.PREEMPTED:
        return_to_queue(storage, trial_id, run_id, checkpoint_run, partners)
        return outcome
    storage.set_trial_user_attr(trial_id, ATTR_OUTCOME, outcome.value)
    if run_id:
        storage.set_trial_user_attr(trial_id, ATTR_RUN_ID, run_id)
    if error:
        storage.set_trial_user_attr(trial_id, ATTR_ERROR, error[:2000])
    values = values if outcome.state == TrialState.COMPLETE else None
    if tell is not None:
        # GridSampler asks to stop the study once the grid is covered; outside Optuna's own
        # optimize loop that is a RuntimeError after the state was stored.
        with contextlib.suppress(RuntimeError, UpdateFinishedTrialError):
            tell(trial, state=outcome.state, values=values)
        return outcome
    with contextlib.suppress(UpdateFinishedTrialError):
        storage.set_trial_state_values(trial_id, outcome.state, values)
    return outcome
