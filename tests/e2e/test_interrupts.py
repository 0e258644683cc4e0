"""`ablab run` interrupted (Ctrl-C, SIGTERM, SIGKILL), with a worker killed, with failing and
collapsing variants, and on RDB storage with heartbeats: real processes and stores."""

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, run_cli
from tests.e2e.helpers import (
    STUDY,
    assert_each_trial_finished_once,
    kill_a_worker,
    run_args,
    running,
    store,
    trial_runs,
)

pytestmark = pytest.mark.e2e

def _wait_finished(uri, n, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(r.info.status == "FINISHED" for r in trial_runs(uri)) >= n:
            return
        assert proc.poll() is None, "study ended before it could be interrupted"
        time.sleep(0.3)
    raise AssertionError("timed out waiting for trials")


def _default_sigint():
    # A terminal's foreground job has SIGINT's default action; a background job of a
    # non-interactive shell (e.g. `make test &`) inherits SIG_IGN. Test as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(s, *extra, seeds="3"):
    return subprocess.Popen([sys.executable, "-m", "core.cli", *run_args(s, *extra, seeds=seeds)],
                            cwd=ROOT,
                            env={**os.environ, **s["env"]}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


def _workers_of(storage):
    out = subprocess.run(["pgrep", "-f", f"core.cli worker .* --storage {storage}"],
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_ctrl_c_sigterm_sigkill_then_resume(tmp_path):
    s = store(tmp_path)
    # Ctrl-C: the terminal sends SIGINT to the whole process group
    proc = _spawn(s)
    _wait_finished(s["uri"], 1, proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Interrupted" in out
    assert not running(s["uri"])
    # SIGTERM to the coordinator alone (`kill PID`): it must stop its workers too
    proc = _spawn(s)
    _wait_finished(s["uri"], 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert not running(s["uri"])
    assert not _workers_of(s["storage"]), "workers outlived their coordinator"
    # SIGKILL of the whole group half-way: nothing gets to clean up
    proc = _spawn(s)
    _wait_finished(s["uri"], 5, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # resume: the dead run's trial is failed in the queue, its MLflow run ends KILLED
    proc = run_cli(*run_args(s), env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = assert_each_trial_finished_once(s["uri"], 9)
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all(r.data.tags["ablab.outcome"] == "killed" for r in killed)


def test_a_dead_worker_is_restarted_and_its_trial_retried(tmp_path):
    s = store(tmp_path)
    proc = _spawn(s, seeds="2")
    _wait_finished(s["uri"], 1, proc)
    kill_a_worker(proc, s["storage"])
    assert_each_trial_finished_once(s["uri"], 6)


def test_failures_collapse_and_missing_cells(tmp_path):
    """lr=1e-9 collapses; depth 5 on 8x8 passes validation but fails in Keras; the file wants
    3 seeds and we run 2. The study goes on past the failures and the report says it all."""
    import pandas as pd

    (tmp_path / "mixed.yaml").write_text(
        "base: digits_cnn\nset: {data.image_size: 8, train.epochs: 1, model.depth: 1,"
        " data.max_samples: 400}\nvary:\n  lr: [0.003, 1.0e-9]\n  depth: [5]\nseeds: 3\n")
    s = store(tmp_path)
    proc = run_cli("run", str(tmp_path / "mixed.yaml"), "--seeds", "2", "--tracking-uri",
                   s["uri"], "--storage", s["storage"], "--no-report",
                   env={**s["env"], "COLUMNS": "200"})
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the depth=5 trials failed
    assert "2 errors" in proc.stdout
    runs = trial_runs(s["uri"], "mixed")
    by_status: dict[str, list[str]] = {}
    for r in runs:
        by_status.setdefault(r.info.status, []).append(r.data.tags["ablab.variant"])
    assert sorted(by_status["FINISHED"]) == ["lr=0.003"] * 2 + ["lr=1e-09"] * 2
    assert by_status["FAILED"] == ["depth=5", "depth=5"]
    c = MlflowClient(s["uri"])
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "traceback.txt" in {a.path for a in c.list_artifacts(failed.info.run_id)}
    out = tmp_path / "report"
    proc = run_cli("report", str(tmp_path / "mixed.yaml"), "--tracking-uri", s["uri"],
                   "--out", str(out), env={**s["env"], "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    # 3 cells never ran (seed 2 of each variant), 2 failed (depth=5 seeds 0 and 1)
    assert "5 trial(s) have no finished run" in " ".join(proc.stdout.split())
    summary = pd.read_csv(out / "summary.csv").set_index("variant")
    assert summary.loc["lr=1e-09", "collapse_rate"] > 0
    assert summary.loc["depth=5", "failed"] == 2
    # the failed seeds still count in the verdict, at chance (missing_as: chance): 1/10
    assert summary.loc["depth=5", "n"] == 2 and summary.loc["depth=5", "imputed"] == 2
    assert summary.loc["depth=5", "mean"] == pytest.approx(0.1)
    md = (out / "summary.md").read_text()
    assert "Missing" in md and "depth=5 seed=2" in md


def test_study_on_rdb_storage_with_heartbeats(tmp_path):
    s = store(tmp_path)
    s["storage"] = f"sqlite:///{tmp_path / 'optuna.db'}"
    proc = run_cli(*run_args(s, "--workers", "2", seeds="1"), env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_each_trial_finished_once(s["uri"], 3)
    study = __import__("optuna").load_study(study_name=f"ablation:{STUDY}",
                                            storage=s["storage"])
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3
