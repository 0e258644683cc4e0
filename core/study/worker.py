"""A worker: a long-lived process bound to one device slot. It imports TensorFlow once, keeps
data sets cached, claims trials from a study's queue, runs them, and clears the Keras session
between them. The same loop serves the local pool and `ablab worker` on other machines, for
ablations and searches alike: what a trial means is the strategy's handler, chosen by the
`kind` the coordinator stored in the queue."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

import optuna

from core import tracking
from core.errors import ConfigError
from core.runner import shielded
from core.study.queue import LIVE_STATES, Job, Queue, worker_id


class Handler(Protocol):
    def run(self, job: Job) -> str:
        """Run one claimed trial to its end (finishing it in the queue); returns its outcome."""


HandlerFactory = Callable[[Queue, Any, dict[str, Any]], Handler]


def start_tensorflow() -> None:
    from core.seeding import configure_gpus, quiet_tensorflow, silence_tf_python_logs

    quiet_tensorflow()
    import tensorflow  # noqa: F401  (imported once, up front)

    silence_tf_python_logs()
    configure_gpus()


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


def serve(queue_name: str, storage_uri: str, tracking_uri: str | None,
          handlers: dict[str, HandlerFactory], wait: bool = False) -> int:
    """Claim and run trials until the queue is empty (with `wait`: until the study has no
    WAITING or RUNNING trial left). Returns how many trials this worker ran."""
    start_tensorflow()
    queue = Queue(storage_uri, queue_name, create=False)
    c = tracking.client(tracking_uri)
    handler: Handler | None = None
    ran = 0
    who = worker_id()
    while True:
        queue.fail_stale()
        job = queue.claim(who)
        if job is None:
            if queue.enqueuing():
                time.sleep(0.3)
                continue
            if wait and queue.trials(LIVE_STATES):
                time.sleep(2.0)
                continue
            return ran
        if handler is None:
            meta = queue.meta
            handler = handlers[meta["kind"]](queue, c, meta)
        handler.run(job)
        ran += 1


def job_tags(job: Job, study: str) -> dict[str, str]:
    """Run tags that tie an MLflow run to its queue trial and worker."""
    return {"optuna.trial_number": str(job.number), "ablab.worker": worker_id(),
            "ablab.study": study}


@contextlib.contextmanager
def claimed(queue: Queue, job: Job):
    """Heartbeats while a claimed trial runs. A worker stopped mid-trial (Ctrl-C, SIGTERM)
    leaves it FAIL/killed, and the coordinator queues it again; an error of ours leaves it
    FAIL/failed (not retried) and ends the worker with its traceback in the log."""
    with queue.heartbeat(job.trial_id):
        try:
            yield
        except Exception:
            queue.finish(job, "failed", None, None)
            raise
        except BaseException:
            with shielded():
                queue.finish(job, "killed", None, None)
            raise
