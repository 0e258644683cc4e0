"""Verdicts, third pass (issue 31): each case reproduced through the tables a user sees
(`variant_table`, `comparison_table`, their rendering), and where the case is about a rate,
measured: exactly (by enumerating every outcome) and by simulation beside it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from core import imputation, permutation, stats
from core.ablation.analysis import CAVEAT_P, comparison_table, failure_caveat, variant_table
from core.ablation.render import COMPARISON_COLUMNS, VARIANT_COLUMNS, markdown, with_delta


def frame(arms: dict[str, tuple[np.ndarray, list[str]]], baseline: str,
          metric: str = "test_accuracy", n_classes: int = 2,
          n_test: float | None = None) -> pd.DataFrame:
    """Trial runs as `load_runs` gives them: NaN metric where an outcome has none."""
    rows = []
    for name, (values, outcomes) in arms.items():
        for seed, (v, o) in enumerate(zip(values, outcomes, strict=True)):
            rows.append({"variant": name, "seed": seed, "status": "FINISHED", "outcome": o,
                         "baseline": name == baseline, metric: v, "n_classes": n_classes,
                         "start_time": seed, "run_id": f"{name}-{seed}", "parent": name,
                         **({"n_test": n_test} if n_test else {})})
    return pd.DataFrame(rows)


def rejects_and_excludes_zero_agree(row) -> bool:
    decided = row["verdict"].startswith(("better", "worse"))
    return decided == (not row["diff_ci_low"] <= 0 <= row["diff_ci_high"])


# ----------------------------------------------------------------------------- case 1


def test_case1_a_loss_metric_never_rewards_divergence():
    """test_loss, missing_as chance: 5 of 10 variant seeds diverge, the survivors score 0.80,
    worse than ln 2 = 0.69. Counting a diverged seed as ln 2 made the variant 'better';
    it now counts as the worst loss its own seeds scored, so the variant cannot gain."""
    rng = np.random.default_rng(1)
    base = 0.78 + rng.normal(0, 0.01, 10)
    survivors = 0.80 + rng.normal(0, 0.01, 10)
    variant = np.where(np.arange(10) % 2 == 0, np.nan, survivors)
    runs = frame({"base": (base, ["ok"] * 10),
                  "v": (variant, ["diverged", "ok"] * 5)}, "base", metric="test_loss")
    for missing_as in ("chance", "worst"):
        row = comparison_table(runs, "test_loss", "minimize", missing_as=missing_as).iloc[0]
        assert row["diff"] > 0, missing_as  # the variant's loss rose
        assert not row["verdict"].startswith("better")
    filled = imputation.impute("chance", "test_loss", "minimize", 2,
                               np.concatenate([base, survivors]), own=survivors)
    assert filled == pytest.approx(survivors.max())
    # where survivors beat chance, chance is still what a diverged seed counts as
    assert imputation.impute("chance", "test_loss", "minimize", 2, np.array([0.3, 0.4])) == \
        pytest.approx(math.log(2))
    assert imputation.impute("chance", "test_accuracy", "maximize", 10, np.array([0.8, 0.9])) == \
        pytest.approx(0.1)


def test_case1_a_failed_seed_never_improves_a_variant_whatever_the_metric():
    """For any metric and direction, replacing a survivor by a failed seed never moves the
    variant's mean the better way."""
    rng = np.random.default_rng(2)
    for metric, direction, k in (("test_accuracy", "maximize", 10),
                                 ("test_loss", "minimize", 3), ("test_macro_f1", "maximize", 5),
                                 ("test_kappa", "maximize", 4), ("test_time_s", "minimize", 2)):
        for _ in range(20):
            values = rng.uniform(0.05, 3.0, 12)
            fill = imputation.impute("chance", metric, direction, k, values)
            worst = values.min() if direction == "maximize" else values.max()
            assert (fill <= worst) if direction == "maximize" else (fill >= worst), metric


# ----------------------------------------------------------------------------- case 2


def caveat_rate_exact(rate_b: float, rate_v: float, n: int = 10) -> float:
    """P(the caveat fires) for n paired seeds failing independently at these rates: every
    (only-variant, only-baseline) count enumerated with its multinomial probability."""
    pv, pb = rate_v * (1 - rate_b), rate_b * (1 - rate_v)
    total = 0.0
    for v in range(1, n + 1):
        for b in range(n + 1 - v):
            prob = st.multinomial.pmf([v, b, n - v - b], n, [pv, pb, 1 - pv - pb])
            fv = np.array([True] * v + [False] * (n - v))
            fb = np.array([False] * v + [True] * b + [False] * (n - v - b))
            total += prob * bool(failure_caveat((fb, fv), paired=True))
    return total


def caveat_rate_simulated(rate_b: float, rate_v: float, paired: bool, n: int = 10,
                          studies: int = 4000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    fires = 0
    for _ in range(studies):
        fb, fv = rng.random(n) < rate_b, rng.random(n) < rate_v
        fires += bool(failure_caveat((fb, fv), paired))
    return fires / studies


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.10])
def test_case2_the_caveat_is_rare_when_both_arms_fail_alike(rate):
    """Must hold 2: at most 3% with equal failure rates up to 10% (n = 10): exactly 0, 0.7%
    and 2.97% (McNemar, paired). Simulated beside it, paired and unpaired (Fisher)."""
    exact = caveat_rate_exact(rate, rate)
    assert exact <= 0.03
    for paired in (True, False):
        sim = caveat_rate_simulated(rate, rate, paired)
        assert sim <= 0.03 + 3 * math.sqrt(0.03 * 0.97 / 4000), (paired, sim)
    if rate == 0:
        assert exact == 0


def test_case2_the_caveat_speaks_when_the_variant_fails_more():
    """Must hold 2: at least 60% when the variant fails 30% and the baseline 0% (n = 10):
    exactly 61.7%; simulated, paired and unpaired."""
    assert caveat_rate_exact(0.0, 0.3) >= 0.60
    for paired in (True, False):
        assert caveat_rate_simulated(0.0, 0.3, paired, studies=2000) >= 0.57


def test_case2_the_caveat_is_the_exact_test_it_names():
    fb = np.zeros(10, bool)
    fv = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    text = failure_caveat((fb, fv), paired=True)
    assert "3/10 against the baseline's 0/10" in text and "McNemar p 0.12" in text
    assert st.binomtest(3, 3, 0.5, alternative="greater").pvalue < CAVEAT_P
    fv[1:] = False  # one failure: p 0.5, silent
    assert failure_caveat((fb, fv), paired=True) == ""


def test_case2_nothing_failed_means_no_caveat_and_no_empty_line():
    """A 'better' with no failure anywhere (as bn_trainable on a fresh clone): no caveat, and
    the console card prints no empty 'caveat:' line; the neutral failures column stays."""
    from rich.console import Console

    from core.ablation.render import show

    rng = np.random.default_rng(4)
    base = 0.9 + rng.normal(0, 0.01, 10)
    runs = frame({"base": (base, ["ok"] * 10),
                  "v": (base + 0.03 + rng.normal(0, 0.005, 10), ["ok"] * 10)}, "base")
    ct = comparison_table(runs, delta=0.01)
    assert ct.iloc[0]["verdict"] == "better" and ct.iloc[0]["caveat"] == ""
    console = Console(width=80, record=True)
    show(console, COMPARISON_COLUMNS, with_delta(ct, 0.01), "cards")
    out = console.export_text()
    assert "caveat" not in out and "verdict: better" in out
    vt = variant_table(runs)
    assert "0/10 [0.00, 0.31]" in "\n".join(markdown(VARIANT_COLUMNS, vt))


# ----------------------------------------------------------------------------- cases 3, 4


def test_case3_an_unpaired_arm_of_two_seeds_with_unequal_failures_one_test_decides():
    """Two baseline seeds against six variant seeds, two of them collapsed (unpaired: too
    few common seeds). p and interval both come from the conditional permutation test, so
    the verdict and the CI agree."""
    a = np.array([0.80, 0.82])
    b = np.array([0.90, 0.91, 0.92, 0.93, 0.10, 0.12])
    runs = frame({"base": (a, ["ok"] * 2), "v": (b, ["ok"] * 4 + ["collapsed"] * 2)}, "base")
    runs.loc[runs["variant"] == "v", "seed"] += 10  # no seed in common: unpaired
    row = comparison_table(runs).iloc[0]
    flags = (np.zeros(2, bool), np.array([0, 0, 0, 0, 1, 1], bool))
    assert row["test"] == "permutation" and not row["paired"]
    assert row["p_value"] == pytest.approx(permutation.permutation_p(a, b, flags))
    lo, hi = permutation.permutation_interval(a, b, row["ci_level"], flags)
    assert (row["diff_ci_low"], row["diff_ci_high"]) == (pytest.approx(max(lo, -1)),
                                                         pytest.approx(min(hi, 1)))
    assert rejects_and_excludes_zero_agree(row)


def random_study(rng) -> pd.DataFrame:
    """A small study the permutation tests decide: arms of 2-8 seeds, some collapsed."""
    n_a, n_b = rng.integers(2, 9, 2)
    paired = rng.random() < 0.5
    if paired:
        n_b = n_a
    a = 0.8 + rng.normal(0, 0.03, n_a)
    b = 0.8 + rng.normal(rng.choice([0, 0.03, 0.06]), 0.03, n_b)
    oa = np.where(rng.random(n_a) < 0.15, "collapsed", "ok")
    ob = np.where(rng.random(n_b) < 0.25, "collapsed", "ok")
    a[oa == "collapsed"], b[ob == "collapsed"] = 0.1, 0.1
    runs = frame({"base": (a, list(oa)), "v": (b, list(ob))}, "base")
    if not paired:
        runs.loc[runs["variant"] == "v", "seed"] += 100
    return runs


def test_cases3_and_4_verdict_and_interval_agree_in_every_small_study():
    """Across random small studies (paired and not, unequal failures, arms of 2 seeds, and
    permutation p-values landing exactly on alpha), 'better'/'worse' is said exactly when
    the Holm CI beside it excludes 0."""
    rng = np.random.default_rng(31)
    tested = 0
    for _ in range(120):
        row = comparison_table(random_study(rng)).iloc[0]
        if row["test"] in ("sign-flip", "permutation"):
            tested += 1
            assert rejects_and_excludes_zero_agree(row), row.to_dict()
    assert tested >= 40


def test_case4_p_equal_to_alpha_rejects_everywhere():
    """A permutation p of exactly 0.05 (1 in 20 splits of 3 + 3 seeds, one-sided tail 1/20
    made two-sided by symmetry... found by search over sign-flip studies) is a rejection
    for the verdict, for Holm's step and for the interval alike."""
    assert permutation.rejects(0.05, 0.05) and not permutation.rejects(0.0500001, 0.05)
    assert stats.verdict({"diff": 1.0, "n_base": 3, "n_variant": 3}, 0.05, math.nan,
                         "maximize", None) == "better"
    assert stats.holm_levels([0.05])[0] == pytest.approx(0.95)
    assert stats.holm_levels([0.025, 0.05]) == pytest.approx([0.975, 0.95])
    rng = np.random.default_rng(5)
    for _ in range(5000):  # sign-flip studies of 10 pairs with 4 failures: p on a grid
        d = rng.normal(0.02, 0.03, 10)
        flags = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
        p = permutation.signflip_p(d, flags)
        if abs(p - 0.05) < 1e-12:
            break
    else:
        pytest.fail("no study with p = 0.05 found")
    lo, hi = permutation.signflip_interval(d, 0.95, flags)
    assert not lo <= 0 <= hi  # rejected at p = alpha: 0 is outside


# ----------------------------------------------------------------------------- case 5


def test_case5_equivalent_rows_show_the_interval_tost_decided_on():
    """Where the sign-flip test decides (unequal failures), TOST is by the sign-flip test
    too and the row shows its interval: every 'equivalent within ±delta' lies inside it."""
    rng = np.random.default_rng(55)
    said = 0
    for _ in range(150):
        base = 0.9 + rng.normal(0, 0.004, 10)
        other = base + rng.normal(0, 0.002, 10)
        outcomes = ["ok"] * 10
        k = rng.integers(1, 3)
        other[:k] = np.nan  # failed: imputed as chance, a failed seed on one side only
        outcomes[:k] = ["diverged"] * k
        runs = frame({"base": (base, ["ok"] * 10), "v": (other, outcomes)}, "base",
                     n_classes=2)
        for row in comparison_table(runs, delta=0.5).to_dict("records"):
            assert row["test"] == "sign-flip"
            if row["verdict"].startswith("equivalent"):
                said += 1
                assert row["diff_ci_low"] >= -0.5 and row["diff_ci_high"] <= 0.5, row
    assert said >= 10


def test_case5_sign_flip_tost_matches_its_one_sided_tests():
    d = np.array([0.01, -0.02, 0.015, 0.0, 0.005, -0.01, 0.02, 0.01])
    delta = 0.05
    p = max(permutation.signflip_p(d + delta, side="greater"),
            permutation.signflip_p(d - delta, side="less"))
    lo, hi = permutation.signflip_interval(d, 1 - 2 * 0.05, one_sided=True)
    assert (p <= 0.05) == (-delta <= lo and hi <= delta)


# ----------------------------------------------------------------------------- case 6


@pytest.mark.parametrize("metric", ["test_macro_f1", "test_balanced_accuracy", "test_auc",
                                    "test_recall_1"])
def test_case6_a_bounded_metric_at_its_bound_gets_a_floor(metric):
    runs = frame({"a": (np.ones(5), ["ok"] * 5)}, "a", metric=metric, n_test=90)
    row = variant_table(runs, metric).iloc[0]
    assert row["ci95_high"] - row["ci95_low"] > 0.005 and row["ci_note"] == ""


def test_case6_without_the_test_set_size_the_interval_is_undefined_and_says_why():
    runs = frame({"a": (np.ones(5), ["ok"] * 5)}, "a", metric="test_macro_f1")
    row = variant_table(runs, "test_macro_f1").iloc[0]
    assert math.isnan(row["ci95_low"]) and math.isnan(row["ci95_high"])
    assert "test set's size was not logged" in row["ci_note"]
    md = "\n".join(markdown(VARIANT_COLUMNS, variant_table(runs, "test_macro_f1")))
    assert "[-, -] (every seed scored 1" in md


# ----------------------------------------------------------------------------- case 7


def test_case7_seed_planning_shows_on_undecided_rows_only_and_says_what_it_is():
    rng = np.random.default_rng(7)
    base = 0.9 + rng.normal(0, 0.01, 10)
    runs = frame({"base": (base, ["ok"] * 10),
                  "better": (base + 0.05 + rng.normal(0, 0.005, 10), ["ok"] * 10),
                  "same": (base + rng.normal(0, 0.01, 10), ["ok"] * 10)}, "base")
    ct = with_delta(comparison_table(runs, delta=0.01), 0.01).set_index("variant")
    text = dict(zip(ct.index, [r[-1] for r in
                               (line.split(" | ") for line in markdown(
                                   COMPARISON_COLUMNS, ct.reset_index())[2:])], strict=True))
    assert ct.loc["better", "verdict"] == "better" and text["better"].strip(" |") == ""
    assert ct.loc["same", "verdict"] == "inconclusive"
    assert text["same"].strip(" |").endswith("to detect ±0.01")


# ----------------------------------------------------------------------------- also


def test_a_trivial_interval_says_why_in_words():
    """Three pairs, a sign-flip test (one side failed more): its smallest p is 2/8 = 0.25,
    so no shift is rejected at 95% and the interval is the whole range; the row says so."""
    base = np.array([0.9, 0.91, 0.92])
    runs = frame({"base": (base, ["ok"] * 3), "v": (np.array([0.93, 0.1, 0.94]),
                                                  ["ok", "collapsed", "ok"])}, "base")
    ct = comparison_table(runs)
    line = "\n".join(markdown(COMPARISON_COLUMNS, with_delta(ct, None)))
    assert ct.iloc[0]["test"] == "sign-flip"
    assert "any difference: 3 pairs cannot reject at 95.0%, the smallest sign-flip p is 0.25" \
        in line
    assert "failures 0 vs 1" in line


def test_pocock_with_few_looks_warns():
    from core.ablation.spec import AdaptiveSeeds

    with pytest.warns(UserWarning, match="Pocock spending with 3 looks gives up 12-17"):
        AdaptiveSeeds(min=3, max=9, step=3, spending="pocock")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AdaptiveSeeds(min=3, max=9, step=3, spending="obf")
