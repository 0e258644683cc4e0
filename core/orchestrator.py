"""The coordinator of one study: expand, skip what MLflow already has, enqueue the rest into the
Optuna queue once, keep a pool of worker processes alive until the queue drains, then summarize.

No scheduler of our own: workers claim trials through Optuna. On journal storage (no heartbeats)
the coordinator notices its own dead workers and fails + requeues their trials; on RDB storage
Optuna's heartbeats and `RetryHeartbeatStaleTrialCallback` do that, for workers anywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core import queue as q
from core import study as st
from core import tracking
from core.ablation import Ablation, Trial, expand_trials
from core.config import ConfigError
from core.paths import MLRUNS_DIR, default_storage
from core.stats import aggregate

POLL_S = 1.0


# ----------------------------------------------------------------------------- device slots


def gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def device_slots(workers: int | None, per_gpu: int = 1) -> list[dict[str, str]]:
    """One env per worker: each visible GPU (x per_gpu), or the CPU as one slot. `workers`
    overrides the count (round-robin over GPUs; on CPU, several CPU workers)."""
    n_gpu = gpu_count()
    if n_gpu:
        ids = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(n_gpu))))
        gpus = [g.strip() for g in ids.split(",") if g.strip()]
        slots = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus for _ in range(per_gpu)]
        if workers:
            slots = [slots[i % len(slots)] for i in range(workers)]
        return slots
    return [{"CUDA_VISIBLE_DEVICES": "-1"} for _ in range(workers or 1)]


# ----------------------------------------------------------------------------- worker pool


@dataclass
class WorkerProc:
    slot: int
    env: dict[str, str]
    proc: subprocess.Popen
    log: Path

    @property
    def id(self) -> str:
        return q.worker_id(self.proc.pid)


@dataclass
class Pool:
    cmd: list[str]
    slots: list[dict[str, str]]
    log_dir: Path
    procs: dict[int, WorkerProc] = field(default_factory=dict)
    crashes: int = 0
    started: int = 0

    def start(self, slot: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"worker-{slot}.log"
        env = {**os.environ, **self.slots[slot], "PYTHONUNBUFFERED": "1"}
        with open(log, "a") as fh:
            proc = subprocess.Popen(self.cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.procs[slot] = WorkerProc(slot, self.slots[slot], proc, log)
        self.started += 1

    def start_all(self) -> None:
        for slot in range(len(self.slots)):
            self.start(slot)

    def reap(self) -> list[WorkerProc]:
        """Workers that exited since the last call (crashed or done)."""
        gone = [w for w in self.procs.values() if w.proc.poll() is not None]
        for w in gone:
            del self.procs[w.slot]
            if w.proc.returncode != 0:
                self.crashes += 1
        return gone

    def interrupt(self, timeout_s: float = 60.0) -> None:
        """Ctrl-C reaches workers in our process group; signal them anyway (the coordinator
        alone may have been stopped), give them time to close their runs, then kill them.
        SIGTERM, which workers treat like Ctrl-C, also works where SIGINT is ignored."""
        for w in self.procs.values():
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for w in self.procs.values():
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()


# ----------------------------------------------------------------------------- the study


@dataclass
class StudyResult:
    name: str
    total: int
    already_done: int
    counts: Counter
    table: list[dict]
    interrupted: bool = False
    crashed_out: list[str] = field(default_factory=list)


class Coordinator:
    def __init__(self, ab: Ablation, seeds: int | None = None, workers: int | None = None,
                 sets: list[str] | None = None, tracking_uri: str | None = None,
                 storage: str | None = None, smoke: bool = False, per_gpu: int = 1,
                 console: Console | None = None):
        self.ab = ab
        self.trials: list[Trial] = expand_trials(ab, seeds, sets, smoke)  # validates first
        self.workers = workers
        self.per_gpu = per_gpu
        self.tracking_uri = tracking_uri or tracking.default_tracking_uri()
        self.storage = storage or default_storage()
        self.console = console or Console()
        self.name = ab.name
        self.study_name = q.study_name("ablation", ab.name)
        self.metric = ab.metric

    # -- setup -------------------------------------------------------------------------------

    def _recover(self, queue: q.Queue, c, exp_id: str, live: set[str]) -> None:
        """After a crash or SIGKILL: fail RUNNING trials whose worker is gone, end their MLflow
        runs as KILLED. With heartbeats, Optuna decides what is stale."""
        queue.fail_dead_workers(live)
        alive = {t.user_attrs.get("trial_hash") for t in queue.trials((TrialState.RUNNING,))}
        st.kill_stale_runs(c, exp_id, alive)

    def _enqueue(self, queue: q.Queue, pending: list[Trial],
                 parents: dict[str, str]) -> tuple[list[Trial], list[str]]:
        by_hash = queue.by_hash()
        queued, given_up = [], []
        for t in pending:
            states = [x.state for x in by_hash.get(t.hash, [])]
            if TrialState.WAITING in states or TrialState.RUNNING in states:
                queued.append(t)
                continue
            crashes = sum(1 for x in by_hash.get(t.hash, [])
                          if x.state == TrialState.FAIL and x.user_attrs.get("outcome") ==
                          "crashed")
            if crashes >= q.MAX_ATTEMPTS:
                given_up.append(t.hash)
                continue
            queue.enqueue(st.trial_attrs(self.name, self.name, t.variant, t.seed, t.hash,
                                         parents[t.variant.name], self.metric))
            queued.append(t)
        return queued, given_up

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> StudyResult:
        queue = q.Queue(self.storage, self.study_name, self.ab.direction)
        pool = self._pool()
        # Start workers before the MLflow set-up when the queue says work is left: their
        # TensorFlow import overlaps it. `enqueuing` keeps them from leaving an empty queue.
        done_in_queue = {t.user_attrs.get("trial_hash") for t in queue.trials(q.FINISHED_STATES)}
        sources = self._pretrain_sources()
        queue.set_enqueuing(True)
        try:
            if not sources and any(t.hash not in done_in_queue for t in self.trials):
                pool.start_all()
            c = tracking.client(self.tracking_uri)
            exp_id = tracking.get_or_create_experiment(c, self.name)
            self._recover(queue, c, exp_id, live={w.id for w in pool.procs.values()})
            finished = st.finished_by_hash(c, exp_id)
            variants = list({t.variant.name: t.variant for t in self.trials}.values())
            parents = st.ensure_parents(c, exp_id, self.name, variants, self.metric)
            pending = [t for t in self.trials if t.hash not in finished]
            given_up: list[str] = []
            if pending:
                self._pretrain(c, sources)
                pending, given_up = self._enqueue(queue, pending, parents)
        except BaseException:
            pool.interrupt(timeout_s=10)
            raise
        finally:
            queue.set_enqueuing(False)
        already = len(self.trials) - len(pending) - len(given_up)
        interrupted = False
        if pending:
            self.console.print(
                f"[bold]{self.name}[/]: {len(variants)} variants x "
                f"{len(self.trials) // max(len(variants), 1)} seeds = {len(self.trials)} trials; "
                f"{already} already done, {len(pending)} to run.")
            try:
                given_up += self._drive(pool, queue, c, exp_id, pending, parents)
            except KeyboardInterrupt:
                interrupted = True
        else:
            pool.interrupt(timeout_s=10)
            self.console.print(f"[bold]{self.name}[/]: all {len(self.trials)} trials already "
                               "finished; nothing to run.")
        for v in variants:
            st.update_parent(c, exp_id, parents[v.name], self.metric)
        return self._result(c, exp_id, already, interrupted, given_up)

    def _pretrain_sources(self) -> list[str]:
        from core.pretrain import source_name

        names = (source_name(t.variant.exp.model.weights) for t in self.trials)
        return sorted({n for n in names if n})

    def _pretrain(self, c, sources: list[str]) -> None:
        """Pretrain missing sources once, before any worker could race to do it."""
        from core import pretrain

        for name in sources:
            if pretrain.find(c, pretrain.source_experiment(name)):
                continue
            self.console.print(f"pretraining [bold]{name}[/] once (reused by every trial)...")
            rc = subprocess.run([sys.executable, "-m", "core.cli", "pretrain", name,
                                 "--tracking-uri", self.tracking_uri]).returncode
            if rc != 0:
                raise ConfigError(f"pretraining {name!r} failed (exit {rc}); its output is "
                                  "above. Nothing of the study was queued.")

    def _pool(self) -> Pool:
        cmd = [sys.executable, "-m", "core.cli", "worker", self.ab.path or self.name,
               "--storage", self.storage, "--tracking-uri", self.tracking_uri,
               "--study-name", self.study_name]
        slots = device_slots(self.workers, self.per_gpu)
        log_dir = MLRUNS_DIR / "logs" / tracking.slug(self.name)
        return Pool(cmd, slots, log_dir)

    def _drive(self, pool: Pool, queue: q.Queue, c, exp_id: str, pending: list[Trial],
               parents: dict[str, str]) -> list[str]:
        hashes = {t.hash for t in pending}
        variant_of = {t.hash: t.variant.name for t in pending}
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                            console=self.console, transient=False)
        task = progress.add_task(self.name, total=len(hashes), status="")
        if not pool.procs:
            pool.start_all()
        given_up: list[str] = []
        try:
            with Live(Group(progress), console=self.console, refresh_per_second=2,
                      transient=False) as live:
                while True:
                    self._handle_exits(pool, queue, exp_id, c, parents, given_up)
                    queue.fail_stale()
                    state = self._state(queue, hashes)
                    done = sum(1 for h in hashes if state[h] in ("done", "failed"))
                    fails = sum(1 for h in hashes if state[h] == "failed")
                    progress.update(task, completed=done,
                                    status=f"[red]{fails} failed[/]" if fails else "")
                    live.update(Group(progress, self._means_table(queue, variant_of)))
                    waiting = any(s == "waiting" for s in state.values())
                    running = any(s == "running" for s in state.values())
                    if not waiting and not running:
                        break
                    if waiting and not pool.procs:
                        pool.start_all()
                    time.sleep(POLL_S)
            self.console.print()  # the live display's last frame ends without a newline
        except KeyboardInterrupt:
            self.console.print("\n[yellow]Interrupted: stopping workers, closing their "
                               "runs...[/]")
            pool.interrupt()
            self._recover(queue, c, exp_id, live=set())
            raise
        for w in pool.procs.values():
            w.proc.wait()
        return given_up

    def _handle_exits(self, pool: Pool, queue: q.Queue, exp_id: str, c,
                      parents: dict[str, str], given_up: list[str]) -> None:
        gone = pool.reap()
        crashed = [w for w in gone if w.proc.returncode != 0]
        if not crashed:
            return
        for w in crashed:
            self.console.print(f"[yellow]worker {w.slot} (pid {w.proc.pid}) exited with "
                               f"{w.proc.returncode}; see {w.log}[/]")
        if not queue.has_heartbeat:
            live = {w.id for w in pool.procs.values()}
            self._recover(queue, c, exp_id, live)
            finished = st.finished_by_hash(c, exp_id)
            pending = [t for t in self.trials if t.hash not in finished]
            _, lost = self._enqueue(queue, pending, parents)
            given_up.extend(h for h in lost if h not in given_up)
        if pool.crashes > 10 * len(pool.slots):
            raise RuntimeError(f"workers keep crashing; see logs in {pool.log_dir}")
        for w in crashed:
            if queue.trials((TrialState.WAITING,)):
                pool.start(w.slot)

    @staticmethod
    def _state(queue: q.Queue, hashes: set[str]) -> dict[str, str]:
        out = dict.fromkeys(hashes, "missing")
        # A live trial outranks a finished one: an old COMPLETE trial whose MLflow run is gone
        # (store wiped) has been queued again, and that new trial is what counts.
        rank = {"running": 4, "waiting": 3, "done": 2, "failed": 1, "missing": 0}
        for t in queue.trials():
            h = t.user_attrs.get("trial_hash")
            if h not in out:
                continue
            s = {TrialState.COMPLETE: "done", TrialState.PRUNED: "done",
                 TrialState.RUNNING: "running", TrialState.WAITING: "waiting",
                 TrialState.FAIL: "failed"}[t.state]
            if rank[s] > rank[out[h]]:
                out[h] = s
        return out

    def _means_table(self, queue: q.Queue, variant_of: dict[str, str]) -> Table:
        vals: dict[str, list[float]] = {}
        for t in queue.trials((TrialState.COMPLETE,)):
            h = t.user_attrs.get("trial_hash")
            if h in variant_of and t.value is not None:
                vals.setdefault(variant_of[h], []).append(t.value)
        table = Table(box=None, show_header=True, pad_edge=False)
        table.add_column("variant")
        table.add_column("n", justify="right")
        table.add_column(f"running mean {self.metric}", justify="right")
        for name in dict.fromkeys(variant_of.values()):
            v = vals.get(name, [])
            table.add_row(name, str(len(v)), f"{sum(v) / len(v):.4f}" if v else "-")
        return table

    # -- summary -----------------------------------------------------------------------------

    def _result(self, c, exp_id: str, already: int, interrupted: bool,
                given_up: list[str]) -> StudyResult:
        wanted = {t.hash: t for t in self.trials}
        runs = [r for r in st.trial_runs(c, exp_id) if r.hash in wanted]
        finished = {r.hash: r for r in runs if r.status == "FINISHED"}
        counts: Counter = Counter()
        for h in wanted:
            if h in finished:
                counts["finished"] += 1
                counts[finished[h].tags.get("ablab.outcome", "ok")] += 1
            elif any(r.hash == h and r.status == "FAILED" for r in runs):
                counts["failed"] += 1
            else:
                counts["missing"] += 1
        table = []
        variants = {t.variant.name: t.variant for t in self.trials}
        for v in variants.values():
            vals = [finished[t.hash].metrics.get(self.metric) for t in self.trials
                    if t.variant.name == v.name and t.hash in finished]
            vals = [x for x in vals if x is not None]
            agg = aggregate(vals, self.metric)
            table.append({"variant": v.name, "baseline": v.is_baseline, "n": len(vals), **agg})
        return StudyResult(self.name, len(self.trials), already, counts, table, interrupted,
                           given_up)


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
                      f"{q.MAX_ATTEMPTS} times and were given up.[/]")
