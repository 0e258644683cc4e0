"""The verdict rule tested the way statisticians test one: by simulating many studies of
quantized accuracies (pure numpy, seconds) and measuring how often it is wrong.

A simulated study: K = 10 classes, 300 test images, seeds that shift every variant alike
(what makes pairing pay) plus each run's own noise, and the test set's binomial noise on top:
accuracy = Binomial(300, p_seed) / 300.
"""

import math

import numpy as np
import pytest
from scipy import stats as st

from core import planning, stats

STUDIES = 1500
N_TEST = 300
ALPHA = 0.05


def mc_error(p: float, n: int = STUDIES) -> float:
    """Three standard errors of a rate estimated from n simulated studies."""
    return 3 * math.sqrt(p * (1 - p) / n)


def simulate(rng, n_seeds: int, true_diffs: list[float], base: float = 0.85,
             seed_sd: float = 0.02, run_sd: float = 0.008) -> list[np.ndarray]:
    """Accuracies of a baseline and one variant per true difference, paired by seed."""
    shared = rng.normal(0, seed_sd, n_seeds)
    out = []
    for diff in [0.0, *true_diffs]:
        p = np.clip(base + diff + shared + rng.normal(0, run_sd, n_seeds), 0, 1)
        out.append(rng.binomial(N_TEST, p) / N_TEST)
    return out


def decide(arms: list[np.ndarray], delta: float | None = None) -> list[dict]:
    """The report's rule on one simulated study: compare, Holm, Holm-consistent CIs, verdict."""
    base = arms[0]
    rows = [stats.compare(base, b, paired=True, delta=delta, bounds=(0, 1), extras=False)
            for b in arms[1:]]
    p_holm = stats.holm([r["p_value"] for r in rows])
    p_tost = stats.holm([r["p_tost"] for r in rows])
    levels = stats.holm_levels([r["p_value"] for r in rows])
    for r, ph, pt, lv in zip(rows, p_holm, p_tost, levels, strict=True):
        r["verdict"] = stats.verdict(r, ph, pt, "maximize", delta)
        r["ci"] = stats.diff_interval(r, lv if math.isfinite(lv) else 0.95, (0, 1))
    return rows


def test_no_true_difference_gives_few_false_verdicts():
    """A/A and A/A/A/A: the family-wise rate of a false better/worse stays at alpha."""
    rng = np.random.default_rng(0)
    one = np.mean([decide(simulate(rng, 10, [0.0]))[0]["verdict"] in ("better", "worse")
                   for _ in range(STUDIES)])
    three = np.mean([any(r["verdict"] in ("better", "worse")
                         for r in decide(simulate(rng, 10, [0.0, 0.0, 0.0])))
                     for _ in range(STUDIES)])
    print(f"false better/worse: one comparison {one:.3f}, any of three (Holm) {three:.3f}")
    assert one <= ALPHA + mc_error(ALPHA)
    assert three <= ALPHA + mc_error(ALPHA)


@pytest.mark.parametrize("n_seeds", [5, 10])
def test_the_difference_interval_covers_the_true_difference(n_seeds):
    rng = np.random.default_rng(1)
    true = 0.01
    covered = []
    for _ in range(STUDIES):
        lo, hi = decide(simulate(rng, n_seeds, [true]))[0]["ci"]
        covered.append(lo <= true <= hi)
    coverage = float(np.mean(covered))
    print(f"coverage of the 95% difference CI at n={n_seeds}: {coverage:.3f}")
    assert coverage >= 0.93


def test_equivalent_is_rarely_said_when_the_difference_is_delta():
    """TOST at the margin: the true difference is exactly delta, so "equivalent within
    ±delta" is wrong; it may be said at most alpha of the time."""
    rng = np.random.default_rng(2)
    delta = 0.01
    wrong = np.mean([decide(simulate(rng, 10, [delta]), delta)[0]["verdict"].startswith(
        "equivalent") for _ in range(STUDIES)])
    print(f"'equivalent' with a true difference of delta: {wrong:.3f}")
    assert wrong <= ALPHA + mc_error(ALPHA)


def test_power_and_equivalence_where_they_should_hold():
    """A true difference of 2 delta is found at least 80% of the time with the seeds the
    planner asks for; with no true difference and enough seeds (here the paired SD is ~0.03,
    so TOST at ±0.01 needs ~100), "equivalent" is said most of the time."""
    rng = np.random.default_rng(3)
    delta = 0.01
    pilot = simulate(rng, 10, [0.0])
    sd = float(np.std(pilot[1] - pilot[0], ddof=1))
    n = int(planning.plan_seeds(2 * delta, sd, 10, paired=True))
    found = np.mean([decide(simulate(rng, n, [2 * delta]), delta)[0]["verdict"] == "better"
                     for _ in range(500)])
    equiv = np.mean([decide(simulate(rng, 100, [0.0]), delta)[0]["verdict"].startswith(
        "equivalent") for _ in range(500)])
    print(f"planned n={n} for 2 delta: found {found:.3f}; equivalent at n=100: {equiv:.3f}")
    assert found >= 0.8 - mc_error(0.8, 500)
    assert equiv >= 0.8


def test_bootstrap_iqm_interval_coverage_where_it_is_shown():
    """The IQM's percentile bootstrap is shown from IQM_CI_MIN_N seeds; its coverage there
    (normal seeds: the IQM of the population is its mean) is what README states."""
    rng = np.random.default_rng(4)
    cov = {}
    for n in (stats.IQM_CI_MIN_N, 20):
        hits = [lo <= 0.9 <= hi for lo, hi in (stats.iqm_interval(rng.normal(0.9, 0.02, n),
                                                                   seed=i) for i in range(300))]
        cov[n] = float(np.mean(hits))
    print(f"IQM bootstrap coverage: {cov}")
    assert cov[stats.IQM_CI_MIN_N] >= 0.87 and cov[20] >= 0.90


def test_probability_of_improvement_interval_coverage():
    rng = np.random.default_rng(5)
    truth = 0.6179  # P(d > 0) for d ~ N(0.3, 1)
    hits = []
    for _ in range(STUDIES):
        d = rng.normal(0.3, 1, 10)
        _, lo, hi = stats.prob_improvement(np.zeros(10), d, paired=True)
        hits.append(lo <= truth <= hi)
    print(f"P(improvement) paired Wilson coverage at n=10: {np.mean(hits):.3f}")
    assert np.mean(hits) >= 0.93


def simulated_power(n: int, effect: float, paired: bool, studies: int = 4000,
                    seed: int = 0) -> float:
    """The share of simulated studies (normal seeds, the given standardized effect) whose
    two-sided t-test rejects at 0.05: the figure `seeds_needed` promises."""
    rng = np.random.default_rng(seed)
    if paired:
        d = rng.normal(effect, 1.0, (studies, n))
        t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
        df = n - 1
    else:
        a, b = rng.normal(0, 1, (studies, n)), rng.normal(effect, 1, (studies, n))
        t = (b.mean(1) - a.mean(1)) / np.sqrt((a.var(1, ddof=1) + b.var(1, ddof=1)) / n)
        df = 2 * n - 2
    return float((2 * st.t.sf(np.abs(t), df) < 0.05).mean())


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("effect", [0.1, 0.2, 0.5, 1.0, 2.0])
def test_seeds_needed_is_finite_and_reaches_80_percent_power(effect, paired):
    """Issue 21, case 1: for n > ~170 the old integral missed its peak and planning said inf.
    The planned n is within 5% of the n a simulation needs for 80% power: at n the simulated
    power reaches 0.80, and 5% fewer seeds do not (each within 2.4 Monte Carlo SE, 0.015 at
    4,000 studies)."""
    n = int(planning.seeds_needed(effect, paired))
    assert n >= 2
    got = simulated_power(n, effect, paired)
    assert got >= 0.80 - 0.015, (effect, paired, n, got)
    fewer = math.ceil(0.95 * n) - 1
    if fewer >= 2:
        below = simulated_power(fewer, effect, paired, seed=1)
        assert below < 0.80 + 0.015, (effect, paired, fewer, below)


@pytest.mark.parametrize("m", [1, 3, 5])
def test_planning_at_the_holm_level_keeps_80_percent_power(m):
    """Issue 21, case 3: planned at alpha = 0.05 the power fell to 0.66/0.56 with 3/5
    comparisons under Holm. Planned at Holm's first step (alpha / m), the comparison with a
    true effect of delta is found 0.80 +- 0.03 of the time while the other m - 1 are null
    (paired seeds, 4,000 simulated studies)."""
    from core.planning import seeds_needed
    from core.stats import holm

    dz = 0.8  # delta over the SD of the paired differences
    n = int(seeds_needed(dz, paired=True, alpha=0.05 / m))
    rng = np.random.default_rng(m)
    studies = 4000
    d = rng.normal(0.0, 1.0, (studies, m, n))
    d[:, 0] += dz  # comparison 0 has the effect
    t = d.mean(2) / (d.std(2, ddof=1) / np.sqrt(n))
    p = 2 * st.t.sf(np.abs(t), n - 1)
    found = np.mean([holm(row)[0] < 0.05 and t_row[0] > 0 for row, t_row in zip(p, t,
                                                                                  strict=True)])
    assert abs(found - 0.80) <= 0.03, (m, n, found)
    if m > 1:  # and planning at alpha = 0.05 would have fallen short
        n_naive = int(seeds_needed(dz, paired=True))
        assert n_naive < n


# ----------------------------------------------------------------------------- rare failures

CHANCE = 0.1  # what a collapsed seed of K = 10 classes scores


def simulate_failures(rng, n_seeds: int, rates: tuple[float, float],
                      base: float = 0.85) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A baseline and a variant whose seeds collapse (score CHANCE) at `rates`; when it
    trains, the variant is as much better as makes the two means equal: the null of no
    difference in mean accuracy. Returns (a, b, a failed, b failed)."""
    lift = (rates[1] - rates[0]) * (base - CHANCE) / (1 - rates[1])
    a, b = simulate(rng, n_seeds, [lift], base)
    fa, fb = (rng.random(n_seeds) < r for r in rates)
    return np.where(fa, CHANCE, a), np.where(fb, CHANCE, b), fa, fb


def failure_null_rates(rates: tuple[float, float], n_seeds: int, studies: int,
                       seed: int = 0) -> dict[str, float]:
    """The report's rule on simulated null studies with failures (one comparison, so Holm
    is the identity): the test used when the failed-seed counts differ is the sign-flip
    test. Returns how often it says better/worse among the studies where it is used, the
    share of studies where it is used, and the rule's rate over all studies."""
    rng = np.random.default_rng(seed)
    used = wrong_used = wrong = 0
    for _ in range(studies):
        a, b, fa, fb = simulate_failures(rng, n_seeds, rates)
        robust = fa.sum() != fb.sum()
        r = stats.compare(a, b, paired=True, bounds=(0, 1), extras=False, failed=(fa, fb))
        hit = stats.verdict(r, r["p_value"], math.nan, "maximize", None) in ("better", "worse")
        used += robust
        wrong_used += hit and robust
        wrong += hit
    return {"false_rate_when_used": wrong_used / max(used, 1), "used": used / studies,
            "false_rate_overall": wrong / studies}


@pytest.mark.parametrize("n_seeds", [6, 10])
@pytest.mark.parametrize("rates", [(0.0, 0.1), (0.1, 0.1)], ids=["one arm", "both arms"])
def test_issue21_case4_the_test_for_unequal_failures_keeps_its_false_rate(rates, n_seeds):
    """Issue 21, case 4: where one side has more failed seeds than the other, the sign-flip
    test decides, over the sign patterns that keep the counts unequal (exact, given that they
    differ, when a pair's two runs are exchangeable, whatever the shape of the differences;
    the plain sign-flip test said better/worse 6.2% of those times at n = 10). Under the
    null of equal means with 10% collapses in one arm only, and in both, it says
    better/worse at most 0.05 + 2 Monte Carlo SE of the times it is used.
    With collapses in both arms (identical arms) the whole rule keeps 0.05 too. With
    collapses in one arm only, the rule's overall rate cannot: in the studies where no seed
    happened to collapse (0.9^n of them) the variant looks better and nothing in the data
    says otherwise; the failure-rate interval and its caveat are the report's answer there."""
    out = failure_null_rates(rates, n_seeds, 3000, seed=n_seeds)
    used = round(out["used"] * 3000)
    assert out["false_rate_when_used"] <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / used)
    if rates[0] == rates[1]:
        assert out["false_rate_overall"] <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / 3000)
