"""A variant's parent run holds the numbers the report shows: the same mean, counted with the
study's `missing_as`, right after `ablab run` (written by the worker after each trial) and
after a later `ablab report`. SGD at lr 1e4 on 8x8 digits diverges (NaN loss) for most seeds:
a real diverged seed, counted at chance (1/10)."""

import math

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.e2e.helpers import parents, store, trial_runs

NAME = "diverging"


def parent_means(uri: str) -> dict[str, float]:
    return {p.data.tags["ablab.variant"]: p.data.metrics.get("mean_test_accuracy", math.nan)
            for p in parents(uri, NAME)}


def test_parent_means_equal_the_report_with_a_diverged_seed(tmp_path):
    (tmp_path / f"{NAME}.yaml").write_text(
        "base: digits_cnn\nset: {data.image_size: 8, train.epochs: 1, model.depth: 1,"
        " data.max_samples: 400, train.optimizer: sgd, train.lr: 0.01}\n"
        "vary:\n  lr: [0.01, 10000.0]\nseeds: 2\nmissing_as: chance\n")
    s = store(tmp_path)
    proc = run_cli("run", str(tmp_path / f"{NAME}.yaml"), "--tracking-uri", s["uri"],
                   "--storage", s["storage"], "--no-report", env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcomes = [r.data.tags["ablab.outcome"] for r in trial_runs(s["uri"], NAME)]
    assert "diverged" in outcomes, outcomes
    after_run = parent_means(s["uri"])

    out = tmp_path / "report"
    proc = run_cli("report", str(tmp_path / f"{NAME}.yaml"), "--tracking-uri", s["uri"],
                   "--out", str(out), env=s["env"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = pd.read_csv(out / "summary.csv").set_index("variant")
    after_report = parent_means(s["uri"])
    assert set(after_run) == set(summary.index) == {"lr=0.01", "lr=10000"}
    for name in summary.index:
        assert after_run[name] == pytest.approx(summary.loc[name, "mean"]), name
        assert after_report[name] == pytest.approx(summary.loc[name, "mean"]), name
    # the diverged seeds count at chance: the mean is not the survivors' alone
    big = summary.loc["lr=10000"]
    assert big["imputed"] >= 1 and big["n"] == 2
    survivors = [r.data.metrics["test_accuracy"] for r in trial_runs(s["uri"], NAME)
                 if r.data.tags["ablab.variant"] == "lr=10000"
                 and "test_accuracy" in r.data.metrics]
    assert big["mean"] == pytest.approx((sum(survivors) + 0.1 * big["imputed"]) / 2)
