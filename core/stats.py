"""Statistics of seeds: pure functions over arrays (scipy does the distributions).

Every verdict rule here comes with a simulation of its error rates
(`tests/test_stats_calibration.py`): false "better/worse" rate with no true difference,
power, coverage of the intervals, and how often "equivalent" is wrong.

What the intervals cover: training noise over seeds (initialisation, data order,
augmentation, dropout) with the data split fixed. The split's own noise is not in them
(`data.vary_split_with_seed=true` puts it in); neither is the test set's sampling noise, which
the report shows beside them as a binomial standard error.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special as sp
from scipy import stats as st

from core import names, permutation
from core.permutation import rejects

ALPHA = 0.05
SD_CONFIDENCE = 0.8  # planning uses this upper confidence limit of the seed SD
POWER = 0.8
IQM_CI_MIN_N = 10  # below this the IQM bootstrap interval is not shown (coverage, README)
NAN = math.nan


def metric_bounds(metric: str) -> tuple[float, float]:
    """The range a metric can take: accuracies, F1, recall, precision, AUC in [0, 1]; losses
    and times are >= 0; anything else is unbounded."""
    m = metric.lower()
    if any(k in m for k in ("accuracy", "f1", "recall", "precision", "auc")):
        return 0.0, 1.0
    if "loss" in m or m.endswith(("_s", "_ms", "_mb", "_per_s")) or m in names.EXACT_METRICS:
        return 0.0, math.inf
    return -math.inf, math.inf


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray([v for v in values if v is not None], float)
    return x[np.isfinite(x)]


def is_constant(x: np.ndarray) -> bool:
    """No spread beyond float noise (k/N accuracies differ by ulps, not by zero): the
    tolerance is scaled to the data."""
    if len(x) == 0:
        return True
    return float(np.ptp(x)) <= 1e-9 * max(1.0, float(np.abs(x).max()))


def clip(lo: float, hi: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """An interval of a bounded metric stays in its range (NaN stays NaN)."""
    if math.isnan(lo) or math.isnan(hi):
        return lo, hi
    return float(min(max(lo, bounds[0]), bounds[1])), float(max(min(hi, bounds[1]), bounds[0]))


# ----------------------------------------------------------------------------- per variant


def t_interval(values, level: float = 0.95, bounds=(-math.inf, math.inf),
               se_floor: float = 0.0) -> tuple[float, float]:
    """Student-t CI of the mean; NaN below 2 values (one seed says nothing about seed noise);
    clipped to the metric's range. `se_floor`: the least standard error the test set allows
    (`binomial_se_floor`), so seeds that all scored the same (common near 1.0) do not give a
    zero-width interval; without one, constant values give a point."""
    x = finite(values)
    n = len(x)
    if n < 2:
        return NAN, NAN
    m = float(x.mean())
    if is_constant(x) and se_floor <= 0:
        return NAN, NAN  # no spread and no floor: undefined (`ci_note` says why), not [m, m]
    sem = max(float(x.std(ddof=1) / math.sqrt(n)), se_floor)
    lo, hi = st.t.interval(level, n - 1, loc=m, scale=sem)
    return clip(float(lo), float(hi), bounds)


def iqm(values) -> float:
    """Interquartile mean (25% trimmed on each side; Agarwal et al. 2021, as in rliable)."""
    x = finite(values)
    return float(st.trim_mean(x, 0.25)) if len(x) else NAN


def iqm_interval(values, level: float = 0.95, seed: int = 0,
                 bounds=(-math.inf, math.inf)) -> tuple[float, float]:
    """Percentile bootstrap CI of the IQM (as rliable computes it); NaN below IQM_CI_MIN_N
    seeds, where its simulated coverage falls short of the level (README, Statistics)."""
    x = finite(values)
    if len(x) < IQM_CI_MIN_N:
        return NAN, NAN
    if is_constant(x):
        return float(x[0]), float(x[0])
    res = st.bootstrap((x,), lambda s, axis=-1: st.trim_mean(s, 0.25, axis=axis),
                       confidence_level=level, n_resamples=2000, method="percentile",
                       random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return clip(float(lo), float(hi), bounds)


def failure_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a rate of k in n: how often a variant's runs may
    fail (collapse, diverge, error) given what the seeds showed. 0 of 10 is not "never":
    up to 31% cannot be ruled out."""
    if n <= 0:
        return NAN, NAN
    ci = st.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def binomial_se_floor(values, n_test: float) -> float:
    """The standard error of the seeds' mean accuracy that the test set's size alone implies,
    from the pooled counts with Agresti-Coull's +2/+4 (never 0, also at 100%): each seed's
    accuracy is k/n_test, so seeds cannot be more alike than binomial noise says."""
    x = finite(values)
    if not len(x) or not n_test or not math.isfinite(n_test):
        return 0.0
    total = len(x) * n_test
    p = (float(x.sum()) * n_test + 2) / (total + 4)
    return math.sqrt(p * (1 - p) / total)


def ci_note(values, se_floor: float = 0.0) -> str:
    """Why a variant's interval is missing, in words ('' when it has one)."""
    x = finite(values)
    if len(x) == 1:
        return "one seed: no interval (seed noise needs two)"
    if len(x) >= 2 and is_constant(x) and se_floor <= 0:
        return (f"every seed scored {x[0]:.4g} and the test set's size was not logged, so "
                "there is no spread to build an interval from")
    return ""


def describe(values, bounds=(-math.inf, math.inf), se_floor: float = 0.0) -> dict[str, float]:
    """Per-variant numbers. n = 1 gives NaN spread and intervals, never a zero-width CI."""
    x = finite(values)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": NAN, "std": NAN, "ci95_low": NAN, "ci95_high": NAN,
                "median": NAN, "min": NAN, "max": NAN, "iqm": NAN, "iqm_ci95_low": NAN,
                "iqm_ci95_high": NAN}
    lo, hi = t_interval(x, bounds=bounds, se_floor=se_floor)
    ilo, ihi = iqm_interval(x, bounds=bounds)
    return {"n": n, "mean": float(x.mean()), "std": float(x.std(ddof=1)) if n > 1 else NAN,
            "ci95_low": lo, "ci95_high": hi, "median": float(np.median(x)),
            "min": float(x.min()), "max": float(x.max()), "iqm": iqm(x),
            "iqm_ci95_low": ilo, "iqm_ci95_high": ihi}


# ----------------------------------------------------------------------------- comparisons


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """CI of mean(b) - mean(a) with Welch-Satterthwaite degrees of freedom."""
    se, df = _welch_se_df(a, b)
    d = float(b.mean() - a.mean())
    if se == 0:
        return d, d
    lo, hi = st.t.interval(level, df, loc=d, scale=se)
    return float(lo), float(hi)


def _welch_se_df(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0, NAN
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return se, float(df)


def hedges_g(a, b) -> float:
    """Standardized mean difference (b - a) over the pooled SD, small-sample corrected: the
    effect size of an unpaired comparison."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return NAN
    sp = math.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
    if sp == 0 or is_constant(np.concatenate([a - a.mean(), b - b.mean()])):
        return NAN
    j = 1 - 3 / (4 * (n1 + n2) - 9)
    return float(j * (b.mean() - a.mean()) / sp)


def d_z(d) -> float:
    """Mean paired difference over its SD: the effect size of a paired comparison, and the
    one its power depends on."""
    d = np.asarray(d, float)
    if len(d) < 2 or is_constant(d):
        return NAN
    return float(d.mean() / d.std(ddof=1))


def wilcoxon_p(d) -> float:
    """Wilcoxon signed-rank p of paired differences, tie-aware: accuracies are k/N, so
    '+1 image' and '-1 image' differences differ by ulps; rounding makes them ties, and scipy
    then uses a method that knows ties instead of the no-ties exact distribution."""
    d = np.round(np.asarray(d, float), 9)
    if len(d) < 2 or np.all(d == 0):
        return 1.0 if len(d) >= 2 else NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(st.wilcoxon(d).pvalue)


def prob_improvement(a, b, paired: bool, level: float = 0.95) -> tuple[float, float, float]:
    """P(b > a) with a CI. Paired: the share of seeds where b wins (ties count half), Wilson
    interval. Unpaired: Mann-Whitney U / (n1 n2) (rliable's definition), Hanley-McNeil
    interval. Returns (estimate, low, high)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return NAN, NAN, NAN
    z = st.norm.ppf(0.5 + level / 2)
    if paired:
        d = np.round(b - a, 9)
        n = len(d)
        p = float(np.mean((d > 0) + 0.5 * (d == 0)))
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return p, max(0.0, centre - half), min(1.0, centre + half)
    n1, n2 = len(a), len(b)
    if np.array_equal(np.sort(a), np.sort(b)):
        p = 0.5
    else:
        p = float(st.mannwhitneyu(b, a, alternative="greater").statistic / (n1 * n2))
    q1, q2 = p / (2 - p), 2 * p * p / (1 + p)
    var = (p * (1 - p) + (n2 - 1) * (q1 - p * p) + (n1 - 1) * (q2 - p * p)) / (n1 * n2)
    half = z * math.sqrt(max(var, 0.0))
    return p, max(0.0, p - half), min(1.0, p + half)


def _t_p(est: float, se: float, df: float, null: float = 0.0, side: str = "two") -> float:
    """t-test p from scipy.special's t CDF: the same numbers as scipy.stats.t, without its
    ~70 us of argument checking per call (the calibration simulations make 10^5 calls)."""
    t = (est - null) / se
    if side == "two":
        return float(2 * sp.stdtr(df, -abs(t)))
    return float(sp.stdtr(df, -t) if side == "greater" else sp.stdtr(df, t))


def _t_interval(level: float, df: float, loc: float, scale: float) -> tuple[float, float]:
    half = float(sp.stdtrit(df, 0.5 + level / 2)) * scale
    return loc - half, loc + half


def compare(base, other, paired: bool, delta: float | None = None,
            bounds=(-math.inf, math.inf), extras: bool = True,
            failed: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """`other` vs `base` (paired: aligned by seed). The difference of means with its 95% CI,
    the t-test (paired or Welch), the tie-aware Wilcoxon (paired), the effect size the power
    depends on (d_z paired, Hedges' g unpaired), probability of improvement, and with a
    declared `delta` the TOST equivalence p (and `sd`, which core.planning plans seeds
    from). `replicates` is 0 when
    every seed gave the same value: then nothing is tested (the seeds vary nothing).
    `extras=False` skips what the verdict does not use (Wilcoxon, P(improvement), planning):
    the calibration simulations run the verdict thousands of times. `failed`: each arm's
    per-seed flags (collapsed, diverged, imputed); where their counts differ, or an unpaired
    arm has fewer than WELCH_MIN_N seeds, a permutation test (`core.permutation`) gives the
    p-value and 95% CI instead of the t-test. `test` names the test that decided."""
    a, b = np.asarray(base, float), np.asarray(other, float)
    failed = permutation.unequal(failed)
    robust = failed is not None
    out: dict[str, Any] = {
        "n_base": len(a), "n_variant": len(b), "paired": bool(paired),
        "diff": float(b.mean() - a.mean()) if len(a) and len(b) else NAN,
        "diff_ci95_low": NAN, "diff_ci95_high": NAN, "p_value": NAN, "p_wilcoxon": NAN,
        "p_tost": NAN, "effect_size": NAN, "se": NAN, "df": NAN, "replicates": 1,
        "test": ("sign-flip" if robust else "paired t") if paired else
        ("permutation" if robust else "Welch t")}
    poi, plo, phi = prob_improvement(a, b, paired) if extras else (NAN, NAN, NAN)
    out.update(prob_improvement=poi, prob_improvement_low=plo, prob_improvement_high=phi)
    if len(a) < 2 or len(b) < 2:
        return out
    if paired:
        d = b - a
        if is_constant(d):
            if is_constant(a) and is_constant(b):
                out["replicates"] = 0
            else:  # the seeds vary, their differences do not: nothing for a t-test to use
                out["constant_diff"] = 1
            return out
        se, df = float(d.std(ddof=1) / math.sqrt(len(d))), float(len(d) - 1)
        out["p_wilcoxon"] = wilcoxon_p(d) if extras else NAN
        out["effect_size"] = d_z(d)
        sd = float(d.std(ddof=1))
    else:
        if is_constant(a) and is_constant(b):
            out["replicates"] = 0
            return out
        se, df = _welch_se_df(a, b)
        out["effect_size"] = hedges_g(a, b)
        sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
        if min(len(a), len(b)) < WELCH_MIN_N:
            robust, out["test"] = True, "permutation"
    diff = out["diff"]
    width = bounds[1] - bounds[0]
    if robust:  # one test gives the p-value, the interval and TOST: the permutation test
        out["p_value"] = _perm_p(a, b, paired, failed)
        out["diff_ci95_low"], out["diff_ci95_high"] = (
            diff_interval(out, 0.95, bounds, (a, b), failed) if extras else (NAN, NAN))
        if delta:
            out["p_tost"] = max(_perm_p(a, b + delta, paired, failed, "greater"),
                                _perm_p(a, b - delta, paired, failed, "less"))
    else:
        lo, hi = _t_interval(0.95, df, loc=diff, scale=se)
        out.update(se=se, df=df, p_value=_t_p(diff, se, df))
        out["diff_ci95_low"], out["diff_ci95_high"] = clip(float(lo), float(hi),
                                                           (-width, width))
        if delta:
            out["p_tost"] = max(_t_p(diff, se, df, -delta, "greater"),
                                _t_p(diff, se, df, delta, "less"))
    if delta:
        out["sd"] = sd  # what core.planning plans the seeds for delta from
    return out


def _perm_p(a: np.ndarray, b: np.ndarray, paired: bool,
            failed: tuple[np.ndarray, np.ndarray] | None, side: str = "two") -> float:
    """The permutation test `compare` uses: sign-flip of the paired differences, else the
    two-sample test, conditioned on unequal failure counts when `failed` is given."""
    if paired:
        return permutation.signflip_p(b - a, None if failed is None
                                      else permutation.paired_flags(failed), side)
    return permutation.permutation_p(a, b, failed, side)


WELCH_MIN_N = 3  # below this in an arm, Welch's df rests on one variance estimate: too liberal


def diff_interval(row: dict, level: float, bounds=(-math.inf, math.inf),
                  arms: tuple[np.ndarray, np.ndarray] | None = None,
                  failed: tuple[np.ndarray, np.ndarray] | None = None,
                  tost: bool = False) -> tuple[float, float]:
    """The difference's CI at another level (e.g. Holm-adjusted): from `compare`'s se and df
    for a t-test; for a permutation test, the test inverted on the arms' values (`arms`:
    base, other; `failed`: as `compare` took them), so the interval agrees with the test
    that decided. `tost`: the interval TOST decided on (each end from a one-sided test at
    (1 - level) / 2; the t interval is that already)."""
    width = bounds[1] - bounds[0]
    if row.get("test") in ("sign-flip", "permutation"):
        if arms is None:
            return NAN, NAN
        a, b = arms
        failed = permutation.unequal(failed)
        lo, hi = (permutation.signflip_interval(
            b - a, level, None if failed is None else permutation.paired_flags(failed),
            one_sided=tost)
            if row["test"] == "sign-flip" else permutation.permutation_interval(
                a, b, level, failed, one_sided=tost))
        return clip(lo, hi, (-width, width))
    if not (math.isfinite(row.get("se", NAN)) and math.isfinite(row.get("df", NAN))):
        return NAN, NAN
    lo, hi = _t_interval(level, row["df"], loc=row["diff"], scale=row["se"])
    return clip(float(lo), float(hi), (-width, width))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values; NaNs stay NaN and do not count as tests. Five lines of numpy
    rather than statsmodels' multipletests, which runs gc.collect() on every call (23 ms, more
    in a process holding TensorFlow): the calibration simulations call this thousands of
    times. tests/test_stats.py checks it against statsmodels."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), NAN)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        steps = (m - np.arange(m)) * p[order]
        out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out.tolist()


def holm_levels(pvalues: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Confidence levels that make each difference's CI agree with Holm: the comparison at
    Holm step i gets level 1 - alpha/(m - i + 1); once Holm stops at step k, the rest get
    step k's. So a CI excludes 0 exactly when Holm rejects, and each covers with at least
    the level it shows (>= 1 - alpha)."""
    p = np.asarray(pvalues, float)
    ok = np.flatnonzero(np.isfinite(p))
    levels = np.full(len(p), NAN)
    m = len(ok)
    stopped = None
    for rank, idx in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        step_alpha = alpha / (m - rank)
        if stopped is None and not rejects(p[idx], step_alpha):
            stopped = step_alpha
        levels[idx] = 1 - (stopped if stopped is not None else step_alpha)
    return levels.tolist()


def verdict(row: dict, p_holm: float, p_tost_holm: float, direction: str, delta: float | None,
            alpha: float = ALPHA) -> str:
    """better / worse (Holm-adjusted t-test), equivalent within ±delta (Holm-adjusted TOST),
    else inconclusive: never a phrase that reads as 'the same' when the data only failed to
    show a difference."""
    if not row.get("replicates", 1):
        return "not replicates: every seed gave the same value"
    if row.get("constant_diff") == 1:
        return (f"inconclusive: every seed differs by the same {row['diff']:+.4g}, which "
                "leaves a t-test no spread to use; add seeds")
    if not math.isfinite(p_holm):
        return f"inconclusive: not testable with n={min(row['n_base'], row['n_variant'])}"
    tost = bool(delta) and math.isfinite(p_tost_holm) and rejects(p_tost_holm, alpha)
    if rejects(p_holm, alpha):
        better = row["diff"] > 0 if direction == "maximize" else row["diff"] < 0
        return ("better" if better else "worse") + (f" (but within ±{delta:g})" if tost
                                                    else "")
    if tost:
        return f"equivalent within ±{delta:g}"
    return "inconclusive"
