"""A folder of one's own JPEGs through the CLI: checked and decoded once, before any run;
read from the cache by every later trial, worker and process."""

import pytest
from mlflow import MlflowClient

from tests.conftest import migrated_store, run_cli
from tests.test_folder import make_folder

pytestmark = pytest.mark.e2e


def test_decoded_once_then_read_by_every_trial_and_worker(tmp_path):
    root = make_folder(tmp_path / "parts", per_class=12, size=32)
    (root / "train" / "0" / "Thumbs.db").write_bytes(b"\0" * 128)
    (tmp_path / "parts.yaml").write_text(
        f"base: digits_cnn\ndata: {{source: folder, path: '{root}', image_size: 8}}\n"
        "model: {depth: 1, width: 4}\ntrain: {epochs: 1}\n")
    (tmp_path / "weights.yaml").write_text(
        "base: parts\nvary:\n  class_weight: [none, balanced]\nseeds: 2\n")
    uri = migrated_store(tmp_path)
    env = {"ABLAB_CACHE": str(tmp_path / "cache"), "ABLAB_MLRUNS": str(tmp_path)}
    first = run_cli("train", str(tmp_path / "parts.yaml"), "--seed", "0", "--tracking-uri",
                    uri, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    out = " ".join(first.stdout.split())
    assert "skipped 1 file(s) that are not images by their name (Thumbs.db)" in out
    assert "decoded 108 images" in out
    second = run_cli("train", str(tmp_path / "parts.yaml"), "--seed", "1", "--tracking-uri",
                     uri, env=env)
    assert second.returncode == 0, second.stderr
    assert "decoded" not in second.stdout
    study = run_cli("run", str(tmp_path / "weights.yaml"), "--workers", "2", "--tracking-uri",
                    uri, "--storage", str(tmp_path / "q.journal"), "--no-report", env=env)
    assert study.returncode == 0, study.stdout + study.stderr
    c = MlflowClient(uri)
    trained = c.search_runs([c.get_experiment_by_name("parts").experiment_id],
                            order_by=["tags.`ablab.seed` ASC"])
    assert [r.data.tags["ablab.data_decoded_here"] for r in trained] == ["108", "0"]
    runs = c.search_runs([c.get_experiment_by_name("weights").experiment_id],
                         "tags.`ablab.role` = 'trial'")
    assert len(runs) == 4 and len({r.data.tags["ablab.worker"] for r in runs}) == 2
    assert {r.data.tags["ablab.data_decoded_here"] for r in runs} == {"0"}  # no worker decoded
    assert {r.data.tags["ablab.data_cache"] for r in [*runs, *trained]} == {
        trained[0].data.tags["ablab.data_cache"]}
    assert {r.data.params["data_pipeline"] for r in runs} == {"memory"}
    streamed = run_cli("train", str(tmp_path / "parts.yaml"), "--seed", "2", "--tracking-uri",
                       uri, env={**env, "ABLAB_STREAM_ABOVE_MB": "0"})
    assert streamed.returncode == 0, streamed.stderr
    run = c.search_runs([c.get_experiment_by_name("parts").experiment_id],
                        "tags.`ablab.seed` = '2'")[0]
    assert run.data.params["data_pipeline"] == "stream" and run.info.status == "FINISHED"
    assert run.data.metrics["test_accuracy"] >= 0
