"""A worker: a long-lived process bound to one device slot. It imports TensorFlow once, keeps
data sets cached, claims trials from a study's queue, runs them, and clears the Keras session
between them. The same loop serves the local pool and `ablab worker` on other machines, for
ablations and searches alike: what a trial means is the strategy's handler, chosen by the
`kind` the coordinator stored in the queue."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import optuna

from core import lifecycle, signals, tracking
from core.errors import ConfigError
from core.lifecycle import Outcome
from core.runner import shielded
from core.study.queue import LIVE_STATES, Job, Queue, StudyMeta, worker_id

if TYPE_CHECKING:
    from mlflow import MlflowClient


class Handler(Protocol):
    def run(self, job: Job) -> Outcome:
        """Run one claimed trial to its end (finishing it in the queue); returns its outcome."""


HandlerFactory = Callable[[Queue, "MlflowClient", StudyMeta], Handler]


def start_tensorflow() -> None:
    """Once, before the first claim: TensorFlow, and the modules every trial uses
    (matplotlib, scikit-learn's metrics, the model zoo), so the first trial's run does not
    carry their imports (~1 s of its 1.9 s of overhead)."""
    import importlib

    from core import plots
    from core.seeding import configure_gpus, import_tensorflow, silence_tf_python_logs

    import_tensorflow()  # once, up front
    silence_tf_python_logs()
    cap = os.environ.get("ABLAB_GPU_MEMORY_MB")
    configure_gpus(int(cap) if cap and cap.isdigit() else None)
    for module in ("core.runner", "core.evaluate", "core.models", "core.pack"):
        importlib.import_module(module)
    plots.warm()
    # What is loaded now lives as long as the worker: out of the collector's sight, a full
    # collection walks only what trials create (spikes of ~0.4 s inside some runs before)
    gc.freeze()


RECYCLE_GROWTH_MB = int(os.environ.get("ABLAB_RECYCLE_GROWTH_MB", 2048))


def rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def resolve_study(storage_uri: str, name: str, timeout_s: float = 0.0) -> str:
    """`head` -> the queue `ablation:head` or `search:head` in the storage (`kind:name` is
    taken as given); waits up to `timeout_s` for a coordinator to create it."""
    from core.study.queue import open_storage

    storage = open_storage(storage_uri)
    wanted = [name] if ":" in name else [f"ablation:{name}", f"search:{name}"]
    deadline = time.monotonic() + timeout_s
    while True:
        names = optuna.get_all_study_names(storage)
        for w in wanted:
            if w in names:
                return w
        if time.monotonic() >= deadline:
            known = ", ".join(sorted(names)) or "none"
            raise ConfigError(f"no study {name!r} in {storage_uri} (studies there: {known}); "
                              "start its coordinator first (ablab run/search ... "
                              "--no-workers)")
        time.sleep(0.5)


def typical_trial_s(c: MlflowClient, study: str) -> float | None:
    """The median wall time of the study's finished trial runs so far (None: none yet)."""
    exp = c.get_experiment_by_name(study)
    if exp is None:
        return None
    runs = tracking.search(c, exp.experiment_id, "attributes.status = 'FINISHED' and "
                           f"{lifecycle.role_filter(lifecycle.Role.TRIAL)}", max_results=200)
    took = sorted((r.info.end_time - r.info.start_time) / 1000 for r in runs
                  if r.info.end_time and r.info.start_time)
    return took[len(took) // 2] if took else None


def serve(queue_name: str, storage_uri: str, tracking_uri: str | None,
          handlers: dict[str, HandlerFactory], wait: bool = False,
          stop_at: float | None = None) -> int:
    """Claim and run trials until the queue is empty (with `wait`: until the study has no
    WAITING or RUNNING trial left). With `stop_at` (a time.time() the worker must be done
    by: its job's time limit), no trial is started that would not end by then, judged by the
    study's typical trial time (its finished runs', then this worker's own). Returns how
    many trials this worker ran."""
    start_tensorflow()
    queue = Queue(storage_uri, queue_name, create=False)
    c = tracking.client(tracking_uri)
    handler: Handler | None = None
    ran = 0
    who = worker_id()
    baseline = None
    typical = typical_trial_s(c, queue.name.partition(":")[2]) if stop_at else None
    spent = 0.0
    while True:
        if stop_at is not None and typical is not None and time.time() + typical > stop_at:
            print(f"worker {who}: {max(0.0, stop_at - time.time()):.0f} s left before the time "
                  f"limit, a trial takes ~{typical:.0f} s: stopping cleanly", flush=True)
            return ran
        queue.fail_stale()
        # From the claim to the trial's end in the queue, a stop waits for a safe point: a
        # batch boundary (the trial then ends preempted or killed, in the queue too), or the
        # end of the trial. Never between a claim and its trial's bookkeeping, where a
        # claimed trial would stay RUNNING with no heartbeat to retry it.
        t0 = time.time()
        with signals.protected():
            job = queue.claim(who)
            if job is not None:
                if handler is None:
                    meta = queue.meta
                    handler = handlers[meta["kind"]](queue, c, meta)
                handler.run(job)
        if job is None:
            if queue.enqueuing():
                time.sleep(0.3)
                continue
            if wait and queue.count(LIVE_STATES):
                time.sleep(2.0)
                continue
            return ran
        ran += 1
        spent += time.time() - t0
        typical = max(typical or 0.0, spent / ran)
        # A process whose memory keeps growing (Keras and TensorFlow do not give everything
        # back between models) is replaced by a fresh one between trials: exit cleanly, the
        # pool starts another while work is waiting.
        baseline = baseline or rss_mb()
        if rss_mb() - baseline > RECYCLE_GROWTH_MB:
            print(f"worker {who}: memory grew from {baseline:.0f} to {rss_mb():.0f} MB over "
                  f"{ran} trials; recycling the process", flush=True)
            return ran


def job_tags(job: Job, study: str) -> dict[str, str]:
    """Run tags that tie an MLflow run to its queue trial, worker and device slot."""
    return {lifecycle.QUEUE_NUMBER: str(job.number), lifecycle.WORKER: worker_id(),
            lifecycle.STUDY: study, lifecycle.SLOT: os.environ.get("ABLAB_SLOT", "cpu")}


@contextlib.contextmanager
def claimed(queue: Queue, *jobs: Job):
    """Heartbeats while claimed trials run (one, or a pack). A worker stopped mid-trial by
    Ctrl-C leaves them FAIL/killed, and the coordinator queues them again; one preempted
    (SIGTERM, SIGUSR1: core.signals) puts them back in the queue itself, each naming its run
    and checkpoint so the next worker continues it; an
    error of ours leaves them FAIL/failed (not retried) and ends the worker with its
    traceback in the log."""
    with contextlib.ExitStack() as beats:
        for job in jobs:
            beats.enter_context(queue.heartbeat(job.trial_id))
        try:
            yield
        except Exception as err:
            for job in jobs:
                queue.finish(job, Outcome.FAILED, error=f"{type(err).__name__}: {err}")
            raise
        except BaseException as stop:
            preempted = isinstance(stop, signals.Preempted)
            # the runs to resume, in the jobs' order
            runs = list(stop.run_ids) if isinstance(stop, signals.Preempted) else []
            with shielded():
                pack = len(jobs) > 1 and len(runs) == len(jobs)
                for i, job in enumerate(jobs):
                    queue.finish(job, Outcome.PREEMPTED if preempted else Outcome.KILLED,
                                 run_id=runs[i] if i < len(runs) else None,
                                 checkpoint_run=runs[0] if pack else None,
                                 partners=[j.trial_id for j in jobs] if pack else None)
            if preempted:
                print(f"preempted ({stop}): trial(s) {', '.join(str(j.number) for j in jobs)}"
                      " returned to the queue", flush=True)
            raise


def run_worker(study: str, storage: str | None, tracking_uri: str | None, wait: bool,
               gpus: str | None, per_gpu: int, workers: int | None, stop_after: float | None,
               handlers: dict[str, HandlerFactory], console) -> int:
    """`ablab worker`: one worker in this process, or a pool of them (several device slots).
    SIGTERM and SIGUSR1 preempt it (its trials go back to the queue); it starts no trial
    that would not end before `stop_after` seconds, or its SLURM job's time limit."""
    from core import signals
    from core.paths import default_storage
    from core.study.queue import check_storage

    signals.preemptible()
    stop_at = time.time() + stop_after if stop_after else job_end_time()
    storage = storage or default_storage()
    check_storage(storage)
    tracking.check_reachable(tracking_uri)
    name = resolve_study(storage, study, timeout_s=60.0)
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    if gpu_list or per_gpu > 1 or (workers or 1) > 1:
        if stop_at is not None:  # the pool's processes stop by the same time
            os.environ["ABLAB_STOP_AT"] = str(stop_at)
        return serve_pool(name, storage, tracking_uri, wait, gpu_list, per_gpu, workers,
                          console)
    return serve(name, storage, tracking_uri, handlers, wait=wait, stop_at=stop_at)


def job_end_time() -> float | None:
    """When this worker must be done (a time.time()): `ABLAB_STOP_AT` (set by a worker pool
    for its processes), else inside a SLURM job its time limit's end; else None."""
    import datetime as dt
    import subprocess

    if os.environ.get("ABLAB_STOP_AT"):
        return float(os.environ["ABLAB_STOP_AT"])
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True,
                             text=True, timeout=20).stdout.strip()
        return dt.datetime.fromisoformat(out).timestamp()
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None  # no limit known (INFINITE, N/A, squeue not reachable)


def serve_pool(queue_name: str, storage_uri: str, tracking_uri: str | None, wait: bool,
               gpus: list[str] | None, per_gpu: int, workers: int | None, console) -> int:
    """`ablab worker` on a machine with several device slots: one worker process per slot,
    restarted while the queue has work (after a crash or a memory recycle), stopped together
    on Ctrl-C; supervised by the loop the coordinator uses. Returns how many times a worker
    process was started."""
    from core.paths import mlruns_dir
    from core.study.pool import Pool, Supervisor
    from core.study.slots import device_slots
    from core.tracking import slug

    cmd = worker_cmd(queue_name, storage_uri, tracking_uri, wait)
    pool = Pool(cmd, device_slots(workers, per_gpu, gpus),
                mlruns_dir() / "logs" / slug(f"worker-{queue_name}"))
    queue = Queue(storage_uri, queue_name, create=False)
    console.print(f"{len(pool.slots)} worker process(es) on slots "
                  f"{', '.join(s['ABLAB_SLOT'] for s in pool.slots)}; logs in {pool.log_dir}")
    wanted = LIVE_STATES if wait else (optuna.trial.TrialState.WAITING,)

    def step(crashed) -> bool:
        if queue.count(wanted):
            pool.fill()
            return True
        return bool(pool.procs)

    pool.fill()
    Supervisor(pool, console).run(step)
    return pool.started


def worker_cmd(queue_name: str, storage_uri: str, tracking_uri: str | None,
               wait: bool = False) -> list[str]:
    """The command line of one worker process of a pool."""
    import sys

    return [sys.executable, "-m", "core.cli", "worker", queue_name, "--storage", storage_uri,
            *(["--tracking-uri", tracking_uri] if tracking_uri else []),
            *(["--wait"] if wait else [])]
