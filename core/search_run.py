"""The coordinator of a search: create the Optuna study and the MLflow parent run, recover
after crashes, split the trials still missing up to the requested total between worker
processes (each runs Optuna's optimize loop), show progress, then finalize."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core import queue as q
from core import tracking
from core.orchestrator import device_slots
from core.paths import MLRUNS_DIR, default_storage
from core.search import Search, base_raw, experiment_for


def parent_run(c, exp_id: str, s: Search) -> str:
    found = tracking.search(c, exp_id, "tags.`ablab.role` = 'search'", max_results=1)
    if found:
        return found[0].info.run_id
    run = c.create_run(exp_id, run_name=f"search {s.name}",
                       tags={"ablab.role": "search", "ablab.study": s.name,
                             "optuna.study": s.study_name, "ablab.metric": s.metric})
    tracking.log_params(c, run.info.run_id, {"sampler": s.sampler, "pruner":
                                             s.pruner_spec.type, "metric": s.metric,
                                             "direction": s.direction,
                                             "seeds_per_trial": s.seeds_per_trial,
                                             "space": s.model_dump_json(include={"space"})})
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def recover(queue: q.Queue, c, exp_id: str) -> None:
    """Fail the trials of dead workers; their MLflow runs left RUNNING end KILLED."""
    queue.fail_dead_workers()
    running = {str(t.number) for t in queue.trials((TrialState.RUNNING,))}
    for r in tracking.search(c, exp_id, "attributes.status = 'RUNNING'"):
        if r.data.tags.get("optuna.trial_number") not in running:
            tracking.set_tags(c, r.info.run_id, {"ablab.outcome": "killed",
                                                 "optuna.state": "FAIL"})
            c.set_terminated(r.info.run_id, "KILLED")


def split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k) if n // k + (i < n % k)]


def run_search(s: Search, trials: int | None = None, workers: int | None = None,
               sets: list[str] | None = None, tracking_uri: str | None = None,
               storage: str | None = None, smoke: bool = False,
               console: Console | None = None) -> dict:
    console = console or Console()
    total = trials or s.n_trials
    raw = base_raw(s, sets, smoke)
    first = {k: (p.choices[0] if p.type == "categorical" else p.low) for k, p in s.space.items()}
    experiment_for(raw, first, f"search {s.name}")  # a bad space fails here, not in a worker
    storage = storage or default_storage()
    tracking_uri = tracking_uri or tracking.default_tracking_uri()
    queue = q.Queue(storage, s.study_name, s.direction)
    study = queue.study
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, s.name)
    study.set_user_attr("mlflow_parent_run_id", parent_run(c, exp_id, s))
    recover(queue, c, exp_id)
    existing = len([t for t in study.get_trials(deepcopy=False)
                    if t.state != TrialState.WAITING])
    remaining = max(0, total - existing)
    interrupted = False
    if remaining:
        k = min(len(device_slots(workers)), remaining)
        console.print(f"[bold]{s.name}[/]: {existing} trial(s) in the study, running "
                      f"{remaining} more on {k} worker(s) (sampler {s.sampler}, pruner "
                      f"{s.pruner_spec.type}).")
        interrupted = _drive(s, study, storage, tracking_uri, remaining, workers, sets, smoke,
                             console)
        recover(queue, c, exp_id)
    else:
        console.print(f"[bold]{s.name}[/]: the study already has {existing} trial(s) >= "
                      f"{total}; nothing to run.")
    from core.search_report import finalize

    summary = finalize(s, study, raw, c, exp_id, console)
    summary["interrupted"] = interrupted
    return summary


def _drive(s: Search, study: optuna.Study, storage: str, tracking_uri: str, remaining: int,
           workers: int | None, sets: list[str] | None, smoke: bool, console: Console) -> bool:
    slots = device_slots(workers)[:remaining]
    counts = split(remaining, len(slots))
    log_dir = MLRUNS_DIR / "logs" / tracking.slug(f"search-{s.name}")
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, (env, n) in enumerate(zip(slots, counts, strict=False)):
        cmd = [sys.executable, "-m", "core.cli", "search-worker", s.path, "--storage", storage,
               "--tracking-uri", tracking_uri, "--n-trials", str(n), "--worker-index", str(i)]
        cmd += [a for kv in (sets or []) for a in ("--set", kv)] + (["--smoke"] if smoke else [])
        with open(log_dir / f"worker-{i}.log", "a") as fh:
            procs.append(subprocess.Popen(cmd, env={**os.environ, **env}, stdout=fh,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    start = {t.number for t in study.get_trials(deepcopy=False)}
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task(s.name, total=remaining, status="")
    try:
        with progress:
            while any(p.poll() is None for p in procs):
                new = [t for t in study.get_trials(deepcopy=False) if t.number not in start]
                done = [t for t in new if t.state.is_finished()]
                pruned = sum(t.state == TrialState.PRUNED for t in done)
                failed = sum(t.state == TrialState.FAIL for t in done)
                best = _best(study)
                progress.update(task, completed=len(done), status=(
                    f"pruned {pruned} failed {failed}"
                    + (f" best {s.metric}={best:.4f}" if best is not None else "")))
                time.sleep(1.0)
            progress.update(task, completed=len([t for t in study.get_trials(deepcopy=False)
                                                 if t.number not in start
                                                 and t.state.is_finished()]))
    except KeyboardInterrupt:
        console.print("\n[yellow]Interrupted: stopping search workers...[/]")
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # handled like Ctrl-C by the worker
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        return True
    bad = [i for i, p in enumerate(procs) if p.returncode != 0]
    if bad:
        console.print(f"[yellow]search worker(s) {bad} exited with an error; see {log_dir}[/]")
    return False


def _best(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:
        return None
