"""The ablation strategy: every variant x seed is one queued trial carrying its whole config;
a variant's parent run in MLflow holds its aggregates; the summary is a table per variant."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from core import tracking
from core.ablation.spec import Ablation, Variant, expand
from core.runner import run_trial
from core.stats import aggregate
from core.study import record
from core.study.coordinator import Study
from core.study.options import RunOptions
from core.study.queue import MAX_ATTEMPTS, Job, Queue
from core.study.worker import claimed, job_tags
from core.trial import Trial, source_name


class AblationStudy(Study):
    kind = "ablation"

    def __init__(self, ab: Ablation, opts: RunOptions, seeds: int | None = None):
        super().__init__(ab, opts)
        self.ab = ab
        self.variants, self.trials, self.sources = expand(ab, seeds, opts.sets, opts.smoke)
        self.parents: dict[str, str] = {}

    def meta(self) -> dict[str, Any]:
        return {}

    def experiments(self) -> list:
        return [v.exp for v in self.variants]

    def total_items(self) -> int:
        return len(self.trials)

    def header(self) -> str:
        n = len(self.variants)
        return (f"[bold]{self.name}[/]: {n} variants x {len(self.trials) // max(n, 1)} seeds = "
                f"{len(self.trials)} trials; {self.plan.done} already done, "
                f"{len(self.plan.keys)} to run.")

    def may_have_work(self, queue: Queue) -> bool:
        done = {t.user_attrs.get("key") for t in queue.trials((TrialState.COMPLETE,
                                                                TrialState.PRUNED))}
        return any(t.hash not in done for t in self.trials)

    def prepare(self, queue: Queue, c, exp_id: str) -> None:
        """Get or create each variant's parent run, keyed by its config (not just its name),
        so changing the base config gives new parents instead of mixing results."""
        for v in self.variants:
            self.parents[v.name] = record.role_run(
                c, exp_id, "variant", {"ablab.variant": v.name, "ablab.variant_hash": v.hash},
                v.name, tags={"ablab.study": self.name, "ablab.baseline": v.is_baseline,
                              "ablab.metric": self.ab.metric},
                params={**v.exp.flat(), "variant": v.name})

    def _ready(self, t: Trial) -> Trial:
        src = source_name(t.exp.model.weights)
        return t.replace(parent_run_id=self.parents[t.variant],
                         weights_uri=self.uris.get(src) if src else None)

    def pending(self, queue: Queue, c, exp_id: str, at_start: bool) -> dict[str, dict]:
        """Trials without a finished MLflow run (the store is the truth: a COMPLETE queue
        trial whose run is gone runs again). After a crash, a trial that failed on its own
        is not retried within the same run."""
        finished = record.finished_by_hash(c, exp_id)
        failed = set() if at_start else {
            t.user_attrs.get("key") for t in queue.trials((TrialState.FAIL,))
            if t.user_attrs.get("outcome") == "failed"}
        return {t.hash: self._ready(t).to_attrs() for t in self.trials
                if t.hash not in finished and t.hash not in failed}

    def table(self, queue: Queue) -> Table:
        variant_of = {t.hash: t.variant for t in self.trials}
        vals: dict[str, list[float]] = {}
        for t in queue.trials((TrialState.COMPLETE,)):
            v = variant_of.get(t.user_attrs.get("key"))
            if v is not None and t.value is not None:
                vals.setdefault(v, []).append(t.value)
        table = Table(box=None, show_header=True, pad_edge=False)
        table.add_column("variant")
        table.add_column("n", justify="right")
        table.add_column(f"running mean {self.ab.metric}", justify="right")
        for v in self.variants:
            x = vals.get(v.name, [])
            table.add_row(v.name, str(len(x)), f"{sum(x) / len(x):.4f}" if x else "-")
        return table

    def summarize(self, interrupted: bool) -> StudyResult:
        c = tracking.client(self.tracking_uri)
        exp_id = tracking.get_or_create_experiment(c, self.name)
        for v in self.variants:
            if v.name in self.parents:
                record.update_parent(c, exp_id, self.parents[v.name], self.ab.metric)
        return summarize(self.name, self.variants, self.trials, c, exp_id, self.ab.metric,
                         self.plan.done, interrupted, self.plan.given_up)


@dataclass
class StudyResult:
    name: str
    total: int
    already_done: int
    counts: Counter
    table: list[dict]
    interrupted: bool = False
    crashed_out: list[str] = field(default_factory=list)


def summarize(name: str, variants: list[Variant], trials: list[Trial], c, exp_id: str,
              metric: str, already: int, interrupted: bool, given_up: list[str]) -> StudyResult:
    wanted = {t.hash: t for t in trials}
    runs = [r for r in record.trial_runs(c, exp_id) if r.hash in wanted]
    finished = {r.hash: r for r in runs if r.status == "FINISHED"}
    failed = {r.hash for r in runs if r.status == "FAILED"}
    counts: Counter = Counter()
    for h in wanted:
        if h in finished:
            counts["finished"] += 1
            counts[finished[h].tags.get("ablab.outcome", "ok")] += 1
        elif h in failed:
            counts["failed"] += 1
        else:
            counts["missing"] += 1
    table = []
    for v in variants:
        vals = [finished[t.hash].metrics.get(metric) for t in trials
                if t.variant == v.name and t.hash in finished]
        vals = [x for x in vals if x is not None]
        table.append({"variant": v.name, "baseline": v.is_baseline, "n": len(vals),
                      **aggregate(vals, metric)})
    return StudyResult(name, len(trials), already, counts, table, interrupted, given_up)


def print_summary(res: StudyResult, metric: str, console: Console) -> None:
    t = Table(title=f"{res.name}: {metric} per variant (95% CI, Student t)")
    for col in ("variant", "n", "mean ± std", "95% CI"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for row in res.table:
        name = row["variant"] + (" (baseline)" if row["baseline"] else "")
        if row["n"] == 0:
            t.add_row(name, "0", "-", "-")
            continue
        t.add_row(name, str(row["n"]),
                  f"{row[f'mean_{metric}']:.4f} ± {row[f'std_{metric}']:.4f}",
                  f"[{row[f'ci95_low_{metric}']:.4f}, {row[f'ci95_high_{metric}']:.4f}]")
    console.print(t)
    c = res.counts
    console.print(
        f"trials: {c['finished']} finished ({c['ok']} ok, {c['collapsed']} collapsed, "
        f"{c['diverged']} diverged), {c['failed']} failed, {c['missing']} missing "
        f"of {res.total}; {res.already_done} were already done before this run.")
    if res.crashed_out:
        console.print(f"[red]{len(res.crashed_out)} trial(s) crashed their worker "
                      f"{MAX_ATTEMPTS} times and were given up.[/]")


class AblationHandler:
    """Worker side: a claimed trial carries its whole config; run it unless a finished run
    with its hash exists (another worker or an earlier session ran it)."""

    def __init__(self, queue: Queue, c, meta: dict[str, Any]):
        self.queue, self.c, self.metric = queue, c, meta["metric"]
        self.cache: dict = {}

    def run(self, job: Job) -> str:
        trial = Trial.from_attrs(job.attrs)
        trial = trial.replace(tags={**trial.tags, **job_tags(job, trial.study)})
        exp_id = tracking.get_or_create_experiment(self.c, trial.study)
        done = record.finished_run(self.c, exp_id, trial.hash)
        if done is not None:
            self.queue.finish(job, done.tags.get("ablab.outcome", "ok"),
                              done.metrics.get(self.metric), done.run_id)
            return "skipped"
        record.close_lost_attempts(self.c, exp_id, {"ablab.trial_hash": trial.hash},
                                   job.number)
        with claimed(self.queue, job):
            res = run_trial(trial, c=self.c, cache=self.cache)
        self.queue.finish(job, res.outcome, res.metrics.get(self.metric), res.run_id)
        if trial.parent_run_id:
            record.update_parent(self.c, exp_id, trial.parent_run_id, self.metric)
        return res.outcome
