"""The worker's side of an ablation: a claimed trial carries its whole config; run it (alone,
or with `train.pack: K` together with up to K - 1 queued trials of the same config) unless a
finished run with its hash exists, end each queue trial through `core.lifecycle`, and update
the variant's parent aggregates. The training itself is handed in (`Trainer`), so these
decisions are tested without TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import tracking
from core.ablation.parents import due, record_seeds, update_parent
from core.lifecycle import TRIAL_HASH, Outcome
from core.study import record
from core.study.queue import Job, Queue, StudyMeta
from core.study.worker import claimed, job_tags
from core.trial import Trial

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from core.runner import DataCache, TrialResult


@dataclass(frozen=True)
class Trainer:
    """How trials are trained: one alone, several as a pack, and how many to pack."""

    one: Callable[..., TrialResult]
    pack: Callable[..., list[TrialResult]]
    pack_size: Callable[[Trial], int]


def real_trainer() -> Trainer:
    from core.runner import run_pack, run_trial

    return Trainer(run_trial, run_pack, pack_size)


class AblationHandler:
    def __init__(self, queue: Queue, c: MlflowClient, meta: StudyMeta,
                 trainer: Trainer | None = None):
        self.queue, self.c = queue, c
        self.metric = meta["metric"]
        self.direction = meta.get("direction", "maximize")
        self.missing_as = meta.get("missing_as", "chance")
        self.trainer = trainer or real_trainer()
        self.cache: DataCache = {}

    def run(self, job: Job) -> Outcome:
        """One trial, or a pack: this trial and up to K - 1 queued trials of the same config
        (other seeds), claimed now and trained together. Returns the first one's outcome
        (SKIPPED when none needed training)."""
        first = Trial.from_attrs(job.attrs)
        partners = [t for t in job.attrs.get("pack_partners") or [] if t != job.trial_id]
        if partners:  # a preempted pack resumes together, or starts over as a new one
            jobs = [job, *(j for j in (self.queue.take(t, job.who) for t in partners) if j)]
            if len(jobs) < len(partners) + 1:
                print(f"{first.run_name}: its pack's other trials were taken by other "
                      "workers; the pack starts over", flush=True)
                first = first.replace(resume_run_id=None)
        else:
            k = self.trainer.pack_size(first)
            jobs = [job, *self.queue.claim_like(job, k - 1)] if k > 1 else [job]
        exp_id = tracking.get_or_create_experiment(self.c, first.study)
        todo = []
        for j in jobs:
            trial = first if j is job else Trial.from_attrs(j.attrs)
            if first.resume_run_id is None:
                trial = trial.replace(resume_run_id=None)
            trial = trial.replace(tags={**trial.tags, **job_tags(j, trial.study)})
            done = record.finished_run(self.c, exp_id, trial.hash)
            if done is not None:  # another worker, or an earlier attempt, got it to the end
                if trial.parent_run_id:  # (its worker may have died before the ledger)
                    record_seeds(self.c, trial.parent_run_id, self.metric,
                                 [(trial.seed, done.outcome, done.metrics)])
                self.queue.finish(j, done.outcome, done.metrics.get(self.metric), done.run_id)
                continue
            record.close_lost_attempts(self.c, exp_id, {TRIAL_HASH: trial.hash}, j.number)
            todo.append((j, trial))
        if not todo:
            return Outcome.SKIPPED
        with claimed(self.queue, *(j for j, _ in todo)):
            if len(todo) == 1:
                results = [self.trainer.one(todo[0][1], c=self.c, cache=self.cache)]
            else:
                results = self.trainer.pack([t for _, t in todo], c=self.c, cache=self.cache)
        parent = todo[0][1].parent_run_id
        if parent:
            record_seeds(self.c, parent, self.metric,
                         [(t.seed, res.outcome, res.metrics)
                          for (_, t), res in zip(todo, results, strict=True)])
        for (j, _), res in zip(todo, results, strict=True):
            self.queue.finish(j, res.outcome, res.metrics.get(self.metric), res.run_id,
                              error=res.error)
        if parent and any(due(t.seed) for _, t in todo):
            update_parent(self.c, parent, self.metric, self.direction, self.missing_as)
        return results[0].outcome


def pack_size(trial: Trial) -> int:
    """How many seeds to train with this one; says in the worker's log when a config asks
    for packing and cannot have it."""
    from core import pack

    if trial.exp.train.pack == 1:
        return 1
    why = pack.unpackable(trial.exp)
    if why:
        print(f"train.pack={trial.exp.train.pack} for {trial.run_name}: running unpacked, "
              f"since {why}", flush=True)
        return 1
    if trial.exp.train.pack != "auto":
        return int(trial.exp.train.pack)
    from core.seeding import device_name

    return pack.size(trial.exp, device_name(), lambda: pack.n_params(trial.exp))
