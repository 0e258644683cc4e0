"""The search strategy. The coordinator enqueues one empty "ticket" per trial still to run (up
to the requested total, so a rerun with a larger total adds exactly the difference); a worker
that claims a ticket lets its sampler fill in the parameters, trains, and tells Optuna the
result. Each Optuna trial is one MLflow run nested under the search's parent run (with
seeds_per_trial > 1, the seeds' runs nest under the trial's run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState
from rich.text import Text

from core import lifecycle, tracking
from core.lifecycle import ATTR_KEY, Role, lost
from core.pretrain import sources_of
from core.search.spec import Search, check_space
from core.study import record
from core.study.coordinator import Engine, Study
from core.study.options import RunOptions
from core.study.queue import Queue, StudyMeta
from core.study.rdb import Light
from core.study.spec import study_base

if TYPE_CHECKING:
    from mlflow import MlflowClient


def ticket(i: int) -> str:
    return f"ticket-{i}"


def settled(t: FrozenTrial) -> bool:
    """A trial that counts toward the total: it finished, was pruned, or failed on its own."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and not lost(t))


class SearchStudy(Study):
    kind = "search"

    def __init__(self, s: Search, opts: RunOptions, trials: int | None = None,
                 engine: Engine | None = None):
        super().__init__(s, opts, engine)
        self.s = s
        self.base = study_base(s, opts.sets, opts.smoke)
        exp = check_space(s, self.base)
        self.exp = exp
        self.sources = sources_of([exp])
        total = trials or s.n_trials
        if s.sampler == "grid":
            total = min(total, s.grid_size())
        self.target = total
        self.parent = ""

    def total_items(self) -> int:
        return self.target

    def experiments(self) -> list:
        return [self.exp]

    def header(self) -> str:
        return (f"[bold]{self.name}[/]: {self.plan.done} trial(s) in the study, running "
                f"{len(self.plan.keys)} more (sampler {self.s.sampler}, pruner "
                f"{self.s.pruner_spec.type}).")

    def may_have_work(self, queue: Queue) -> bool:
        return sum(settled(t) for t in queue.trials()) < self.target

    def prepare(self, queue: Queue, c: MlflowClient, exp_id: str) -> None:
        s = self.s
        self.parent = record.role_run(
            c, exp_id, Role.SEARCH, {lifecycle.STUDY: s.name}, f"search {s.name}",
            tags={lifecycle.OPTUNA_STUDY: self.queue_name, lifecycle.METRIC: s.metric},
            params={"sampler": s.sampler, "pruner": s.pruner_spec.type, "metric": s.metric,
                    "direction": s.direction, "objectives": ",".join(s.objective_names),
                    "directions": ",".join(s.directions), "seeds_per_trial": s.seeds_per_trial,
                    "space": s.model_dump_json(include={"space"})})
        queue.study.set_user_attr("mlflow_parent_run_id", self.parent)

    def meta(self) -> StudyMeta:
        src = next(iter(self.sources.values()), None)
        return StudyMeta(spec=self.s.model_dump(mode="json"), raw=self.base.raw,
                         explicit=list(self.base.explicit), source=self.base.source,
                         parent_run_id=self.parent, source_hash=src.hash if src else None,
                         weights_uri=self.uris.get(src.name) if src else None)

    def pending(self, queue: Queue, c: MlflowClient, exp_id: str,
                at_start: bool) -> dict[str, dict[str, Any]]:
        """Tickets up to the target that have no settled trial. Points a person enqueued
        with Optuna's `enqueue_trial` are adopted as tickets, so they count toward it."""
        trials = queue.trials()
        keys = {t.user_attrs.get(ATTR_KEY) for t in trials}
        free = (ticket(i) for i in range(10 ** 9) if ticket(i) not in keys)
        for t in trials:
            if t.state == TrialState.WAITING and not t.user_attrs.get(ATTR_KEY):
                queue.storage.set_trial_user_attr(queue.trial_id(t), ATTR_KEY, next(free))
        trials = queue.trials()
        done = {t.user_attrs.get(ATTR_KEY) for t in trials if settled(t)}
        legacy = sum(1 for t in trials if settled(t) and not t.user_attrs.get(ATTR_KEY))
        todo: dict[str, dict[str, Any]] = {}
        for i in range(self.target):
            k = ticket(i)
            if k in done:
                continue
            if legacy:  # trials of an older ablab, without tickets
                legacy -= 1
                continue
            todo[k] = {}
        return todo

    def retry_params(self, queue: Queue, lost_attempts: list[Light]) -> dict[str, Any] | None:
        """A lost trial is retried at the point it had sampled."""
        if not lost_attempts:
            return None
        return dict(queue.storage.get_trial(lost_attempts[-1]._trial_id).params)

    def table(self, queue: Queue, c: MlflowClient, exp_id: str, changed: bool) -> Text:
        done = queue.trials((TrialState.COMPLETE,))
        pruned = queue.count((TrialState.PRUNED,))
        if not done:
            return Text(f"pruned {pruned}")
        if self.s.multi:
            front = queue.study.best_trials
            return Text(f"{len(done)} complete, Pareto front: trials "
                        f"{', '.join(str(t.number) for t in front)}")
        pick = max if self.s.direction == "maximize" else min
        best = pick(done, key=lambda t: float(t.value or 0.0))
        return Text(f"pruned {pruned}, best {self.s.metric}={best.value:.4f} "
                    f"(trial {best.number})")

    def summarize(self, interrupted: bool) -> dict:
        from core.search.report import finalize

        c = self.engine.client(self.tracking_uri)
        exp_id = tracking.get_or_create_experiment(c, self.name)
        queue = self.engine.open_queue(self.storage, self.queue_name, self.s.directions)
        summary = finalize(self.s, queue.study, self.base, c, exp_id, self.console)
        summary["interrupted"] = interrupted
        return summary
