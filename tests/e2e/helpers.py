"""What the study flows share: a store per test, the `ablab run` arguments, and looks into
MLflow."""

import os
import signal
import subprocess

from mlflow import MlflowClient

from tests.conftest import migrated_store

STUDY = "augmentation_strength"


def store(tmp_path):
    return {"uri": migrated_store(tmp_path), "storage": str(tmp_path / "q.journal"),
            "env": {"ABLAB_MLRUNS": str(tmp_path)}}


def run_args(s, *extra, seeds="3"):
    return ["run", STUDY, "--smoke", "--seeds", seeds, "--tracking-uri", s["uri"],
            "--storage", s["storage"], "--no-report", *extra]


def trial_runs(uri, name=STUDY):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'", max_results=1000)


def parents(uri, name=STUDY):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'variant'")


def running(uri, name=STUDY):
    return [r for r in trial_runs(uri, name) if r.info.status == "RUNNING"]


def assert_each_trial_finished_once(uri, n, name=STUDY):
    runs = trial_runs(uri, name)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == n
    assert len({r.data.tags["ablab.trial_hash"] for r in finished}) == n
    assert not running(uri, name)
    return runs


def kill_a_worker(proc, storage) -> str:
    """SIGKILL one worker of a running study; its coordinator `proc` must notice, restart it
    and still succeed. Returns the coordinator's output."""
    pids = subprocess.run(["pgrep", "-f", f"core.cli worker .* --storage {storage}"],
                          capture_output=True, text=True).stdout.split()
    assert pids, "no worker process found"
    os.kill(int(pids[0]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "exited with" in out  # the coordinator noticed
    return out
