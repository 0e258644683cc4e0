"""`ablab run` as a person runs it: real worker processes, a real sqlite MLflow store and a real
Optuna journal file; interrupted with Ctrl-C, SIGTERM and SIGKILL, and resumed."""

import re

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli
from tests.e2e.helpers import (
    STUDY,
    assert_each_trial_finished_once,
    parents,
    run_args,
    store,
    trial_runs,
)

pytestmark = pytest.mark.e2e

@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    s = store(tmp)
    proc = run_cli(*run_args(s, "--workers", "1"), env={**s["env"], "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return s, proc


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
        # the printed table shows the same numbers as the parent runs (n, imputed, mean ± std)
        pattern = r"\S*(?: \(baseline\))?\s*│\s*3\s*│\s*0\s*│\s*([\d.]+) ± ([\d.]+)"
        row = re.search(re.escape(name) + pattern, proc.stdout)
        assert row, proc.stdout
        assert float(row.group(1)) == pytest.approx(m["mean_test_accuracy"], abs=5e-5)
        assert float(row.group(2)) == pytest.approx(m["std_test_accuracy"], abs=5e-5)
    assert "9 finished" in proc.stdout


def test_rerun_of_a_finished_study_runs_nothing(one_worker):
    s, _ = one_worker
    proc = run_cli(*run_args(s), env=s["env"])
    assert proc.returncode == 0, proc.stderr
    assert "nothing to run" in proc.stdout
    assert len(trial_runs(s["uri"])) == 9


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
    # at 80 columns (a pipe, a CI log) nothing the user came for is cut
    narrow = run_cli("report", STUDY, "--tracking-uri", s["uri"], "--out", str(out),
                     env={**s["env"], "COLUMNS": "80"})
    assert narrow.returncode == 0 and "…" not in narrow.stdout, narrow.stdout
    flat = " ".join(narrow.stdout.split())
    for name, r in ct.iterrows():
        assert name in flat and r["verdict"] in flat
        assert f"[{r['diff_ci_low']:.4f}, {r['diff_ci_high']:.4f}]" in flat
    for name in vt.index:
        assert name in flat
    c = MlflowClient(s["uri"])
    for p in parents(s["uri"]):  # the parent runs carry the report's numbers
        name, m = p.data.tags["ablab.variant"], p.data.metrics
        assert m["iqm_test_accuracy"] == pytest.approx(vt.loc[name, "iqm"])
        assert m["n_seeds"] == vt.loc[name, "n"] == 3
        if name in ct.index:
            assert m["prob_improvement_test_accuracy"] == pytest.approx(
                ct.loc[name, "prob_improvement"])
            assert p.data.tags["ablab.verdict_test_accuracy"] == ct.loc[name, "verdict"]
    # every metric (issue 30): costs per variant on the parents, the table, the trade-off plot
    costs = pd.read_csv(out / "metrics.csv")
    assert set(costs["metric"]) == {"n_params", "flops_per_example", "latency_ms",
                                    "train_time_s"}
    assert set(costs.loc[costs["metric"] == "n_params", "verdict"]) <= {"baseline",
                                                                         "equal (exact)"}
    assert (out / "tradeoffs.png").exists() and "Pareto set over" in flat
    for p in parents(s["uri"]):
        m, tags = p.data.metrics, p.data.tags
        assert m["mean_n_params"] > 0 and m["mean_latency_ms"] > 0
        assert m["ci95_low_latency_ms"] >= 0 and tags["ablab.pareto"] in ("true", "false")
        assert "ablab.verdict_latency_ms" in tags
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


def test_a_study_on_two_fingerprints_says_so_and_compares_on_one(one_worker, tmp_path):
    """Issue 30: a fourth seed trained with oneDNN off (TF_ENABLE_ONEDNN_OPTS=0: another
    fingerprint on the same machine). The report names both fingerprints with their variants
    and seeds; --where fingerprint=... compares on the first one alone. Runs last: it adds
    seeds to the module's shared study."""
    import pandas as pd

    s, _ = one_worker
    proc = run_cli(*run_args(s, "--workers", "1", seeds="4"),
                   env={**s["env"], "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = trial_runs(s["uri"])
    by_seed = {(r.data.tags["ablab.seed"], r.data.tags["ablab.fp.onednn"]) for r in runs}
    assert {o for seed, o in by_seed if seed == "3"} == {"off"}
    assert {o for seed, o in by_seed if seed != "3"} == {"on"}
    on = next(r.data.tags["ablab.fingerprint"] for r in runs
              if r.data.tags["ablab.seed"] == "0")
    out = tmp_path / "mixed"
    proc = run_cli("report", STUDY, "--tracking-uri", s["uri"], "--out", str(out),
                   env={**s["env"], "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flat = " ".join(proc.stdout.split())
    assert "The trials ran on 2 machine fingerprints" in flat
    assert "onednn off" in flat and "seeds 3" in flat and "seeds 0-2" in flat
    assert "not comparable" in (out / "summary.md").read_text()
    proc = run_cli("report", STUDY, "--tracking-uri", s["uri"], "--out", str(out),
                   "--where", f"fingerprint={on}", env=s["env"])
    assert proc.returncode == 0 and "machine fingerprints" not in proc.stdout
    assert set(pd.read_csv(out / "summary.csv")["n"]) == {3}
