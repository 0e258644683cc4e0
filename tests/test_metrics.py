"""Several metrics, one study (core/ablation/metrics.py): each with its direction and
verdict, exact quantities compared as values, the Pareto set, the ablation's `metrics:`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.ablation.metrics import Metric, metric_list, metric_table, pareto
from core.config import validate_model


def head_like_runs() -> pd.DataFrame:
    """Three heads x 5 seeds: flatten_dense has more parameters and FLOPs and is slower."""
    rng = np.random.default_rng(0)
    rows = []
    shape = {"gap": (20_330, 711_228, 5.0), "flatten_dense": (36_778, 743_804, 9.0),
             "gap_dense": (24_490, 719_484, 6.0)}
    for v, (params, flops, latency) in shape.items():
        for s in range(5):
            rows.append({"variant": v, "seed": s, "status": "FINISHED", "outcome": "ok",
                         "baseline": v == "gap", "start_time": s, "n_classes": 10,
                         "test_accuracy": 0.9 + rng.normal(0, 0.01), "n_params": params,
                         "flops_per_example": flops, "latency_ms": latency + rng.normal(0, 0.1),
                         "train_time_s": 4 + rng.normal(0, 0.1), "run_id": f"{v}{s}",
                         "parent": v})
    return pd.DataFrame(rows)


def test_costs_get_verdicts_in_their_direction_exact_ones_without_a_test():
    metrics = metric_list("test_accuracy", "maximize", None)
    assert [(m.name, m.direction) for m in metrics] == [
        ("test_accuracy", "maximize"), ("n_params", "minimize"),
        ("flops_per_example", "minimize"), ("latency_ms", "minimize"),
        ("train_time_s", "minimize")]
    t = metric_table(head_like_runs(), metrics[1:]).set_index(["variant", "metric"])
    assert t.loc[("flatten_dense", "n_params"), "verdict"] == "worse (exact)"
    assert t.loc[("flatten_dense", "n_params"), "diff"] == 36_778 - 20_330
    assert t.loc[("gap", "n_params"), "verdict"] == "baseline"
    assert np.isnan(t.loc[("gap_dense", "flops_per_example"), "ci95_low"])  # a value, exact
    assert t.loc[("flatten_dense", "latency_ms"), "verdict"] == "worse"  # tested, with a CI
    lo, hi = t.loc[("flatten_dense", "latency_ms"), ["diff_ci_low", "diff_ci_high"]]
    assert 0 < lo < 4 < hi
    # fewer parameters than the baseline is better
    runs = head_like_runs()
    runs.loc[runs["variant"] == "gap_dense", "n_params"] = 10_000
    t = metric_table(runs, [Metric("n_params", "minimize")]).set_index("variant")
    assert t.loc["gap_dense", "verdict"] == "better (exact)"


def test_the_pareto_set_over_accuracy_and_costs():
    rows = [("a", "acc", 0.90), ("a", "n_params", 100), ("b", "acc", 0.95),
            ("b", "n_params", 200), ("c", "acc", 0.89), ("c", "n_params", 150)]
    table = pd.DataFrame(rows, columns=["variant", "metric", "mean"])
    metrics = [Metric("acc", "maximize"), Metric("n_params", "minimize")]
    assert pareto(table, metrics) == ["a", "b"]  # c: worse than a on both


def test_an_ablation_names_its_metrics_the_first_is_primary():
    from core.ablation.spec import Ablation

    ab = validate_model(Ablation, {"base": "digits_cnn", "vary": {"head": ["gap_dense"]},
                                   "metrics": [{"test_loss": "minimize"}, "latency_ms",
                                               {"throughput_per_s": "maximize"}]}, "t")
    assert (ab.metric, ab.direction) == ("test_loss", "minimize")
    ms = metric_list(ab.metric, ab.direction, ab.metrics[1:])
    assert [(m.name, m.direction) for m in ms] == [("test_loss", "minimize"),
                                                  ("latency_ms", "minimize"),
                                                  ("throughput_per_s", "maximize")]
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="metrics"):
        validate_model(Ablation, {"base": "digits_cnn", "metrics": [{"x": "up"}]}, "t")
