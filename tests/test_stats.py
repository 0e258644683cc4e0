"""The report's numbers against independent scipy / statsmodels computations, to 1e-9."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from core import stats
from core.ablation.report import comparison_table, variant_table

TOL = 1e-9
BASE = np.array([0.91, 0.93, 0.90, 0.94, 0.92, 0.95])
BETTER = np.array([0.95, 0.96, 0.94, 0.97, 0.95, 0.98])
TIES = np.array([0.92, 0.94, 0.91, 0.95, 0.93, 0.96])  # every difference is +0.01: all ties
WORSE = np.array([0.70, 0.75, 0.72, 0.69, 0.74, 0.71])


def runs_frame(groups: dict[str, tuple[list[int], np.ndarray]], baseline: str,
               outcomes: dict[str, list[str]] | None = None) -> pd.DataFrame:
    rows = []
    for name, (seeds, vals) in groups.items():
        for i, (s, v) in enumerate(zip(seeds, vals, strict=True)):
            rows.append({"variant": name, "seed": s, "status": "FINISHED",
                         "outcome": (outcomes or {}).get(name, ["ok"] * len(seeds))[i],
                         "baseline": name == baseline, "test_accuracy": v,
                         "test_loss": 1 - v, "epochs_run": 10, "train_time_s": 5.0,
                         "trial_hash": f"{name}-{s}", "run_id": f"{name}-{s}"})
    return pd.DataFrame(rows)


def approx(x):
    return pytest.approx(x, abs=TOL, nan_ok=True)


def test_per_variant_matches_scipy():
    runs = runs_frame({"a": (list(range(6)), BASE)}, "a")
    row = variant_table(runs, "test_accuracy").iloc[0]
    sem = BASE.std(ddof=1) / math.sqrt(6)
    lo, hi = st.t.interval(0.95, 5, loc=BASE.mean(), scale=sem)
    assert row["mean"] == approx(BASE.mean())
    assert row["std"] == approx(np.std(BASE, ddof=1))
    assert row["ci95_low"] == approx(lo) and row["ci95_high"] == approx(hi)
    assert row["median"] == approx(np.median(BASE))
    assert (row["min"], row["max"]) == (BASE.min(), BASE.max())
    boot = st.bootstrap((BASE,), np.mean, n_resamples=stats.BOOTSTRAP_RESAMPLES, method="BCa",
                        random_state=np.random.default_rng(0)).confidence_interval
    assert row["boot_ci95_low"] == approx(boot.low)
    assert row["boot_ci95_high"] == approx(boot.high)


def test_paired_comparisons_match_scipy_and_statsmodels():
    runs = runs_frame({"base": (list(range(6)), BASE), "better": (list(range(6)), BETTER),
                       "worse": (list(range(6)), WORSE)}, "base")
    ct = comparison_table(runs, "test_accuracy", "maximize").set_index("variant")
    d = BETTER - BASE
    r = ct.loc["better"]
    assert bool(r["paired"]) and r["test"] == "paired t"
    assert r["diff"] == approx(d.mean())
    lo, hi = st.t.interval(0.95, 5, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(6))
    assert r["diff_ci95_low"] == approx(lo) and r["diff_ci95_high"] == approx(hi)
    assert r["p_value"] == approx(st.ttest_rel(BETTER, BASE).pvalue)
    assert r["p_wilcoxon"] == approx(st.wilcoxon(BETTER, BASE).pvalue)
    p_raw = [st.ttest_rel(BETTER, BASE).pvalue, st.ttest_rel(WORSE, BASE).pvalue]
    p_holm = multipletests(p_raw, method="holm")[1]
    assert ct.loc["better", "p_holm"] == approx(p_holm[0])
    assert ct.loc["worse", "p_holm"] == approx(p_holm[1])
    n_power = TTestPower().solve_power(effect_size=abs(d.mean() / d.std(ddof=1)), alpha=0.05,
                                       power=0.8)
    assert r["seeds_for_80_power"] == max(2, math.ceil(n_power))
    assert ct.loc["better", "verdict"] == "better"
    assert ct.loc["worse", "verdict"] == "worse"


def test_wilcoxon_with_ties():
    runs = runs_frame({"base": (list(range(6)), BASE), "ties": (list(range(6)), TIES)}, "base")
    r = comparison_table(runs, "test_accuracy").iloc[0]
    assert r["p_wilcoxon"] == approx(st.wilcoxon(TIES, BASE).pvalue)
    assert r["p_value"] == approx(st.ttest_rel(TIES, BASE).pvalue)


def test_unpaired_uses_welch_and_hedges_g():
    b = np.array([0.89, 0.92, 0.90, 0.91])  # different seeds, moderate effect
    runs = runs_frame({"base": (list(range(6)), BASE), "other": ([10, 11, 12, 13], b)}, "base")
    r = comparison_table(runs, "test_accuracy").iloc[0]
    assert not bool(r["paired"]) and r["test"] == "Welch t"
    assert r["p_value"] == approx(st.ttest_ind(b, BASE, equal_var=False).pvalue)
    assert math.isnan(r["p_wilcoxon"])
    # Welch CI by hand
    va, vb = BASE.var(ddof=1) / 6, b.var(ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 5 + vb**2 / 3)
    lo, hi = st.t.interval(0.95, df, loc=b.mean() - BASE.mean(), scale=math.sqrt(va + vb))
    assert r["diff_ci95_low"] == approx(lo) and r["diff_ci95_high"] == approx(hi)
    # Hedges' g by hand
    sp = math.sqrt((5 * BASE.var(ddof=1) + 3 * b.var(ddof=1)) / 8)
    g = (1 - 3 / (4 * 10 - 9)) * (b.mean() - BASE.mean()) / sp
    assert r["hedges_g"] == approx(g)
    n = TTestIndPower().solve_power(effect_size=abs(g), alpha=0.05, power=0.8)
    assert r["seeds_for_80_power"] == max(2, math.ceil(n))


def test_n_equals_two():
    a, b = np.array([0.90, 0.92]), np.array([0.95, 0.96])
    runs = runs_frame({"a": ([0, 1], a), "b": ([0, 1], b)}, "a")
    row = variant_table(runs, "test_accuracy").set_index("variant").loc["a"]
    lo, hi = st.t.interval(0.95, 1, loc=a.mean(), scale=a.std(ddof=1) / math.sqrt(2))
    assert row["ci95_low"] == approx(lo) and row["ci95_high"] == approx(hi)
    r = comparison_table(runs, "test_accuracy").iloc[0]
    assert r["p_value"] == approx(st.ttest_rel(b, a).pvalue)
    assert r["p_wilcoxon"] == approx(st.wilcoxon(b, a).pvalue)
    assert r["verdict"].startswith("no detectable difference with n=2")


def test_zero_variance():
    same = np.full(5, 0.9)
    runs = runs_frame({"a": (list(range(5)), same), "b": (list(range(5)), same.copy())}, "a")
    row = variant_table(runs, "test_accuracy").iloc[0]
    assert row["std"] == 0 and row["ci95_low"] == row["ci95_high"] == approx(0.9)
    assert row["boot_ci95_low"] == row["boot_ci95_high"] == approx(0.9)
    r = comparison_table(runs, "test_accuracy").iloc[0]
    assert r["diff"] == 0 and r["p_value"] == 1.0 and r["p_wilcoxon"] == 1.0
    assert math.isinf(r["seeds_for_80_power"])
    # constant but different: a shift with no noise is as certain as it gets (scipy agrees)
    runs = runs_frame({"a": (list(range(5)), same), "b": (list(range(5)), same + 0.05)}, "a")
    r = comparison_table(runs, "test_accuracy").iloc[0]
    with np.errstate(all="ignore"):
        assert r["p_value"] == approx(st.ttest_rel(same + 0.05, same).pvalue)
    assert r["diff"] == approx(0.05)


def test_minimize_direction_and_other_metrics():
    runs = runs_frame({"base": (list(range(6)), BASE), "better": (list(range(6)), BETTER)},
                      "base")
    ct = comparison_table(runs, "test_loss", "minimize").iloc[0]
    assert ct["diff"] == approx((1 - BETTER).mean() - (1 - BASE).mean())
    assert ct["verdict"] == "better"  # lower loss is better


def test_collapse_rate_and_counts():
    runs = runs_frame({"a": (list(range(4)), BASE[:4])}, "a",
                      outcomes={"a": ["ok", "collapsed", "collapsed", "diverged"]})
    runs.loc[3, "test_accuracy"] = np.nan
    failed = runs.iloc[[0]].assign(status="FAILED", seed=9)
    row = variant_table(pd.concat([runs, failed]), "test_accuracy").iloc[0]
    assert row["collapse_rate"] == 0.5 and row["collapsed"] == 2
    assert row["diverged"] == 1 and row["failed"] == 1 and row["n"] == 3


def test_holm_ignores_nan():
    assert stats.holm([0.01, math.nan, 0.04])[0] == approx(
        multipletests([0.01, 0.04], method="holm")[1][0])
    assert math.isnan(stats.holm([0.01, math.nan])[1])
