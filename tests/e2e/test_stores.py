"""Stores under load and stores that are not there: several processes on one fresh sqlite
store, a tracking server that is down, an Optuna storage that cannot be written."""

import os
import socket
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, migrated_store, run_cli

pytestmark = pytest.mark.e2e

STUDY = """base: digits_cnn
set: {data.image_size: 8, train.epochs: 1, model.depth: 1, model.width: 4,
      data.max_samples: 300}
vary:
  lr: [0.003, 0.01, 0.03]    # the base's lr is 0.003: 3 variants x 4 seeds = 12 trials
seeds: 4
"""


def _spawn(args, env):
    return subprocess.Popen([sys.executable, "-m", "core.cli", *args], cwd=ROOT,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_four_workers_and_two_trainings_start_together_on_a_fresh_store(tmp_path):
    """No migrated template here: the store does not exist until these processes race to
    create it (MLflow creates its tables on first use)."""
    (tmp_path / "busy.yaml").write_text(STUDY)
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    env = {"ABLAB_MLRUNS": str(tmp_path / "fresh")}
    train = ["train", "digits_cnn", "--set", "data.image_size=8", "--set", "train.epochs=1",
             "--tracking-uri", uri]
    procs = [_spawn(["run", str(tmp_path / "busy.yaml"), "--workers", "4", "--tracking-uri",
                     uri, "--storage", str(tmp_path / "q.journal"), "--no-report"], env),
             _spawn([*train, "--seed", "0"], env), _spawn([*train, "--seed", "1"], env)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
        assert "locked" not in out and "already exists" not in out, out
    logs = " ".join(f.read_text() for f in (tmp_path / "fresh" / "logs").rglob("*.log"))
    assert "Traceback" not in logs and "locked" not in logs
    c = MlflowClient(uri)
    runs = c.search_runs([c.get_experiment_by_name("busy").experiment_id],
                         "tags.`ablab.role` = 'trial'")
    assert len(runs) == 12 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["ablab.worker"] for r in runs}) >= 3  # the four shared the work
    trained = c.search_runs([c.get_experiment_by_name("digits_cnn").experiment_id])
    assert sorted(r.data.tags["ablab.seed"] for r in trained) == ["0", "1"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fails_fast(args, *names):
    t0 = time.monotonic()
    proc = run_cli(*args, timeout=240)
    took = time.monotonic() - t0
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # The limit this guards: MLflow's own retries of an unreachable server (7, backoff factor
    # 2) take over 2 minutes before an error; ablab's check answers at its first try.
    assert took < 60, took
    err = " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr + proc.stdout
    assert err.startswith("error:") and err.count("error:") == 1
    for name in names:
        assert name in err, err
    return err


def test_a_tracking_server_that_is_down(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    storage = str(tmp_path / "q.journal")
    _fails_fast(["run", "augmentation_strength", "--smoke", "--tracking-uri", uri,
                 "--storage", storage], uri, "not reachable")
    _fails_fast(["search", "lr_batch", "--smoke", "--tracking-uri", uri, "--storage", storage],
                uri)
    _fails_fast(["train", "digits_cnn", "--tracking-uri", uri], uri)
    _fails_fast(["worker", "augmentation_strength", "--tracking-uri", uri, "--storage",
                 storage], uri)


def test_an_optuna_storage_that_cannot_be_written(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    bad = str(tmp_path / "a_file" / "q.journal")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _fails_fast(["run", "augmentation_strength", "--smoke", "--tracking-uri", uri,
                 "--storage", bad], bad, "cannot be written")
    down = f"postgresql://ablab:secret@127.0.0.1:{_closed_port()}/optuna"
    err = _fails_fast(["run", "augmentation_strength", "--smoke", "--tracking-uri", uri,
                       "--storage", down], "postgresql://ablab:***@127.0.0.1")
    assert "secret" not in err


def test_list_report_and_doctor_on_stores_that_are_not_there(tmp_path):
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    _fails_fast(["list", "--json", "--tracking-uri", missing], "no MLflow store at")
    _fails_fast(["report", "augmentation_strength", "--json", "--tracking-uri", missing],
                "no MLflow store at")
    assert not (tmp_path / "nowhere").exists()  # looking did not create one
    down = f"http://127.0.0.1:{_closed_port()}"
    _fails_fast(["list", "--json", "--tracking-uri", down], down)
    _fails_fast(["report", "augmentation_strength", "--tracking-uri", down], down)
    _fails_fast(["list", "--tracking-uri", migrated_store(tmp_path), "--storage",
                 str(tmp_path / "none.journal")], "no Optuna storage at")


def test_doctor_says_what_to_fix(tmp_path):
    good = run_cli("doctor", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--storage",
                   str(tmp_path / "q.journal"), env={"COLUMNS": "200"})
    assert good.returncode == 0, good.stdout + good.stderr
    for line in ("Python", "tensorflow", "keras", "mlflow", "optuna", "GPUs",
                 "tracking store", "Optuna storage", "disk space"):
        assert line in good.stdout, line
    assert "problem" not in good.stdout
    down = f"http://127.0.0.1:{_closed_port()}"
    (tmp_path / "a_file").write_text("not a folder")
    bad = run_cli("doctor", "--tracking-uri", down, "--storage",
                  str(tmp_path / "a_file" / "q.journal"), env={"COLUMNS": "200"})
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "fix tracking store" in bad.stdout and down in bad.stdout
    assert "fix Optuna storage" in bad.stdout
    assert "Traceback" not in bad.stdout + bad.stderr


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path):
    db = tmp_path / "broken.db"
    db.write_bytes(b"this is not a sqlite database" * 100)
    err = _fails_fast(["list", "--tracking-uri", f"sqlite:///{db}"], "--debug")
    assert "DatabaseError" in err or "Error" in err
    proc = run_cli("--debug", "list", "--tracking-uri", f"sqlite:///{db}")
    assert proc.returncode != 0 and "Traceback" in proc.stderr
