"""A worker: a long-lived process bound to one device slot. It imports TensorFlow once, keeps
data sets cached, claims trials from the Optuna queue, runs them, and clears the Keras session
between them. The same loop serves the local pool and `ablab worker` on other machines."""

from __future__ import annotations

import time

from core import queue as q
from core import study as st
from core import tracking
from core.config import experiment_from_dict
from core.trial import TrialSpec, run_trial


def run_job(job: q.Job, queue: q.Queue, c, cache: dict) -> str:
    a = job.attrs
    metric = a["metric"]
    exp_id = tracking.get_or_create_experiment(c, a["mlflow_experiment"])
    done = st.finished_run(c, exp_id, job.hash)
    if done is not None:  # another worker (or an earlier session) already ran it
        queue.finish(job, done.tags.get("ablab.outcome", "ok"), done.metrics.get(metric),
                     done.run_id)
        return "skipped"
    spec = TrialSpec(
        experiment_from_dict(job.config, f"trial {job.hash}"), int(a["seed"]),
        experiment_name=a["mlflow_experiment"], run_name=f"{a['variant']} seed={a['seed']}",
        parent_run_id=a.get("parent_run_id"),
        tags={"ablab.variant": a["variant"], "ablab.study": a["study"],
              "ablab.optuna_trial": str(job.number), "ablab.worker": q.worker_id()},
    )
    with queue.heartbeat(job.trial_id):
        try:
            res = run_trial(spec, c=c, cache=cache)
        except BaseException:
            queue.finish(job, "killed", None, None)
            raise
    queue.finish(job, res.outcome, res.metrics.get(metric), res.run_id)
    if a.get("parent_run_id"):
        st.update_parent(c, exp_id, a["parent_run_id"], metric)
    return res.outcome


def serve(study_name: str, storage_uri: str, tracking_uri: str | None, wait: bool = False,
          startup_timeout_s: float = 60.0) -> int:
    """Claim and run trials until the queue is empty (with `wait`: until the study has no
    WAITING or RUNNING trial left). Returns how many trials this worker ran."""
    from core.seeding import configure_gpus, quiet_tensorflow, silence_tf_python_logs

    quiet_tensorflow()
    import tensorflow  # noqa: F401  (imported once, up front)

    silence_tf_python_logs()
    configure_gpus()
    deadline = time.monotonic() + startup_timeout_s
    queue = q.Queue.existing(storage_uri, study_name)
    while queue is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"no study {study_name!r} in {storage_uri}")
        time.sleep(0.5)
        queue = q.Queue.existing(storage_uri, study_name)
    c = tracking.client(tracking_uri)
    cache: dict = {}
    ran = 0
    who = q.worker_id()
    while True:
        queue.fail_stale()
        job = queue.claim(who)
        if job is None:
            if queue.enqueuing():
                time.sleep(0.3)
                continue
            if wait and queue.trials((q.TrialState.WAITING, q.TrialState.RUNNING)):
                time.sleep(2.0)
                continue
            return ran
        run_job(job, queue, c, cache)
        ran += 1
