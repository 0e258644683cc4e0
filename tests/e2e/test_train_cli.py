"""`ablab train` as a person runs it: fresh processes, a real sqlite store."""

import gzip

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import OFFLINE, migrated_store, run_cli

pytestmark = pytest.mark.e2e


def test_same_seed_twice_gives_identical_runs(tmp_path):
    uri = migrated_store(tmp_path)
    for _ in range(2):
        proc = run_cli("train", "digits_cnn", "--seed", "0", "--set", "train.epochs=2",
                       "--tracking-uri", uri)
        assert proc.returncode == 0, proc.stderr
        assert "test_accuracy=" in proc.stdout
    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("digits_cnn").experiment_id])
    assert len(runs) == 2
    a, b = runs
    assert a.data.metrics["test_accuracy"] == b.data.metrics["test_accuracy"]
    hist = lambda r: [(m.step, m.value) for m in c.get_metric_history(r.info.run_id, "val_loss")]  # noqa: E731
    assert hist(a) == hist(b) and len(hist(a)) == 2
    assert a.data.tags["ablab.trial_hash"] == b.data.tags["ablab.trial_hash"]


def _idx(path, arr, header_len):
    with gzip.open(path, "wb") as f:
        f.write(b"\0" * header_len + arr.astype("uint8").tobytes())


def test_keras_loader_reads_a_filled_cache(tmp_path):
    """keras:fashion_mnist offline: Keras' own loader finds its files in $KERAS_HOME."""
    rng = np.random.default_rng(0)
    d = tmp_path / "keras" / "datasets" / "fashion-mnist"
    d.mkdir(parents=True)
    for prefix, n in (("train", 120), ("t10k", 40)):
        y = np.arange(n) % 10
        x = (rng.random((n, 28, 28)) * 60 + y[:, None, None] * 19).clip(0, 255)
        _idx(d / f"{prefix}-labels-idx1-ubyte.gz", y, 8)
        _idx(d / f"{prefix}-images-idx3-ubyte.gz", x, 16)
    uri = migrated_store(tmp_path)
    proc = run_cli("train", "digits_cnn", "--set", "data.source=keras:fashion_mnist",
                   "--set", "train.epochs=1", "--set", "data.image_size=8",
                   "--tracking-uri", uri, env={"KERAS_HOME": str(tmp_path / "keras"),
                                               **OFFLINE})
    assert proc.returncode == 0, proc.stderr
    c = MlflowClient(uri)
    run = c.search_runs([c.get_experiment_by_name("digits_cnn").experiment_id])[0]
    assert run.data.params["data.source"] == "keras:fashion_mnist"
    assert run.data.metrics["test_accuracy"] >= 0


def test_offline_keras_loader_says_how_to_fix(tmp_path):
    proc = run_cli("train", "digits_cnn", "--set", "data.source=keras:mnist",
                   "--tracking-uri", migrated_store(tmp_path),
                   env={"KERAS_HOME": str(tmp_path / "empty"), **OFFLINE})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    err = " ".join(proc.stderr.split())
    assert "could not load Keras' mnist" in err and "datasets/" in err
