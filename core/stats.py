"""Statistics of seeds (pure functions over arrays; scipy does the distributions)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats as st


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t CI of the mean; degenerate (mean, mean) for n=1 or zero variance."""
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    m = float(x.mean())
    if n < 2:
        return m, m
    sem = float(x.std(ddof=1) / math.sqrt(n))
    if sem == 0:
        return m, m
    lo, hi = st.t.interval(level, n - 1, loc=m, scale=sem)
    return float(lo), float(hi)


def aggregate(values: Sequence[float], metric: str) -> dict[str, float]:
    """The numbers a variant's parent run holds: mean, std, 95% CI, n_seeds."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(x) == 0:
        return {"n_seeds": 0}
    lo, hi = t_interval(x)
    return {
        f"mean_{metric}": float(x.mean()),
        f"std_{metric}": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        f"ci95_low_{metric}": lo,
        f"ci95_high_{metric}": hi,
        "n_seeds": float(len(x)),
    }


# ----------------------------------------------------------------------------- per variant

BOOTSTRAP_RESAMPLES = 9999


def bootstrap_interval(values: Sequence[float], seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile-BCa bootstrap CI of the mean (scipy.stats.bootstrap); NaN below n=2 and
    the point itself when every value is the same."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = st.bootstrap((x,), np.mean, confidence_level=level, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="BCa", random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa degenerates on tiny samples
        res = st.bootstrap((x,), np.mean, confidence_level=level,
                           n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                           random_state=np.random.default_rng(seed))
        lo, hi = res.confidence_interval
    return float(lo), float(hi)


def describe(values: Sequence[float]) -> dict[str, float]:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    n = len(x)
    if n == 0:
        return {"n": 0}
    lo, hi = t_interval(x)
    blo, bhi = bootstrap_interval(x)
    return {"n": n, "mean": float(x.mean()), "std": float(x.std(ddof=1)) if n > 1 else math.nan,
            "ci95_low": lo, "ci95_high": hi, "boot_ci95_low": blo, "boot_ci95_high": bhi,
            "median": float(np.median(x)), "min": float(x.min()), "max": float(x.max())}


# ----------------------------------------------------------------------------- comparisons


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Standardized mean difference (b - a) over the pooled SD, small-sample corrected."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return math.nan
    sp = math.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
    if sp == 0:
        return 0.0 if b.mean() == a.mean() else math.copysign(math.inf, b.mean() - a.mean())
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    return float(j * (b.mean() - a.mean()) / sp)


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """CI of mean(b) - mean(a) with Welch-Satterthwaite degrees of freedom."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d = b.mean() - a.mean()
    se = math.sqrt(va + vb)
    if se == 0:
        return float(d), float(d)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    lo, hi = st.t.interval(level, df, loc=d, scale=se)
    return float(lo), float(hi)


def seeds_for_power(effect: float, paired: bool, alpha: float = 0.05,
                    power: float = 0.8) -> float:
    """Seeds per variant for `power` to detect `effect` (Cohen's d, or d_z when paired)."""
    # Imported before catch_warnings: its import adds an "always" filter for its warnings.
    import statsmodels.tools.sm_exceptions  # noqa: F401
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if not math.isfinite(effect):
        return 2.0 if effect != 0 else math.nan
    if effect == 0:
        return math.inf
    solver = TTestPower() if paired else TTestIndPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the solver warns before giving up on huge effects
        n = float(solver.solve_power(effect_size=abs(effect), alpha=alpha, power=power,
                                     alternative="two-sided"))
    if not math.isfinite(n):
        # The root-finder fails only for huge effects, where the minimum (2 seeds) suffices.
        return 2.0 if abs(effect) > 3 else math.nan
    return float(math.ceil(max(n, 2.0)))


def compare(base: Sequence[float], other: Sequence[float], paired: bool) -> dict[str, float]:
    """other vs base: difference of means with its 95% CI, the t-test (paired when the seeds
    match, Welch otherwise), Wilcoxon signed-rank when paired, Hedges' g, seeds for 80% power.
    Degenerate cases follow scipy (NaN), except identical samples: p = 1."""
    a, b = np.asarray(base, float), np.asarray(other, float)
    out: dict[str, float] = {"n_base": len(a), "n_variant": len(b),
                             "diff": float(b.mean() - a.mean()) if len(a) and len(b)
                             else math.nan}
    nan = math.nan
    out.update(diff_ci95_low=nan, diff_ci95_high=nan, p_value=nan, p_wilcoxon=nan,
               hedges_g=hedges_g(a, b), seeds_for_80_power=nan)
    if len(a) < 2 or len(b) < 2:
        return out
    if paired:
        d = b - a
        lo, hi = t_interval(d)
        out["diff_ci95_low"], out["diff_ci95_high"] = lo, hi
        if np.all(d == 0):
            out["p_value"] = out["p_wilcoxon"] = 1.0
        else:
            out["p_value"] = float(st.ttest_rel(b, a).pvalue)
            out["p_wilcoxon"] = float(st.wilcoxon(b, a).pvalue)
        sd = d.std(ddof=1)
        dz = d.mean() / sd if sd > 0 else (0.0 if d.mean() == 0 else math.inf)
        out["seeds_for_80_power"] = seeds_for_power(dz, paired=True)
    else:
        lo, hi = welch_interval(a, b)
        out["diff_ci95_low"], out["diff_ci95_high"] = lo, hi
        if np.array_equal(np.sort(a), np.sort(b)) and a.std() == 0:
            out["p_value"] = 1.0
        else:
            out["p_value"] = float(st.ttest_ind(b, a, equal_var=False).pvalue)
        out["seeds_for_80_power"] = seeds_for_power(out["hedges_g"], paired=False)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels); NaNs stay NaN and do not count as tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full(len(p), math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


def verdict(diff: float, p_adj: float, n: int, direction: str, alpha: float = 0.05) -> str:
    if not math.isfinite(p_adj):
        return f"not testable with n={n}"
    if p_adj >= alpha:
        return f"no detectable difference with n={n}"
    better = diff > 0 if direction == "maximize" else diff < 0
    return "better" if better else "worse"
