"""Issue 29: how long a preempted worker takes from SIGTERM to its trial back in the queue with
its checkpoint written, on a busy machine (two other CPU-bound processes on the 2 cores): the
figure `ablab launch k8s`'s terminationGracePeriodSeconds (core/launch/k8s.py) and SLURM's
KillWait (30 s) must cover.

One `ten_seed_baseline` trial (32x32 digits, 3 conv blocks, 20 epochs) is enqueued; an
`ablab worker` trains it and is SIGTERMed mid-epoch; a new worker resumes it; three times.

    .venv/bin/python -m bench.preempt
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

NAME = "ten_seed_baseline"
STOP_AT = (3, 8, 13)  # epochs done when each SIGTERM is sent


def main() -> None:
    import optuna
    from mlflow import MlflowClient

    from core.study.queue import open_storage
    from tests.conftest import ROOT, migrated_store, run_cli

    tmp = Path(tempfile.mkdtemp(prefix="ablab-preempt-"))
    uri, storage = migrated_store(tmp), str(tmp / "q.journal")
    env = {**os.environ, "ABLAB_MLRUNS": str(tmp)}
    common = ["--storage", storage, "--tracking-uri", uri]
    proc = run_cli("run", NAME, "--seeds", "1", "--no-workers", *common, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    c = MlflowClient(uri)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    took = []
    try:
        for at in STOP_AT:
            worker = subprocess.Popen([sys.executable, "-m", "core.cli", "worker", NAME,
                                       *common], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
            run_id = None
            while run_id is None or len(c.get_metric_history(run_id, "loss")) < at:
                time.sleep(0.1)
                exp = c.get_experiment_by_name(NAME)
                runs = c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") \
                    if exp else []
                run_id = runs[0].info.run_id if runs else None
            time.sleep(0.4)  # into the epoch
            worker.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            n = len(took) + 1
            while True:
                t = optuna.load_study(study_name=f"ablation:{NAME}",
                                      storage=open_storage(storage)).trials[0]
                if t.user_attrs.get("preemptions") == n and t.state.name == "WAITING":
                    break
                time.sleep(0.05)
            took.append(time.monotonic() - t0)
            worker.communicate(timeout=120)
            print(f"preemption {n} (after epoch {at}): back in the queue with its checkpoint "
                  f"in {took[-1]:.1f} s", flush=True)
        worker = subprocess.Popen([sys.executable, "-m", "core.cli", "worker", NAME, *common],
                                  cwd=ROOT, env=env)
        worker.wait(timeout=600)
    finally:
        for b in busy:
            b.kill()
    run = c.get_run(run_id)
    print(f"SIGTERM -> back in the queue, 2 busy processes on 2 cores: max {max(took):.1f} s, "
          f"mean {sum(took) / len(took):.1f} s")
    print(f"the trial: {run.info.status}, preempted {run.data.tags.get('ablab.preemptions')}x, "
          f"{run.data.metrics.get('epochs_trained'):.2f} epochs trained, "
          f"{run.data.metrics.get('epochs_trained_twice'):.2f} twice")


if __name__ == "__main__":
    main()
