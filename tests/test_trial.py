"""A trial end to end in-process against a real sqlite MLflow store."""

import numpy as np

from core.data import cache_key, load_dataset
from core.runner import run_trial
from core.trial import Trial
from tests.conftest import tiny

ARTIFACTS = {"config.yaml", "learning_curves.png", "confusion_matrix.png",
             "confusion_matrix.csv", "classification_report.json"}


def _artifacts(client, run_id):
    return {a.path for a in client.list_artifacts(run_id)}


def test_trial_logs_everything(tracking_uri, mlflow_client):
    exp = tiny(train={"epochs": 3})
    res = run_trial(Trial.new(exp, 7, "trial-test"), tracking_uri=tracking_uri)
    assert res.status == "FINISHED"
    run = mlflow_client.get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) >= 20
    assert run.data.params["train.lr"] == "0.01" and run.data.params["seed"] == "7"
    for key in ("test_accuracy", "test_loss", "test_balanced_accuracy", "test_macro_f1",
                "test_recall_0", "test_precision_9", "test_auc", "best_epoch", "epochs_run",
                "train_time_s", "n_params"):
        assert key in run.data.metrics, key
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s"):
        steps = [m.step for m in mlflow_client.get_metric_history(res.run_id, key)]
        assert steps == [0, 1, 2], key
    tags = run.data.tags
    assert tags["ablab.seed"] == "7"
    assert tags["ablab.trial_hash"] == Trial.new(exp, 7, "x").hash
    assert tags["ablab.outcome"] in ("ok", "collapsed")
    assert tags["ablab.device"] == "cpu"
    assert _artifacts(mlflow_client, res.run_id) >= ARTIFACTS
    # MLflow's UI opens the experiment on its training-runs table, not the GenAI overview
    exp_tags = mlflow_client.get_experiment(run.info.experiment_id).tags
    assert exp_tags["mlflow.experimentKind"] == "custom_model_development"


def test_trial_is_deterministic_in_process(tracking_uri, mlflow_client):
    exp = tiny(augment={"strength": "moderate"}, model={"dropout": 0.2})
    a = run_trial(Trial.new(exp, 3, "det"), tracking_uri=tracking_uri)
    b = run_trial(Trial.new(exp, 3, "det"), tracking_uri=tracking_uri)
    c = run_trial(Trial.new(exp, 4, "det"), tracking_uri=tracking_uri)
    hist = lambda r: [m.value for m in mlflow_client.get_metric_history(r.run_id, "val_loss")]  # noqa: E731
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    assert hist(a) == hist(b)
    assert hist(a) != hist(c)


def test_forced_nan_is_diverged(tracking_uri, mlflow_client):
    """A poisoned input (one NaN pixel) makes the loss NaN: training stops, outcome diverged."""
    exp = tiny(train={"epochs": 3})
    ds = load_dataset(exp.data)
    ds.x_train = ds.x_train.copy()
    ds.x_train[:, 0, 0, 0] = np.nan
    cache = {cache_key(exp.data, 0): ds}
    res = run_trial(Trial.new(exp, 0, "nan"), tracking_uri=tracking_uri, cache=cache)
    assert res.status == "FINISHED" and res.outcome == "diverged"
    run = mlflow_client.get_run(res.run_id)
    assert run.data.tags["ablab.outcome"] == "diverged"
    assert run.data.metrics["epochs_run"] < 3


def test_forced_collapse_is_tagged(tracking_uri, mlflow_client):
    """lr=1e-9 for one epoch: the model never leaves its random init and predicts at chance."""
    res = run_trial(Trial.new(tiny(train={"lr": 1e-9, "epochs": 1}), 0, "collapse"),
                    tracking_uri=tracking_uri)
    assert res.outcome == "collapsed"
    assert mlflow_client.get_run(res.run_id).data.tags["ablab.outcome"] == "collapsed"


def test_keras_error_fails_the_run_with_traceback(tracking_uri, mlflow_client):
    """depth 5 on 8x8 images passes validation but pools below 1x1 inside Keras."""
    res = run_trial(Trial.new(tiny(model={"depth": 5}), 0, "fail"), tracking_uri=tracking_uri)
    assert res.status == "FAILED" and "MaxPooling2D" in res.error
    run = mlflow_client.get_run(res.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["ablab.outcome"] == "failed"
    assert "traceback.txt" in _artifacts(mlflow_client, res.run_id)


def test_tta_one_view_without_augmentation_equals_plain(tracking_uri):
    res = run_trial(Trial.new(tiny(eval={"tta": 1}), 0, "tta"), tracking_uri=tracking_uri)
    assert res.metrics["test_accuracy_tta"] == res.metrics["test_accuracy"]


def test_tta_many_views_logs_both(tracking_uri):
    res = run_trial(Trial.new(tiny(eval={"tta": 3}, augment={"strength": "moderate"}), 0,
                              "tta"), tracking_uri=tracking_uri)
    assert "test_accuracy_tta" in res.metrics and "test_accuracy" in res.metrics


def test_mixed_precision_trains_and_says_so(tracking_uri, mlflow_client):
    res = run_trial(Trial.new(tiny(train={"mixed_precision": True}), 0, "mp"),
                    tracking_uri=tracking_uri)
    assert res.status == "FINISHED" and res.outcome in ("ok", "collapsed")
    tags = mlflow_client.get_run(res.run_id).data.tags
    assert tags["ablab.dtype_policy"] == "mixed_bfloat16"  # CPU; mixed_float16 on a GPU
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the trial
