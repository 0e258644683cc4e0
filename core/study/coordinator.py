"""The coordinator every study shares. A strategy (an ablation, a search) says what work the
study has; this class does the rest: open the queue and the MLflow record, recover from a
crash, pretrain `pretrain:` sources once, enqueue what is missing, keep a pool of workers busy
until the queue drains (restarting crashed ones, retrying their lost trials), stop cleanly on
Ctrl-C or SIGTERM, and hand over to the strategy's summary.

No scheduler of our own: workers claim trials through Optuna. On journal storage (no
heartbeats) the coordinator notices its own dead workers and fails + requeues their trials; on
RDB storage Optuna's heartbeats and `RetryHeartbeatStaleTrialCallback` do that, for workers
anywhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, RenderableType

from core import tracking
from core.errors import ConfigError
from core.lifecycle import ATTR_KEY, lost
from core.paths import default_storage, mlruns_dir
from core.pretrain import Source
from core.study import record
from core.study.options import RunOptions
from core.study.pool import Pool, PoolFactory, Supervisor, WorkerPool, WorkerProc
from core.study.progress import Display
from core.study.queue import MAX_ATTEMPTS, Queue, StudyMeta, check_storage, study_name
from core.study.rdb import Light
from core.study.slots import device_slots
from core.study.worker import worker_cmd

if TYPE_CHECKING:
    from mlflow import MlflowClient

POLL_S = 1.0
# A key's state in this run, from its queue trials: the highest-ranked wins, so a live retry
# outranks a finished attempt whose MLflow run is gone, and a finished one outranks a lost one.
STATE = {TrialState.COMPLETE: "done", TrialState.PRUNED: "done", TrialState.RUNNING: "running",
         TrialState.WAITING: "waiting", TrialState.FAIL: "fail"}
RANK = {"running": 4, "waiting": 3, "done": 2, "fail": 1, "missing": 0}


def key_states(keys: list[str], trials: Sequence[FrozenTrial | Light]) -> dict[str, str]:
    """The state of each key from all its queue trials (see RANK)."""
    out = dict.fromkeys(keys, "missing")
    for t in trials:
        k = t.user_attrs.get(ATTR_KEY)
        if k in out:
            s = "fail" if lost(t) or t.state == TrialState.FAIL else STATE[t.state]
            if RANK[s] > RANK[out[k]]:
                out[k] = s
    return out


def open_queue(storage: str, name: str, direction: str | list[str]) -> Queue:
    return Queue(storage, name, direction)


@dataclass
class Engine:
    """What a study runs on, handed to it: its queue, its tracking store, its worker pool
    and the command each worker runs. The defaults are the real ones; tests hand an
    in-memory Optuna storage and a stand-in pool, so the coordinator's decisions are tested
    without processes or TensorFlow."""

    open_queue: Callable[[str, str, str | list[str]], Queue] = open_queue
    client: Callable[[str], MlflowClient] = tracking.client
    pool: PoolFactory = Pool
    worker_cmd: Callable[[str, str, str], list[str]] = worker_cmd
    check_stores: bool = True  # fail fast on an unreachable store (off for in-memory ones)
    poll_s: float = POLL_S
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Plan:
    """What one `run` does: `total` work items in the study, `done` before this run, the keys
    it runs now and those given up after MAX_ATTEMPTS lost attempts."""

    total: int = 0
    done: int = 0
    keys: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)


class Study(ABC):
    kind: ClassVar[str]
    # True when the work grows as results come in (adaptive seeds): `pending` is asked again
    # whenever a trial ends, and what it adds is enqueued at once.
    grows: bool = False

    def __init__(self, spec, opts: RunOptions, engine: Engine | None = None):
        self.spec = spec
        self.opts = opts
        self.engine = engine or Engine()
        self.name: str = spec.name
        self.queue_name = study_name(self.kind, spec.name)
        self.tracking_uri = opts.tracking_uri or tracking.default_tracking_uri()
        self.storage = opts.storage or default_storage()
        self.console = opts.console or Console()
        self.sources: dict[str, Source] = {}  # `pretrain:` sources, read once by the strategy
        self.uris: dict[str, str] = {}  # their model URIs, once pretrained
        self.plan = Plan()

    # -- what a strategy says -----------------------------------------------------------------

    @abstractmethod
    def meta(self) -> StudyMeta:
        """What every worker needs from the coordinator (kind, metric, ...): stored in the
        queue, so a worker on another machine needs no file of ours."""

    @abstractmethod
    def pending(self, queue: Queue, c: MlflowClient, exp_id: str,
                at_start: bool) -> dict[str, dict[str, Any]]:
        """key -> user attrs of each work item still to do. `at_start`: the run begins (a
        failed trial is retried); later calls only replace lost ones."""

    @abstractmethod
    def header(self) -> str: ...

    def table(self, queue: Queue, c: MlflowClient, exp_id: str,
              changed: bool) -> RenderableType | None:
        """The live table under the progress bar; `changed`: a trial ended since the last
        call (re-read what it shows from the store only then)."""
        return None

    @abstractmethod
    def experiments(self) -> list:
        """The distinct configs the study trains (checked before anything is queued)."""

    def check_data(self) -> None:
        """What can be checked about the data, before an MLflow run exists: a folder's shape,
        its decoded cache (built here, once, for every worker on this machine), its
        unreadable images."""
        from core.data import check

        seen = set()
        for exp in self.experiments():
            key = exp.data.model_dump_json()
            if key not in seen:
                seen.add(key)
                check(exp.data, self.console)

    def may_have_work(self, queue: Queue) -> bool:
        """Cheap guess, before MLflow is opened, whether workers are worth starting early."""
        return True

    @abstractmethod
    def prepare(self, queue: Queue, c: MlflowClient, exp_id: str) -> None:
        """Strategy set-up in MLflow (parent runs) before anything is enqueued."""

    @abstractmethod
    def summarize(self, interrupted: bool) -> Any:
        """The study's result after `run` (also after an interrupted one)."""

    # -- the shared run -----------------------------------------------------------------------

    def run(self) -> Plan:
        """Returns the plan; raises KeyboardInterrupt after a clean stop."""
        eng = self.engine
        if eng.check_stores:
            tracking.check_reachable(self.tracking_uri)
            check_storage(self.storage)
        self.check_data()
        queue = eng.open_queue(self.storage, self.queue_name, self.spec.directions)
        pool = self._pool()
        queue.set_enqueuing(True)
        try:
            c = eng.client(self.tracking_uri)
            if not self.opts.enqueue_only and not self._missing_sources(c) \
                    and self.may_have_work(queue):
                pool.fill()  # their TensorFlow import overlaps our MLflow set-up
            exp_id = tracking.get_or_create_experiment(c, self.name)
            self.recover(queue, c, exp_id, pool.live_ids())
            self.pretrain(c)
            self.prepare(queue, c, exp_id)
            queue.set_meta(StudyMeta(kind=self.kind, study=self.name, metric=self.spec.metric,
                                     direction=self.spec.direction, **self.meta()))
            self._enqueue(queue, c, exp_id, at_start=True)
        except BaseException:
            pool.interrupt()
            raise
        finally:
            queue.set_enqueuing(False)
        self.c, self.exp_id, self.queue = c, exp_id, queue
        if self.opts.enqueue_only:
            self.console.print(f"{self.header()}\nqueued in {self.storage} as "
                               f"{self.queue_name!r}; start workers with: ablab worker "
                               f"{self.name} --storage {self.storage} --tracking-uri "
                               f"{self.tracking_uri}")
            if not self.grows or not self.plan.keys:
                return self.plan
            self.console.print("This study's work grows look by look: staying to take the "
                               "looks and enqueue each next block (Ctrl-C stops that, not "
                               "the workers; running this command again picks up).")
            self._drive(eng.pool(pool.cmd, [], pool.log_dir), queue, c, exp_id, own=False)
            return self.plan
        if not self.plan.keys:
            pool.interrupt()
            self.console.print(f"[bold]{self.name}[/]: all {self.total_items()} already done; "
                               "nothing to run.")
            return self.plan
        self.console.print(self.header())
        self._drive(pool, queue, c, exp_id)
        return self.plan

    def _pool(self) -> WorkerPool:
        cmd = self.engine.worker_cmd(self.queue_name, self.storage, self.tracking_uri)
        slots = device_slots(self.opts.workers, self.opts.per_gpu)
        return self.engine.pool(cmd, slots, mlruns_dir() / "logs" / tracking.slug(self.queue_name))

    def recover(self, queue: Queue, c: MlflowClient, exp_id: str, live: set[str]) -> None:
        """After a crash, SIGKILL or Ctrl-C: fail RUNNING trials whose worker is gone (with
        heartbeats, Optuna decides what is stale) and end their MLflow runs KILLED."""
        queue.fail_dead_workers(live)
        running = {t.number for t in queue.light((TrialState.RUNNING,))}
        record.kill_stale_runs(c, exp_id, running)

    # -- pretraining --------------------------------------------------------------------------

    def _missing_sources(self, c: MlflowClient) -> list[Source]:
        if not self.sources:
            return []
        from core.pretrain import find

        return [s for s in self.sources.values() if not find(c, s.hash)]

    def pretrain(self, c: MlflowClient) -> None:
        """Each source once, before any worker could race to do it, in a process of its own
        (the coordinator never imports TensorFlow); then every trial gets its model URI."""
        from core.pretrain import find

        for name, src in self.sources.items():
            uri = find(c, src.hash)
            if uri is None:
                self.console.print(f"pretraining [bold]{name}[/] once (reused by every "
                                   "trial)...")
                rc = subprocess.run([sys.executable, "-m", "core.cli", "pretrain", name,
                                     "--tracking-uri", self.tracking_uri]).returncode
                if rc != 0:
                    raise ConfigError(f"pretraining {name!r} failed (exit {rc}); its output "
                                      "is above. Nothing of the study was queued.")
                uri = find(c, src.hash)
                if uri is None:
                    raise ConfigError(f"pretrain:{name}: the source experiment changed while "
                                      "the study started; run the study again")
            self.uris[name] = uri

    # -- the queue ----------------------------------------------------------------------------

    def _enqueue(self, queue: Queue, c: MlflowClient, exp_id: str, at_start: bool) -> None:
        """Enqueue each pending item that has no live trial, unless it was lost
        MAX_ATTEMPTS times (its worker kept dying: given up and reported); the plan says
        what this run is responsible for."""
        items = self.pending(queue, c, exp_id, at_start)
        plan = Plan(given_up=list(self.plan.given_up))
        by_key = queue.by_key()
        batch: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        for key, attrs in items.items():
            tried = by_key.get(key, [])
            if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in tried):
                plan.keys.append(key)
                continue
            lost_attempts = [t for t in tried if lost(t)]
            if len(lost_attempts) >= MAX_ATTEMPTS:
                if key not in plan.given_up:
                    plan.given_up.append(key)
                continue
            batch.append(({**attrs, ATTR_KEY: key}, self.retry_params(queue, lost_attempts)))
            plan.keys.append(key)
        queue.enqueue_many(batch)
        if at_start:
            plan.done = self.total_items() - len(plan.keys) - len(plan.given_up)
        else:
            plan.keys = list(dict.fromkeys(self.plan.keys + plan.keys))
            plan.done = self.plan.done
        self.plan = plan

    @abstractmethod
    def total_items(self) -> int:
        """How many work items the study has in all (trials, or search tickets)."""

    def retry_params(self, queue: Queue, lost_attempts: list[Light]) -> dict[str, Any] | None:
        """Fixed parameters for a retry (searches retry the point the lost trial sampled)."""
        return None

    def states(self, queue: Queue) -> dict[str, str]:
        """The state of each key this run is responsible for (`key_states`)."""
        return key_states(self.plan.keys, queue.light())

    # -- the loop -----------------------------------------------------------------------------

    def _drive(self, pool: WorkerPool, queue: Queue, c: MlflowClient, exp_id: str,
               own: bool = True) -> None:
        """Until the queue drains, under the supervision loop `ablab worker` uses too.
        `own`: the workers are ours to stop on Ctrl-C (with --no-workers they are someone
        else's, and keep theirs)."""
        display = Display(self.name, len(self.plan.keys), self.console)
        seen = {"ended": -1, "flagged": 0.0}

        def step(crashed: list[WorkerProc]) -> bool:
            if crashed and not queue.has_heartbeat:
                self.recover(queue, c, exp_id, pool.live_ids())
                self._enqueue(queue, c, exp_id, at_start=False)
            queue.fail_stale()
            ended = queue.count((TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
            if self.grows:
                if time.monotonic() - seen["flagged"] > 30:  # workers wait between looks
                    queue.set_enqueuing(True)
                    seen["flagged"] = time.monotonic()
                if ended != seen["ended"]:  # a look may be possible: enqueue its next block
                    self._enqueue(queue, c, exp_id, at_start=False)
            state = self.states(queue)
            done = sum(s in ("done", "fail") for s in state.values())
            display.update(done, sum(s == "fail" for s in state.values()),
                           self.table(queue, c, exp_id, ended != seen["ended"]),
                           total=len(state))
            seen["ended"] = ended
            if not queue.has_work():
                return False
            if queue.count((TrialState.WAITING,)):
                pool.fill()
            return True

        sup = Supervisor(pool, self.console, self.engine.poll_s, self.engine.sleep)
        try:
            with display:
                sup.run(step, stop_workers=False)
        except KeyboardInterrupt:
            if self.grows:
                queue.set_enqueuing(False)
            if not own:
                raise
            self.console.print("\n[yellow]Interrupted: stopping workers, closing their "
                               "runs...[/]")
            pool.interrupt()
            self.recover(queue, c, exp_id, live=set())
            raise
        if self.grows:
            queue.set_enqueuing(False)  # no more blocks: idle workers may leave
        pool.wait()
