"""On the clusters where ablations run. README's SLURM recipe on a real one-node SLURM (two
fake GPUs): a task requeued mid-trial loses nothing. Without SLURM: a worker SIGTERMed
mid-trial puts its trial back with no coordinator alive. And the Kubernetes Indexed Job
validates against Kubernetes' schema, offline."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from core.launch.slurm import KILL_WAIT_S
from tests.conftest import ROOT, migrated_store, run_cli
from tests.e2e import slurm
from tests.e2e.helpers import store, trial_runs

pytestmark = pytest.mark.e2e

NAME = "head"
CELLS = 3 * 2  # head: 3 variants, --seeds 2
EPOCHS = 10  # smoke trials of 2 epochs end too fast to catch one mid-training reliably
PREEMPT_AT = 7  # epochs done when the worker's SIGTERM is sent


def recipe() -> list[list[str]]:
    """The `ablab ...` commands of README's SLURM recipe, in order."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- recipe:slurm -->\n```bash\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0])[1:] for line in block.splitlines()
            if line.startswith("ablab ")]


def queue_states(storage: str) -> list[str]:
    study = optuna.load_study(study_name=f"ablation:{NAME}", storage=_storage(storage))
    return sorted(t.state.name for t in study.trials)


def _storage(path: str):
    from core.study.queue import open_storage

    return open_storage(path)


def wait_until(what, timeout_s: float, every: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what.__name__}"
        time.sleep(every)


def running_run(uri: str, at_epoch: int = 0):
    """A trial run in training, `at_epoch` epochs done and at most one more, so that a stop
    sent now lands mid-training, not while the trial is already being recorded."""
    c = MlflowClient(uri)
    for r in trial_runs(uri, NAME):
        if r.info.status == "RUNNING" and at_epoch <= len(c.get_metric_history(
                r.info.run_id, "loss")) <= at_epoch + 1:
            return r
    return None


def _config(study, attrs) -> dict:
    """A queued trial's config, which the queue keeps once per config as a study attr."""
    from core.study.queue import CONFIG, CONFIG_REF

    return {"config": study.user_attrs[CONFIG + attrs[CONFIG_REF]]}


def preempted_or_done(uri: str, run_id: str):
    """The run, once it was preempted (it may be running again, resumed) or has ended."""
    run = MlflowClient(uri).get_run(run_id)
    return run if run.info.status != "RUNNING" or run.data.tags.get("ablab.preemptions") \
        else None


def assert_resumed(uri: str, storage: str, preempted_id: str):
    """Every cell finished exactly once, in one run each: the preempted trial's run was
    continued from its checkpoint (not trained again from epoch 0) and finished."""
    runs = trial_runs(uri, NAME)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    cells = {(r.data.tags["ablab.variant"], r.data.tags["ablab.seed"]) for r in finished}
    assert len(runs) == len(finished) == CELLS and len(cells) == CELLS, (
        [(r.data.tags["ablab.variant"], r.data.tags["ablab.seed"], r.info.status,
          r.data.tags.get("ablab.outcome"), r.data.tags.get("ablab.error")) for r in runs],
        queue_states(storage))
    run = MlflowClient(uri).get_run(preempted_id)
    assert run.info.status == "FINISHED" and run.data.tags["ablab.preemptions"] == "1"
    assert run.data.tags["ablab.outcome"] in ("ok", "collapsed")
    assert run.data.metrics["epochs_trained_twice"] <= 1
    assert set(queue_states(storage)) <= {"COMPLETE", "PRUNED"}  # nothing RUNNING or FAIL
    return run


def test_the_slurm_recipe_loses_nothing_when_a_task_is_requeued(tmp_path):
    s = store(tmp_path)
    env = {**s["env"], "ABLAB_STORAGE": s["storage"], "MLFLOW_TRACKING_URI": s["uri"]}
    commands = recipe()
    assert [c[0] for c in commands] == ["run", "launch", "list", "report"]
    with slurm.cluster(tmp_path / "slurm") as cluster:
        env.update(cluster)
        # the recipe's enqueue, with trials long enough for the requeue to land mid-trial
        proc = run_cli(*commands[0], "--set", f"train.epochs={EPOCHS}", env=env)
        assert proc.returncode == 0 and "queued" in proc.stdout, proc.stdout + proc.stderr
        proc = run_cli(*commands[1], env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        job = re.search(r"submitted job array (\d+)", proc.stdout).group(1)
        script = next((tmp_path / "launch").rglob("slurm.sh")).read_text()
        assert "#SBATCH --requeue" in script and "#SBATCH --open-mode=append" in script
        assert "exec " in script and "--gres=gpu:1" in script
        preempted = None
        for _ in range(3):  # requeue the task that runs a trial, while it runs
            run = wait_until(lambda: running_run(s["uri"]), 240)
            task = run.data.tags["ablab.slot"].split(":")[0].removeprefix("slurm-")
            subprocess.run(["scontrol", "requeue", task], env={**os.environ, **cluster},
                           check=True, capture_output=True)
            ended = wait_until(lambda r=run: preempted_or_done(s["uri"], r.info.run_id), 60)
            if ended.data.tags.get("ablab.preemptions"):
                preempted = ended
                break
        assert preempted is not None, "no trial was caught mid-run by the requeue"
        wait_until(lambda: sum(r.info.status == "FINISHED"
                               for r in trial_runs(s["uri"], NAME)) == CELLS, 300, 1.0)
        wait_until(lambda: "RUNNING" not in queue_states(s["storage"]), 60, 0.5)
        assert_resumed(s["uri"], s["storage"], preempted.info.run_id)
        slots = {r.data.tags["ablab.slot"].split(":")[1] for r in trial_runs(s["uri"], NAME)}
        assert slots == {"gpu0", "gpu1"}  # the two tasks, each its own GPU
        logs = list((tmp_path / "launch").rglob(f"ablab-{NAME}-{job}_*.log"))
        assert len(logs) == 2 and any("preempted" in f.read_text() for f in logs)
        proc = run_cli(*commands[2], env=env)  # ablab list
        assert proc.returncode == 0 and f"{CELLS}/{CELLS}" in proc.stdout, proc.stdout
        proc = run_cli(*commands[3], "--out", str(tmp_path / "report"), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_sigtermed_worker_puts_its_trial_back_with_no_coordinator(tmp_path):
    s = store(tmp_path)
    common = ["--storage", s["storage"], "--tracking-uri", s["uri"]]
    proc = run_cli("run", NAME, "--smoke", "--seeds", "2", "--set", f"train.epochs={EPOCHS}",
                   "--no-workers", *common, env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers = [subprocess.Popen([sys.executable, "-m", "core.cli", "worker", NAME, *common,
                                 "--wait"], cwd=ROOT, env={**os.environ, **s["env"]},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    run = wait_until(lambda: running_run(s["uri"], at_epoch=PREEMPT_AT), 240, 0.05)
    pid = int(run.data.tags["ablab.worker"].rsplit(":", 1)[1])
    victim = next(w for w in workers if w.pid == pid)
    number = int(run.data.tags["optuna.trial_number"])
    os.kill(pid, signal.SIGTERM)
    t0 = time.monotonic()

    def back_in_queue():
        study = optuna.load_study(study_name=f"ablation:{NAME}", storage=_storage(s["storage"]))
        t = study.trials[number]
        return t.user_attrs.get("preemptions") == 1 and t.state.name in ("WAITING", "RUNNING",
                                                                         "COMPLETE")

    wait_until(back_in_queue, KILL_WAIT_S, 0.1)
    back_s = time.monotonic() - t0
    out, _ = victim.communicate(timeout=60)
    assert victim.returncode == 0 and "returned to the queue" in out, out
    other = next(w for w in workers if w is not victim)
    out, _ = other.communicate(timeout=600)
    assert other.returncode == 0, out
    # The limit this guards: SLURM's KillWait, from SIGTERM to SIGKILL, the checkpoint
    # written within it (bench/preempt.py measures it on a busy machine)
    assert back_s < KILL_WAIT_S, back_s
    resumed = assert_resumed(s["uri"], s["storage"], run.info.run_id)
    # preempted in epoch 7 of 10: at most one epoch trained twice (none: it saved at the stop)
    assert resumed.data.metrics["epochs_trained"] <= EPOCHS + 1
    assert "resumed from the checkpoint" in out
    study = optuna.load_study(study_name=f"ablation:{NAME}", storage=_storage(s["storage"]))
    assert len(study.trials) == CELLS  # the same trial came back, no copy was queued
    # and it ends as the same trial trained without a stop, in this process, would
    from core.runner import run_trial
    from core.trial import Trial

    t = Trial.from_attrs({**study.trials[number].user_attrs, "checkpoint": None,
                          **_config(study, study.trials[number].user_attrs)})
    c = MlflowClient(migrated_store(tmp_path / "whole"))
    whole = c.get_run(run_trial(t.replace(parent_run_id=None), c).run_id)
    for tag in ("ablab.weights_sha256",):
        assert whole.data.tags[tag] == resumed.data.tags[tag]
    assert whole.data.metrics["test_accuracy"] == resumed.data.metrics["test_accuracy"]


def test_the_kubernetes_job_validates(tmp_path):
    import kubernetes_validate as kv

    s = store(tmp_path)
    proc = run_cli("run", NAME, "--smoke", "--seeds", "1", "--no-workers", "--storage",
                   s["storage"], "--tracking-uri", s["uri"], env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("launch", "k8s", NAME, "--workers", "3", "--gpus-per-worker", "1",
                   "--image", "registry.example.com/ablab:1", "--storage", s["storage"],
                   "--tracking-uri", s["uri"], env={**s["env"],
                                                     "MLFLOW_TRACKING_PASSWORD": "pw"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = next((tmp_path / "launch").rglob("job.yaml")).parent
    job = yaml.safe_load((folder / "job.yaml").read_text())
    secret = yaml.safe_load((folder / "secret.yaml").read_text())
    for doc in (job, secret):
        kv.validate(doc, kv.latest_version(), strict=True)
    assert (folder / "secret.yaml").stat().st_mode & 0o777 == 0o600
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == \
        ("Indexed", 3, 3)
    pod = spec["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": secret["metadata"]
                                                              ["name"]}}]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]} in \
        spec["podFailurePolicy"]["rules"]
    assert secret["stringData"]["ABLAB_STORAGE"] == s["storage"]
    broken = {**job, "spec": {**spec, "completionMode": 3}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)
    c = MlflowClient(s["uri"])  # the job is logged with the study, its Secret is not
    study_run = c.search_runs([c.get_experiment_by_name(NAME).experiment_id],
                              "tags.`ablab.role` = 'study'")[0]
    logged = [a.path for d in c.list_artifacts(study_run.info.run_id, "launch")
              for a in c.list_artifacts(study_run.info.run_id, d.path)]
    assert any(p.endswith("job.yaml") for p in logged)
    assert not any("secret" in p for p in logged)
