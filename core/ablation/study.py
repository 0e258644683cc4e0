"""The ablation strategy: every variant x seed is one queued trial carrying its whole config;
a variant's parent run in MLflow holds its aggregates; the summary is a table per variant."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from optuna.trial import TrialState
from rich.console import Console, RenderableType

from core import lifecycle, termtable, tracking
from core.ablation.adaptive import Replay, replay_runs
from core.ablation.analysis import variant_table
from core.ablation.parents import parent_table
from core.ablation.render import VARIANT_COLUMNS, Column, live_table, show
from core.ablation.runs import load_runs
from core.ablation.spec import Ablation, expand
from core.lifecycle import ATTR_KEY, Outcome, Role, failed_on_its_own
from core.study import record
from core.study.coordinator import Engine, Study
from core.study.options import RunOptions
from core.study.queue import MAX_ATTEMPTS, Queue, StudyMeta
from core.trial import Trial, source_name

if TYPE_CHECKING:
    from mlflow import MlflowClient


class AblationStudy(Study):
    kind = "ablation"

    def __init__(self, ab: Ablation, opts: RunOptions, seeds: int | None = None,
                 engine: Engine | None = None):
        super().__init__(ab, opts, engine)
        self.ab = ab
        self.variants, self.trials, self.sources = expand(ab, seeds, opts.sets, opts.smoke)
        self.parents: dict[str, str] = {}
        # Adaptive seeds: the study grows look by look while it runs.
        self.seed_plan = ab.seed_plan(seeds)
        self.grows = self.seed_plan is not None
        self.replay: Replay | None = None
        self.baseline = next(v.name for v in self.variants if v.is_baseline)
        self._live: RenderableType | None = None

    def meta(self) -> StudyMeta:
        return StudyMeta(missing_as=self.ab.missing_as)

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
        done = {t.user_attrs.get(ATTR_KEY) for t in queue.light((TrialState.COMPLETE,
                                                                  TrialState.PRUNED))}
        return any(t.hash not in done for t in self.trials)

    def prepare(self, queue: Queue, c: MlflowClient, exp_id: str) -> None:
        """Get or create each variant's parent run, keyed by its config (not just its name),
        so changing the base config gives new parents instead of mixing results."""
        for v in self.variants:
            self.parents[v.name] = record.role_run(
                c, exp_id, Role.VARIANT, {lifecycle.VARIANT: v.name,
                                          lifecycle.VARIANT_HASH: v.hash},
                v.name, tags={lifecycle.STUDY: self.name, lifecycle.BASELINE: v.is_baseline,
                              lifecycle.METRIC: self.ab.metric},
                params={**v.exp.flat(), "variant": v.name})

    def _ready(self, t: Trial) -> Trial:
        src = source_name(t.exp.model.weights)
        return t.replace(parent_run_id=self.parents[t.variant],
                         weights_uri=self.uris.get(src) if src else None)

    def pending(self, queue: Queue, c: MlflowClient, exp_id: str,
                at_start: bool) -> dict[str, dict[str, Any]]:
        """Trials without a finished MLflow run (the store is the truth: a COMPLETE queue
        trial whose run is gone runs again). After a crash, a trial that failed on its own
        is not retried within the same run."""
        runs = record.trial_runs(c, exp_id)
        if self.seed_plan is not None:
            self.replay = self._replay(runs)
        finished = {r.hash for r in runs if r.status == "FINISHED"}
        failed = set() if at_start else {
            t.user_attrs.get(ATTR_KEY) for t in queue.light((TrialState.FAIL,))
            if failed_on_its_own(t)}
        return {t.hash: dict(self._ready(t).to_attrs()) for t in self.wanted()
                if t.hash not in finished and t.hash not in failed}

    def _replay(self, runs: list[record.TrialRun]) -> Replay:
        """The sequential rule on what reached MLflow: a pure function of the store."""
        from core.ablation.runs import frame, run_row

        of = {t.hash: t for t in self.trials}
        rows = frame([run_row(r.run) for r in runs if r.hash in of])
        assert self.seed_plan is not None
        return replay_runs(rows, [v.name for v in self.variants], self.baseline,
                           self.seed_plan, self.ab.metric, self.ab.direction, self.ab.delta,
                           self.ab.missing_as)

    def table(self, queue: Queue, c: MlflowClient, exp_id: str,
              changed: bool) -> RenderableType | None:
        """The variants' aggregates as their parent runs hold them (what the report and the
        MLflow UI show too), re-read when a trial ended; with adaptive seeds, where each
        variant stands after the last look."""
        if not changed and self._live is not None:
            return self._live
        df = parent_table(c, exp_id, self.parents, self.baseline, self.ab.metric)
        columns = list(VARIANT_COLUMNS)
        rep = self.replay
        if rep is not None:
            df["look"] = [self._look(rep, v) for v in df["variant"]]
            columns.append(Column("after the last look", lambda r, f: r.look, ("look",),
                                  live=True))
        self._live = live_table(columns, df)
        return self._live

    @staticmethod
    def _look(rep: Replay, variant: str) -> str:
        d = rep.decisions.get(variant)
        return ("baseline" if d is None else f"{d.state} at n={d.n}" if d.decided else
                f"open, next look at n={rep.seeds_of(variant)}")

    def summarize(self, interrupted: bool) -> StudyResult:
        c = self.engine.client(self.tracking_uri)
        exp_id = tracking.get_or_create_experiment(c, self.name)
        decisions = []
        if self.seed_plan is not None:
            self.replay = self._replay(record.trial_runs(c, exp_id))
            decisions = self._tag_decisions(c)
        res = summarize(self.name, self.wanted(), c, exp_id, self.ab, self.plan.done,
                        interrupted, self.plan.given_up)
        res.decisions = decisions
        return res

    def _tag_decisions(self, c: MlflowClient) -> list[dict]:
        """Each variant's parent says where the sequential rule left it."""
        rows = []
        rep = self.replay
        assert rep is not None
        for v in self.variants:
            pid = self.parents.get(v.name)
            n = rep.seeds_of(v.name)
            tags: dict[str, Any]
            if v.is_baseline:
                tags = {lifecycle.DECISION: "baseline", lifecycle.N_SEEDS: n}
            else:
                d = rep.decisions[v.name]
                tags = {lifecycle.DECISION: d.state, lifecycle.DECISION_WHY: d.why(),
                        lifecycle.N_SEEDS: d.n}
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
    table: pd.DataFrame  # analysis.variant_table
    interrupted: bool = False
    crashed_out: list[str] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # adaptive seeds: per variant


def summarize(name: str, trials: list[Trial], c: MlflowClient, exp_id: str, ab: Ablation,
              already: int, interrupted: bool, given_up: list[str]) -> StudyResult:
    """What `ablab run` prints at the end: trial counts by outcome, and each variant's
    aggregates counted as the report and the parent runs count them (`missing_as`)."""
    wanted = {t.hash: t for t in trials}
    runs = [r for r in record.trial_runs(c, exp_id) if r.hash in wanted]
    finished = {r.hash: r for r in runs if r.status == Outcome.OK.status}
    failed = {r.hash for r in runs if r.status == Outcome.FAILED.status}
    counts: Counter = Counter()
    for h in wanted:
        if h in finished:
            counts["finished"] += 1
            counts[finished[h].outcome.value] += 1
        elif h in failed:
            counts[Outcome.FAILED.value] += 1
        else:
            counts["missing"] += 1
    loaded = load_runs(name, c=c)
    table = variant_table(loaded, ab.metric, ab.direction, ab.missing_as) if len(loaded) \
        else pd.DataFrame()
    return StudyResult(name, len(trials), already, counts, table, interrupted, given_up)


def print_summary(res: StudyResult, metric: str, console: Console) -> None:
    if len(res.table):
        show(console, VARIANT_COLUMNS, res.table,
             f"{res.name}: {metric} per variant (95% CI, Student t)", live=True)
    if res.decisions:
        termtable.show(console, ("variant", "decision", "seeds", "why"),
                       [(r["variant"], r["decision"], str(r["n"]), r["why"])
                        for r in res.decisions],
                       f"{res.name}: adaptive seeds, where each variant stopped")
    c = res.counts
    ok, gone, div, fail = (c[o.value] for o in (Outcome.OK, Outcome.COLLAPSED,
                                                 Outcome.DIVERGED, Outcome.FAILED))
    console.print(
        f"trials: {c['finished']} finished ({ok} ok, {gone} collapsed, {div} diverged), "
        f"{fail} errors, {c['missing']} missing of {res.total}; {res.already_done} were "
        "already done before this run.")
    if res.crashed_out:
        console.print(f"[red]{len(res.crashed_out)} trial(s) crashed their worker "
                      f"{MAX_ATTEMPTS} times and were given up.[/]")
