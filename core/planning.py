"""How many seeds: the power of the t-tests the verdicts use, and the seeds a declared delta
needs at the level the verdict will use (Holm over the study's comparisons). Pure; checked by
simulation in tests/test_stats_calibration.py."""

from __future__ import annotations

import math
import warnings

from scipy import stats as st

from core.stats import ALPHA, NAN, POWER, SD_CONFIDENCE


def power(n: int, effect: float, paired: bool, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test with n seeds per variant (paired: one-sample t on the
    differences, `effect` = d_z; else two-sample t, `effect` = d), from the noncentral t
    distribution. Where scipy's noncentral t returns NaN (old scipy, one degree of freedom
    and large effects), integrated over the chi-square of the variance estimate instead; that
    integral alone missed its peak once df passed ~170 (power 2e-14 for n=200, d_z=0.2)."""
    from scipy import integrate

    df = n - 1 if paired else 2 * n - 2
    nc = abs(effect) * math.sqrt(n if paired else n / 2)
    crit = st.t.ppf(1 - alpha / 2, df)
    exact = float(st.nct.sf(crit, df, nc) + st.nct.cdf(-crit, df, nc))
    if math.isfinite(exact):
        return exact

    def rejects(v: float) -> float:
        c = crit * math.sqrt(v / df)
        return (st.norm.sf(c - nc) + st.norm.cdf(-c - nc)) * st.chi2.pdf(v, df)

    return float(integrate.quad(rejects, 0, math.inf, limit=200)[0])


def seeds_needed(effect: float, paired: bool, alpha: float = ALPHA, target: float = POWER,
                 max_n: int = 100_000) -> float:
    """The smallest n (>= 2) with power >= target to detect `effect` (d_z when paired, d
    otherwise): the solver's answer rounded up, then checked, stepping up until it holds
    (the root-finder alone under-shoots for large effects)."""
    import statsmodels.tools.sm_exceptions  # noqa: F401  (its import adds warning filters)
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if not math.isfinite(effect) or effect == 0:
        return NAN
    solver = TTestPower() if paired else TTestIndPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            guess = float(solver.solve_power(effect_size=abs(effect), alpha=alpha,
                                             power=target, alternative="two-sided"))
        except (ValueError, RuntimeError):
            guess = NAN
    n = max(2, math.ceil(guess) if math.isfinite(guess) else 2)
    while power(n, effect, paired, alpha) < target:
        n += 1 if n < 50 else max(1, n // 20)
        if n > max_n:
            return math.inf
    while n > 2 and power(n - 1, effect, paired, alpha) >= target:
        n -= 1
    return float(n)


def sd_upper(sd: float, n: int, confidence: float = SD_CONFIDENCE) -> float:
    """An upper confidence limit of a standard deviation from n values (chi-square): planning
    with it instead of the observed SD keeps a lucky small pilot from promising too few
    seeds."""
    if n < 2 or not math.isfinite(sd):
        return NAN
    return float(sd * math.sqrt((n - 1) / st.chi2.ppf(1 - confidence, n - 1)))


def plan_seeds(delta: float | None, sd: float, n: int, paired: bool,
               comparisons: int = 1) -> float:
    """Seeds per variant for 80% power to detect the declared `delta` (the smallest effect
    of interest), with the seed SD at its upper confidence limit, at the level the verdict
    uses: Holm over the study's `comparisons`, planned at its first step (alpha / m), so
    the power holds whichever comparison comes first. Never from the observed effect: that
    'observed power' is only a restatement of the p-value."""
    if not delta or not math.isfinite(sd) or n < 2:
        return NAN
    s = sd_upper(sd, n)
    if s == 0:
        return 2.0
    return seeds_needed(delta / s, paired, alpha=ALPHA / max(1, comparisons))
