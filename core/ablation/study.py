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
from core.ablation.adaptive import Replay
from core.ablation.spec import Ablation, Variant, expand
from core.runner import run_pack, run_trial
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
        # Adaptive seeds: the study grows look by look while it runs.
        self.seed_plan = ab.seed_plan(seeds)
        self.grows = self.seed_plan is not None
        self.replay: Replay | None = None

    def meta(self) -> dict[str, Any]:
        return {}

    def experiments(self) -> list:
        return [v.exp for v in self.variants]

    def total_items(self) -> int:
        return len(self.wanted())

    def wanted(self) -> list[Trial]:
        """The trials the study runs: all of them, or with adaptive seeds those the plan
        asks for after the last look."""
        if self.replay is None:
            return self.trials
        return [t for t in self.trials if t.seed < self.replay.seeds_of(t.variant)]

    def header(self) -> str:
        n = len(self.variants)
        if self.seed_plan is not None:
            return (f"[bold]{self.name}[/]: {n} variants, {self.seed_plan}; "
                    f"{self.plan.done} trials already done, {len(self.plan.keys)} to run "
                    "now, more only for variants still open after a look.")
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
        runs = record.trial_runs(c, exp_id)
        if self.seed_plan is not None:
            self.replay = self._replay(runs)
        finished = {r.hash for r in runs if r.status == "FINISHED"}
        failed = set() if at_start else {
            t.user_attrs.get("key") for t in queue.trials((TrialState.FAIL,))
            if t.user_attrs.get("outcome") == "failed"}
        return {t.hash: self._ready(t).to_attrs() for t in self.wanted()
                if t.hash not in finished and t.hash not in failed}

    def _replay(self, runs: list[record.TrialRun]) -> Replay:
        """The sequential rule on what reached MLflow: a pure function of the store."""
        import pandas as pd

        from core.ablation.report import replay_runs

        of = {t.hash: t for t in self.trials}
        rows = pd.DataFrame([{"variant": of[r.hash].variant, "seed": of[r.hash].seed,
                              "status": r.status, "start_time": r.run.info.start_time,
                              "outcome": r.tags.get("ablab.outcome"), **r.metrics}
                             for r in runs if r.hash in of])
        base = next(v.name for v in self.variants if v.is_baseline)
        return replay_runs(rows, [v.name for v in self.variants], base, self.seed_plan,
                           self.ab.metric, self.ab.direction, self.ab.delta,
                           self.ab.missing_as)

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
        rep = self.replay
        if rep is not None:
            table.add_column("after the last look")
        for v in self.variants:
            x = vals.get(v.name, [])
            row = [v.name, str(len(x)), f"{sum(x) / len(x):.4f}" if x else "-"]
            if rep is not None:
                d = rep.decisions.get(v.name)
                row.append("baseline" if d is None else
                           f"{d.state} at n={d.n}" if d.decided else
                           f"open, next look at n={rep.seeds_of(v.name)}")
            table.add_row(*row)
        return table

    def summarize(self, interrupted: bool) -> StudyResult:
        c = tracking.client(self.tracking_uri)
        exp_id = tracking.get_or_create_experiment(c, self.name)
        for v in self.variants:
            if v.name in self.parents:
                record.update_parent(c, exp_id, self.parents[v.name], self.ab.metric)
        decisions = []
        if self.seed_plan is not None:
            self.replay = self._replay(record.trial_runs(c, exp_id))
            decisions = self._tag_decisions(c)
        res = summarize(self.name, self.variants, self.wanted(), c, exp_id, self.ab.metric,
                        self.plan.done, interrupted, self.plan.given_up)
        res.decisions = decisions
        return res

    def _tag_decisions(self, c) -> list[dict]:
        """Each variant's parent says where the sequential rule left it."""
        rows = []
        for v in self.variants:
            pid = self.parents.get(v.name)
            n = self.replay.seeds_of(v.name)
            if v.is_baseline:
                tags = {"ablab.decision": "baseline", "ablab.n_seeds": n}
            else:
                d = self.replay.decisions[v.name]
                tags = {"ablab.decision": d.state, "ablab.decision_why": d.why(),
                        "ablab.n_seeds": d.n}
                rows.append({"variant": v.name, "decision": d.state, "n": d.n,
                             "why": d.why()})
            if pid:
                tracking.set_tags(c, pid, tags)
        return rows


@dataclass
class StudyResult:
    name: str
    total: int
    already_done: int
    counts: Counter
    table: list[dict]
    interrupted: bool = False
    crashed_out: list[str] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # adaptive seeds: per variant


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
    if res.decisions:
        d = Table(title=f"{res.name}: adaptive seeds, where each variant stopped")
        for col in ("variant", "decision", "seeds", "why"):
            d.add_column(col)
        for r in res.decisions:
            d.add_row(r["variant"], r["decision"], str(r["n"]), r["why"])
        console.print(d)
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
        """One trial, or with `train.pack: K` a pack: this trial and up to K - 1 queued
        trials of the same config (other seeds), claimed now and trained together."""
        first = Trial.from_attrs(job.attrs)
        k = pack_size(first)
        jobs = [job, *self.queue.claim_like(job, k - 1)] if k > 1 else [job]
        todo = []
        for j in jobs:
            trial = first if j is job else Trial.from_attrs(j.attrs)
            trial = trial.replace(tags={**trial.tags, **job_tags(j, trial.study)})
            exp_id = tracking.get_or_create_experiment(self.c, trial.study)
            done = record.finished_run(self.c, exp_id, trial.hash)
            if done is not None:
                self.queue.finish(j, done.tags.get("ablab.outcome", "ok"),
                                  done.metrics.get(self.metric), done.run_id)
                continue
            record.close_lost_attempts(self.c, exp_id, {"ablab.trial_hash": trial.hash},
                                       j.number)
            todo.append((j, trial))
        if not todo:
            return "skipped"
        with claimed(self.queue, *(j for j, _ in todo)):
            if len(todo) == 1:
                results = [run_trial(todo[0][1], c=self.c, cache=self.cache)]
            else:
                results = run_pack([t for _, t in todo], c=self.c, cache=self.cache)
        for (j, _), res in zip(todo, results, strict=True):
            self.queue.finish(j, res.outcome, res.metrics.get(self.metric), res.run_id)
        trial = todo[0][1]
        if trial.parent_run_id:
            record.update_parent(self.c, exp_id, trial.parent_run_id, self.metric)
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
    from core.seeding import device_name

    return pack.size(trial.exp, device_name(), lambda: pack.n_params(trial.exp))
