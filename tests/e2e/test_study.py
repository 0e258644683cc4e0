"""`ablab run` as a person runs it: real worker processes, a real sqlite MLflow store and a real
Optuna journal file; interrupted with Ctrl-C, SIGTERM and SIGKILL, and resumed."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, migrated_store, run_cli

pytestmark = pytest.mark.e2e

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


@pytest.fixture(scope="session")  # session: interleaved tests of other modules keep it
def one_worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    s = store(tmp)
    proc = run_cli(*run_args(s, "--workers", "1"), env={**s["env"], "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return s, proc


@pytest.mark.xdist_group(name="one_worker")  # shares its module fixture
def test_study_runs_every_trial_once_with_parents(one_worker):
    s, proc = one_worker
    runs = assert_each_trial_finished_once(s["uri"], 9)
    assert len(runs) == 9
    ps = {p.data.tags["ablab.variant"]: p for p in parents(s["uri"])}
    assert set(ps) == {"augment=none", "augment=moderate", "augment=extreme"}
    for name, p in ps.items():
        kids = [r for r in runs if r.data.tags["mlflow.parentRunId"] == p.info.run_id]
        assert len(kids) == 3
        assert {r.data.tags["ablab.variant"] for r in kids} == {name}
        assert {r.data.tags["ablab.seed"] for r in kids} == {"0", "1", "2"}
        assert all(r.data.tags["ablab.study"] == STUDY for r in kids)
        m = p.data.metrics
        assert m["n_seeds"] == 3
        for k in ("mean", "std", "ci95_low", "ci95_high"):
            assert f"{k}_test_accuracy" in m
        vals = [r.data.metrics["test_accuracy"] for r in kids]
        assert m["mean_test_accuracy"] == pytest.approx(sum(vals) / 3)
        # the printed table shows the same numbers as the parent runs
        pattern = r"\S*(?: \(baseline\))?\s*│\s*3\s*│\s*([\d.]+) ± ([\d.]+)"
        row = re.search(re.escape(name) + pattern, proc.stdout)
        assert row, proc.stdout
        assert float(row.group(1)) == pytest.approx(m["mean_test_accuracy"], abs=5e-5)
        assert float(row.group(2)) == pytest.approx(m["std_test_accuracy"], abs=5e-5)
    assert "9 finished" in proc.stdout


@pytest.mark.xdist_group(name="one_worker")  # shares its module fixture
def test_rerun_of_a_finished_study_runs_nothing(one_worker):
    s, _ = one_worker
    proc = run_cli(*run_args(s), env=s["env"])
    assert proc.returncode == 0, proc.stderr
    assert "nothing to run" in proc.stdout
    assert len(trial_runs(s["uri"])) == 9


@pytest.mark.xdist_group(name="one_worker")  # shares its module fixture
def test_two_workers_give_the_same_metrics_as_one(one_worker, tmp_path):
    s1, _ = one_worker
    s2 = store(tmp_path)
    proc = run_cli(*run_args(s2, "--workers", "2", seeds="2"), env=s2["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one = {r.data.tags["ablab.trial_hash"]: r for r in trial_runs(s1["uri"])}
    two = {r.data.tags["ablab.trial_hash"]: r for r in trial_runs(s2["uri"])}
    assert len(two) == 6 and two.keys() <= one.keys()
    workers = {r.data.tags["ablab.worker"] for r in two.values()}
    assert len(workers) == 2, "both workers should have run trials"
    for h in two:
        for k in ("test_accuracy", "test_loss", "val_loss"):
            assert one[h].data.metrics[k] == two[h].data.metrics[k], (h, k)


@pytest.mark.xdist_group(name="one_worker")  # shares its module fixture
def test_report_after_a_study(one_worker, tmp_path):
    from PIL import Image

    s, _ = one_worker
    out = tmp_path / "report"
    proc = run_cli("report", STUDY, "--tracking-uri", s["uri"], "--out", str(out),
                   env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for f in ("summary.md", "summary.csv", "comparisons.csv", "seeds.csv", "per_seed.png",
              "score_distribution.png", "learning_curves.png", "confusion_matrices.png"):
        assert (out / f).exists(), f
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    md = (out / "summary.md").read_text()
    assert "augment=moderate" in md and "Holm" in md
    for column in ("P(improvement)", "IQM", "verdict", "Holm-adjusted CI", "test-set SE",
                   "What the intervals cover"):
        assert column in md, column
    import pandas as pd

    ct = pd.read_csv(out / "comparisons.csv").set_index("variant")
    vt = pd.read_csv(out / "summary.csv").set_index("variant")
    c = MlflowClient(s["uri"])
    for p in parents(s["uri"]):  # the parent runs carry the report's numbers
        name, m = p.data.tags["ablab.variant"], p.data.metrics
        assert m["iqm_test_accuracy"] == pytest.approx(vt.loc[name, "iqm"])
        assert m["n_seeds"] == vt.loc[name, "n"] == 3
        if name in ct.index:
            assert m["prob_improvement_test_accuracy"] == pytest.approx(
                ct.loc[name, "prob_improvement"])
            assert p.data.tags["ablab.verdict_test_accuracy"] == ct.loc[name, "verdict"]
    exp = c.get_experiment_by_name(STUDY)
    study_run = c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'study'")[0]
    logged = {a.path for a in c.list_artifacts(study_run.info.run_id, "report_test_accuracy")}
    assert "report_test_accuracy/summary.md" in logged
    # any logged metric, minimized or maximized
    proc = run_cli("report", STUDY, "--tracking-uri", s["uri"], "--out", str(out),
                   "--metric", "test_loss", env=s["env"])
    assert proc.returncode == 0 and "test_loss" in (out / "summary.md").read_text()
    proc = run_cli("report", STUDY, "--tracking-uri", s["uri"], "--metric", "test_acuracy",
                   env=s["env"])
    assert proc.returncode == 2 and "test_accuracy" in proc.stderr
    assert "Traceback" not in proc.stderr


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
    pids = _workers_of(s["storage"])
    assert pids, "no worker process found"
    os.kill(pids[0], signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout
    assert "exited with" in stdout  # the coordinator noticed
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
    assert "2 failed" in proc.stdout
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
