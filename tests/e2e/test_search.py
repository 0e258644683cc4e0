"""`ablab search` on a real Optuna journal and sqlite MLflow store: interrupted, continued,
a worker killed, a bad region pruned."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import ROOT, migrated_store, run_cli
from tests.e2e.helpers import kill_a_worker

pytestmark = pytest.mark.e2e


def _store(tmp_path):
    return (migrated_store(tmp_path), str(tmp_path / "q.journal"),
            {"ABLAB_MLRUNS": str(tmp_path), "ABLAB_BEST_DIR": str(tmp_path / "best"),
             "ABLAB_REPORTS": str(tmp_path / "reports")})


def _study(journal, name):
    return optuna.load_study(study_name=f"search:{name}",
                             storage=JournalStorage(JournalFileBackend(journal)))


def _settled(journal, name):
    """Trials that count toward --trials: finished, pruned, or failed on their own."""
    return [t for t in _study(journal, name).trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.user_attrs.get("outcome") == "failed")]


def _trial_runs(uri, name):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'")


def _spawn(args, env):
    return subprocess.Popen([sys.executable, "-m", "core.cli", *args], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait(pred, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_ctrl_c_continue_and_a_trainable_best(tmp_path):
    uri, journal, env = _store(tmp_path)
    args = ["search", "lr_batch", "--smoke", "--tracking-uri", uri, "--storage", journal]
    # Ctrl-C of a 2-worker search: out without finishing the study (the pool stops its
    # workers, killing what still runs at its deadline), no run left RUNNING
    proc = _spawn([*args, "--trials", "6", "--workers", "2"], env)
    _wait(lambda: os.path.exists(journal) and len(_settled(journal, "lr_batch")) >= 1, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert len([r for r in _trial_runs(uri, "lr_batch") if r.info.status == "FINISHED"]) < 6
    assert not [r for r in _trial_runs(uri, "lr_batch") if r.info.status == "RUNNING"]
    # the same command continues to exactly 6 trials
    proc = run_cli(*args, "--trials", "6", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(_settled(journal, "lr_batch")) == 6
    runs = _trial_runs(uri, "lr_batch")
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == 6 and {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    assert len({r.data.tags["optuna.trial_number"] for r in finished}) == 6
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    for r in finished:
        assert "optuna.lr" in r.data.params and r.data.tags["optuna.state"] in (
            "COMPLETE", "PRUNED")
    best = tmp_path / "best" / "lr_batch_best.yaml"
    assert best.exists()
    assert "top" in proc.stdout and "lr_batch_best" in proc.stdout
    train = run_cli("train", str(best), "--set", "train.epochs=1", "--tracking-uri", uri,
                    env=env)
    assert train.returncode == 0, train.stderr
    c = MlflowClient(uri)
    arts = {a.path for a in c.list_artifacts(runs[0].data.tags["mlflow.parentRunId"])}
    assert {"lr_batch_best.yaml", "optimization_history.png",
            "parallel_coordinate.png"} <= arts
    # a larger total adds exactly the difference
    proc = run_cli(*args, "--trials", "7", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(_settled(journal, "lr_batch")) == 7


def test_a_killed_search_worker_is_restarted_and_the_count_reached(tmp_path):
    """Two workers (with --per-gpu 2, a no-op without GPUs), one SIGKILLed mid-search."""
    uri, journal, env = _store(tmp_path)
    proc = _spawn(["search", "architecture", "--smoke", "--trials", "5", "--workers", "2",
                   "--per-gpu", "2", "--tracking-uri", uri, "--storage", journal], env)
    _wait(lambda: os.path.exists(journal) and len(_settled(journal, "architecture")) >= 1,
          proc)
    kill_a_worker(proc, journal)
    settled = _settled(journal, "architecture")
    assert len(settled) == 5 and len({t.number for t in settled}) == 5
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in settled)
    assert len({t.user_attrs["worker"] for t in _study(journal, "architecture").trials}) >= 2
    runs = _trial_runs(uri, "architecture")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert len([r for r in runs if r.info.status == "FINISHED"]) == 5


def test_a_bad_region_gets_pruned(tmp_path):
    """Points enqueued with Optuna's own enqueue_trial count toward --trials."""
    uri, journal, env = _store(tmp_path)
    f = tmp_path / "prune.yaml"
    f.write_text(
        "base: digits_cnn\nset: {data.image_size: 8, train.epochs: 4, data.max_samples: 500}\n"
        "space:\n  lr: {type: categorical, choices: [0.01, 1.0e-9]}\n"
        "sampler: random\npruner: {type: median, startup_trials: 1, warmup_epochs: 0}\n")
    study = optuna.create_study(study_name="search:prune", direction="maximize",
                                storage=JournalStorage(JournalFileBackend(journal)))
    for lr in (0.01, 1e-9, 1e-9):  # a good trial first, then the bad region (1e-9 learns nothing)
        study.enqueue_trial({"lr": lr})
    proc = run_cli("search", str(f), "--trials", "3", "--tracking-uri", uri, "--storage",
                   journal, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = _study(journal, "prune").trials
    assert [t.params["lr"] for t in trials] == [0.01, 1e-9, 1e-9]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["lr"] == 1e-9 for t in pruned)
    runs = {int(r.data.tags["optuna.trial_number"]): r for r in _trial_runs(uri, "prune")}
    for t in pruned:
        assert runs[t.number].data.tags["optuna.state"] == "PRUNED"
        assert runs[t.number].data.tags["ablab.outcome"] == "pruned"
        assert runs[t.number].data.metrics["epochs_run"] < 4


def test_a_two_objective_search_prints_and_logs_its_pareto_front(tmp_path):
    """Issue 30: accuracy up and FLOPs down over the architecture space, a latency bound:
    the front (>= 2 trials) is printed, written to pareto.csv and tagged in MLflow."""
    import pandas as pd

    uri, journal, env = _store(tmp_path)
    proc = run_cli("search", "architecture_cost", "--smoke", "--trials", "6",
                   "--tracking-uri", uri, "--storage", journal, env={**env, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Pareto front" in proc.stdout and "flops_per_example" in proc.stdout
    front = pd.read_csv(tmp_path / "reports" / "search-architecture_cost" / "pareto.csv")
    assert len(front) >= 2 and {"val_accuracy", "flops_per_example"} <= set(front.columns)
    study = _study(journal, "architecture_cost")
    assert len(study.directions) == 2
    assert sorted(front["trial"]) == sorted(t.number for t in study.best_trials)
    runs = _trial_runs(uri, "architecture_cost")
    tagged = {int(r.data.tags["optuna.trial_number"]) for r in runs
              if r.data.tags.get("ablab.pareto") == "true"}
    assert tagged == set(front["trial"])
    for t in study.best_trials:  # on the front means feasible: latency within its bound
        assert t.user_attrs["constraints"][0] <= 0
