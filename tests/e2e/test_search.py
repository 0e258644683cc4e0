"""`ablab search` on a real Optuna journal and sqlite MLflow store."""

import optuna
import pytest
from mlflow import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def _store(tmp_path):
    return (f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "q.journal"),
            {"ABLAB_MLRUNS": str(tmp_path), "ABLAB_BEST_DIR": str(tmp_path / "best"),
             "ABLAB_REPORTS": str(tmp_path / "reports")})


def _study(journal, name):
    return optuna.load_study(study_name=f"search:{name}",
                             storage=JournalStorage(JournalFileBackend(journal)))


def _trial_runs(uri, name):
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'")


def test_search_runs_continues_and_writes_a_trainable_best(tmp_path):
    uri, journal, env = _store(tmp_path)
    args = ["search", "lr_batch", "--smoke", "--tracking-uri", uri, "--storage", journal]
    proc = run_cli(*args, "--trials", "6", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(_study(journal, "lr_batch").trials) == 6
    runs = _trial_runs(uri, "lr_batch")
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == list(range(6))
    parent = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parent) == 1
    for r in runs:
        assert "optuna.lr" in r.data.params and r.data.tags["optuna.state"] in (
            "COMPLETE", "PRUNED")
    best = tmp_path / "best" / "lr_batch_best.yaml"
    assert best.exists()
    assert "top" in proc.stdout and "lr_batch_best" in proc.stdout
    train = run_cli("train", str(best), "--set", "train.epochs=1", "--tracking-uri", uri,
                    env=env)
    assert train.returncode == 0, train.stderr
    c = MlflowClient(uri)
    search_run = c.get_run(parent.pop())
    arts = {a.path for a in c.list_artifacts(search_run.info.run_id)}
    assert {"lr_batch_best.yaml", "optimization_history.png",
            "parallel_coordinate.png"} <= arts
    # continue the same study to 8 trials: exactly 2 more
    proc = run_cli(*args, "--trials", "8", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(_study(journal, "lr_batch").trials) == 8
    assert len(_trial_runs(uri, "lr_batch")) == 8


def test_a_bad_region_gets_pruned(tmp_path):
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
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["lr"] == 1e-9 for t in pruned)
    runs = {int(r.data.tags["optuna.trial_number"]): r for r in _trial_runs(uri, "prune")}
    for t in pruned:
        assert runs[t.number].data.tags["optuna.state"] == "PRUNED"
        assert runs[t.number].data.tags["ablab.outcome"] == "pruned"
        assert runs[t.number].data.metrics["epochs_run"] < 4


def test_two_workers_share_one_study(tmp_path):
    uri, journal, env = _store(tmp_path)
    proc = run_cli("search", "architecture", "--smoke", "--trials", "4", "--workers", "2",
                   "--tracking-uri", uri, "--storage", journal, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "exited with an error" not in proc.stdout
    trials = _study(journal, "architecture").trials
    assert len(trials) == 4 and len({t.number for t in trials}) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    runs = _trial_runs(uri, "architecture")
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in runs) == [0, 1, 2, 3]
    assert len({t.user_attrs["worker"] for t in trials}) == 2
