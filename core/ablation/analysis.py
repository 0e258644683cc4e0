"""A study's numbers, pure: per-seed values counted as the study declares (`missing_as`),
per-variant statistics, comparisons against the baseline, the aggregates a variant's parent run
holds, missing cells and per-class recall. DataFrames in (one row per trial run, as
`core.ablation.runs.load_runs` gives), DataFrames out; nothing here reads or writes a store.

Notebook API:
    from core.ablation.runs import load_runs
    from core.ablation.analysis import variant_table, comparison_table
    runs = load_runs("augmentation_strength")            # one row per trial run
    variant_table(runs, "test_accuracy")                  # per variant
    comparison_table(runs, "test_accuracy", "maximize")   # vs the baseline
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from core import imputation, names, permutation, stats
from core.lifecycle import Outcome
from core.planning import plan_seeds

default_direction = names.default_direction  # the one rule: losses, times and costs go down


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """One finished run per (variant, seed): the latest, if a trial was ever rerun."""
    f = runs[runs["status"] == "FINISHED"]
    return f.drop_duplicates(["variant", "seed"], keep="last")


def baseline_name(runs: pd.DataFrame) -> str | None:
    b = runs.loc[runs["baseline"].astype(bool), "variant"]
    return b.iloc[0] if len(b) else (runs["variant"].iloc[0] if len(runs) else None)


MISSING_AS = ("chance", "worst", "exclude")


def n_classes(runs: pd.DataFrame) -> int:
    """The task's class count, from what the trials logged."""
    if "n_classes" in runs and runs["n_classes"].notna().any():
        return int(runs["n_classes"].max())
    return sum(1 for c in runs.columns if c.startswith("test_recall_"))


def seed_values(runs: pd.DataFrame, metric: str = "test_accuracy",
                direction: str = "maximize", missing_as: str = "chance") -> pd.DataFrame:
    """One value per (variant, seed) that was run, the verdict's input. A seed that diverged
    or failed has no metric: it counts as `missing_as` says (chance: what a model at chance
    scores; worst: the worst possible value; exclude: left out), so survivors alone never
    decide. Interrupted (KILLED) runs were not run to the end and do not count."""
    if missing_as not in MISSING_AS:
        raise ValueError(f"missing_as: {missing_as!r} is not one of {', '.join(MISSING_AS)}")
    done = runs[runs["status"].isin(["FINISHED", "FAILED"])].copy()
    done["_rank"] = (done["status"] == "FINISHED").astype(int)
    latest = done.sort_values(["_rank", "start_time"]).drop_duplicates(["variant", "seed"],
                                                                      keep="last")
    values = latest[metric] if metric in latest else pd.Series(math.nan, index=latest.index)
    observed = values.to_numpy(float)
    k = n_classes(runs)
    variant = latest["variant"].to_numpy()
    fills = {v: imputation.impute(missing_as, metric, direction, k, observed,
                                  observed[variant == v]) for v in dict.fromkeys(variant)}
    fill = np.array([fills[v] for v in variant], float)
    missing = ~np.isfinite(observed)
    out = pd.DataFrame({"variant": latest["variant"], "seed": latest["seed"],
                        "value": np.where(missing, fill, observed), "imputed": missing,
                        "outcome": latest["outcome"].fillna(Outcome.FAILED.value)})
    out = out[np.isfinite(out["value"])]
    order = {v: i for i, v in enumerate(dict.fromkeys(runs["variant"]))}
    return out.sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name ==
                           "variant" else c).reset_index(drop=True)


VARIANT_FIELDS = ["variant", "baseline", "n", "imputed", "mean", "std", "ci95_low",
                  "ci95_high", "ci_note", "median", "min", "max", "iqm", "iqm_ci95_low",
                  "iqm_ci95_high",
                  "test_se", "collapse_rate", Outcome.COLLAPSED.value, Outcome.DIVERGED.value,
                  Outcome.FAILED.value, "finished", "failures", "ran", "failure_rate",
                  "failure_ci95_low", "failure_ci95_high", "mean_epochs_run",
                  "mean_train_time_s"]


def variant_table(runs: pd.DataFrame, metric: str = "test_accuracy",
                  direction: str = "maximize", missing_as: str = "chance") -> pd.DataFrame:
    vals = seed_values(runs, metric, direction, missing_as)
    bounds = stats.metric_bounds(metric)
    rows = []
    for name, g in runs.groupby("variant", sort=False):
        fin = finished(g)
        v = vals[vals["variant"] == name]
        n_fin = len(fin)
        floor = stats.binomial_se_floor(v["value"].to_numpy(), _n_test(fin, metric))
        row = {"variant": name, "baseline": bool(g["baseline"].any()),
               **stats.describe(v["value"].to_numpy(), bounds, floor),
               "ci_note": stats.ci_note(v["value"].to_numpy(), floor),
               "imputed": int(v["imputed"].sum()),
               "collapse_rate": float((fin["outcome"] == Outcome.COLLAPSED.value).mean()) if n_fin
               else math.nan,
               Outcome.COLLAPSED.value: int((fin["outcome"] == Outcome.COLLAPSED.value).sum()),
               Outcome.DIVERGED.value: int((fin["outcome"] == Outcome.DIVERGED.value).sum()),
               Outcome.FAILED.value: int((g["status"] == Outcome.FAILED.status).sum()),
               "finished": n_fin,
               **_failures(fin, g),
               "test_se": _test_se(fin, metric),
               "mean_epochs_run": float(fin["epochs_run"].mean()) if "epochs_run" in fin
               and n_fin else math.nan,
               "mean_train_time_s": float(fin["train_time_s"].mean()) if "train_time_s" in fin
               and n_fin else math.nan}
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=VARIANT_FIELDS)


def _failures(fin: pd.DataFrame, g: pd.DataFrame) -> dict[str, float]:
    """Runs that collapsed, diverged or failed, of those that ran to an end, with the exact
    95% interval of that rate."""
    ran = len(fin) + int((g["status"] == Outcome.FAILED.status).sum())
    bad = int(fin["outcome"].isin([Outcome.COLLAPSED.value, Outcome.DIVERGED.value]).sum()) \
        + int((g["status"] == Outcome.FAILED.status).sum())
    lo, hi = stats.failure_interval(bad, ran)
    return {"failures": bad, "ran": ran, "failure_rate": bad / ran if ran else math.nan,
            "failure_ci95_low": lo, "failure_ci95_high": hi}


def _n_test(fin: pd.DataFrame, metric: str) -> float:
    """The test set's size, for a metric in [0, 1] measured on it (an accuracy is k / n_test;
    F1, recall, precision and AUC carry the same test-set noise, of that order); else 0."""
    if stats.metric_bounds(metric) != (0.0, 1.0) or "n_test" not in fin or not len(fin):
        return 0.0
    n = float(fin["n_test"].max())
    return n if math.isfinite(n) else 0.0


def _test_se(fin: pd.DataFrame, metric: str) -> float:
    """The binomial standard error of one run's accuracy on the test set: the test set's
    sampling noise, which seeds do not measure."""
    n = _n_test(fin, metric)
    if not n or metric not in fin:
        return math.nan
    p = float(fin[metric].mean())
    return math.sqrt(p * (1 - p) / n) if 0 <= p <= 1 else math.nan


def pair_up(base: pd.DataFrame, other: pd.DataFrame
            ) -> tuple[bool, np.ndarray, np.ndarray, list, tuple[np.ndarray, np.ndarray]]:
    """Pair on the seeds both have (at least 2, and at least half of the smaller side);
    otherwise compare unpaired. `base`/`other`: seed_values rows indexed by seed. Returns
    (paired, base values, other values, left-out seeds, each side's per-seed failed flags
    among those compared)."""
    common = sorted(set(base.index) & set(other.index))
    paired = len(common) >= 2 and len(common) * 2 >= min(len(base), len(other))
    left = sorted(set(base.index) ^ set(other.index)) if paired else []
    a, b = (base.loc[common], other.loc[common]) if paired else (base, other)
    return (paired, a["value"].to_numpy(), b["value"].to_numpy(), left,
            (_failed(a), _failed(b)))


def _failed(v: pd.DataFrame) -> np.ndarray:
    """Seeds that did not train to a normal end: collapsed, diverged, failed or imputed."""
    return ((v["outcome"] != Outcome.OK.value) | v["imputed"]).to_numpy(bool)


def comparison_table(runs: pd.DataFrame, metric: str = "test_accuracy",
                     direction: str = "maximize", baseline: str | None = None,
                     delta: float | None = None, missing_as: str = "chance",
                     alpha: float = stats.ALPHA) -> pd.DataFrame:
    """Each variant against the baseline, paired on the seeds both have. p-values and the
    difference's CI are Holm-adjusted across all comparisons of the study (the CI excludes
    0 exactly when the test rejects); with a declared `delta` (the smallest effect of
    interest) TOST can say "equivalent" and seeds are planned from it. Where the two sides'
    failed-seed counts differ (collapsed, diverged, imputed), the differences mix seeds that
    trained with seeds that did not, and a permutation test (sign-flip when paired) decides
    instead of the t-test; `test` and `failed_seeds` say so. An "equivalent" row shows the
    interval TOST decided on (90% before Holm), not the 95% one."""
    baseline = baseline or baseline_name(runs)
    vals = seed_values(runs, metric, direction, missing_as)
    bounds = stats.metric_bounds(metric)
    sign = 1.0 if direction == "maximize" else -1.0
    base = vals[vals["variant"] == baseline].set_index("seed")
    rows, arms = [], []
    n_comparisons = sum(1 for v in dict.fromkeys(runs["variant"]) if v != baseline)
    for name in dict.fromkeys(runs["variant"]):
        if name == baseline:
            continue
        other = vals[vals["variant"] == name].set_index("seed")
        paired, a, b, left, failed = pair_up(base, other)
        res = stats.compare(a, b, paired, delta, bounds, failed=failed)
        res["seeds_for_80_power"] = plan_seeds(delta, res.get("sd", math.nan), len(b), paired,
                                               n_comparisons)  # shown on undecided rows
        poi = stats.prob_improvement(sign * a, sign * b, paired)
        res.update(prob_improvement=poi[0], prob_improvement_low=poi[1],
                   prob_improvement_high=poi[2])
        rows.append({"variant": name, "baseline": baseline, "metric": metric,
                     "effect_size_kind": "d_z" if paired else "hedges_g",
                     "failures": f"{failed[0].sum()} vs {failed[1].sum()}",
                     "min_p": permutation.min_p(len(a), len(b), paired),
                     "failure_note": failure_caveat(failed, paired),
                     "left_out_seeds": " ".join(map(str, left)), **res})
        arms.append((a, b, failed))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["p_holm"] = stats.holm(df["p_value"].tolist())
    df["p_tost_holm"] = stats.holm(df["p_tost"].tolist())
    df["ci_level"] = stats.holm_levels(df["p_value"].tolist(), alpha)
    df["verdict"] = [stats.verdict(r, r["p_holm"], r["p_tost_holm"], direction, delta, alpha)
                     for r in df.to_dict("records")]
    # TOST at Holm step alpha_i is the (1 - 2 alpha_i) interval lying within ±delta
    tost_level = [2 * lv - 1 for lv in stats.holm_levels(df["p_tost"].tolist(), alpha)]
    equivalent = df["verdict"].str.startswith("equivalent")
    df.loc[equivalent, "ci_level"] = np.array(tost_level)[equivalent.to_numpy()]
    ci = [stats.diff_interval(r, r["ci_level"], bounds, (a, b), failed, tost=eq)
          for r, (a, b, failed), eq in zip(df.to_dict("records"), arms, equivalent,
                                           strict=True)]
    df["diff_ci_low"] = [lo for lo, _ in ci]
    df["diff_ci_high"] = [hi for _, hi in ci]
    return with_failure_caveat(df)


CAVEAT_P = 0.2  # the one-sided exact test of "the variant fails more often" speaks below this


def failure_caveat(failed: tuple[np.ndarray, np.ndarray], paired: bool) -> str:
    """Said when the variant's runs fail (collapse, diverge, error, imputed) more often than
    the baseline's in a way the seeds can show: at least one failure of its own and a
    one-sided exact test below CAVEAT_P (McNemar's on the pairs where only one side failed
    when paired, Fisher's otherwise). Nothing failed anywhere: silent. Simulated in
    tests/test_stats_calibration.py (n = 10: 0.7-2.9% with equal failure rates of 5-10%, 61%
    when the variant fails 30% and the baseline 0%)."""
    fb, fv = (np.asarray(f, bool) for f in failed)
    if not fv.any():
        return ""
    from scipy import stats as st

    if paired and len(fb) == len(fv):
        only_v, only_b = int((fv & ~fb).sum()), int((fb & ~fv).sum())
        p = st.binomtest(only_v, only_v + only_b, 0.5, alternative="greater").pvalue \
            if only_v else 1.0
        how = f"McNemar p {p:.2f}"
    else:
        p = st.fisher_exact([[int(fv.sum()), int((~fv).sum())],
                             [int(fb.sum()), int((~fb).sum())]], alternative="greater")[1]
        how = f"Fisher p {p:.2f}"
    if p >= CAVEAT_P:
        return ""
    return (f"its runs fail more often: {int(fv.sum())}/{len(fv)} against the baseline's "
            f"{int(fb.sum())}/{len(fb)} ({how}, one-sided)")


def with_failure_caveat(ct: pd.DataFrame) -> pd.DataFrame:
    """The caveat stays beside a verdict it qualifies (better, equivalent) and is dropped
    beside one it cannot (worse, inconclusive, where the failures already count)."""
    if ct.empty:
        return ct
    keep = ct["verdict"].astype(str).str.startswith(("better", "equivalent"))
    return ct.assign(caveat=ct["failure_note"].where(keep, ""))



PARENT_STATS = names.PARENT_STATS
COMPARISON_STATS = names.COMPARISON_STATS


def parent_metrics(row: dict[str, Any], metric: str,
                   comparison: dict[str, Any] | None = None) -> dict[str, float]:
    """What a variant's parent run holds, from its `variant_table` row (and its
    `comparison_table` row): the one place a variant's aggregates get their MLflow names, so
    the parent written after each trial and the one the report writes are the same numbers."""
    m: dict[str, Any] = {f"{k}_{metric}": row[k] for k in PARENT_STATS}
    m.update(n_seeds=row["n"], n_imputed=row["imputed"], n_finished=row["finished"],
             n_failed=row[Outcome.FAILED.value],
             **{k: row.get(k) for k in ("failure_rate", "failure_ci95_low",
                                        "failure_ci95_high")})
    if comparison is not None:
        m.update({f"{k}_{metric}": comparison[k] for k in COMPARISON_STATS})
    return {k: float(v) for k, v in m.items() if v is not None and not pd.isna(v)}


def missing_trials(expected, runs: pd.DataFrame) -> list[str]:
    """(variant, seed) cells the study expects that have no finished run. Matched by name and
    seed, not hash, so a report of a --smoke or --set run is judged by its own cells."""
    have = set(zip(finished(runs)["variant"], finished(runs)["seed"], strict=True)) \
        if len(runs) else set()
    return [f"{t.variant} seed={t.seed}" for t in expected if (t.variant, t.seed) not in have]


def class_recall(runs: pd.DataFrame, cms: dict[str, tuple[list[str], np.ndarray]],
                 imbalance: float = 1.5) -> pd.DataFrame | None:
    """Mean recall per class and variant, for a test set whose class supports differ by
    `imbalance`x or more (accuracy alone hides a minority class there); None otherwise."""
    if not cms:
        return None
    labels, cm = next(iter(cms.values()))
    support = cm.sum(axis=1)
    if support.min() > 0 and support.max() / support.min() < imbalance:
        return None
    fin = finished(runs)
    rows = []
    for name, g in fin.groupby("variant", sort=False):
        rows.append({"variant": name, **{
            f"{lab} (n={int(n)})": float(g[f"test_recall_{i}"].mean())
            if f"test_recall_{i}" in g else math.nan
            for i, (lab, n) in enumerate(zip(labels, support // max(1, len(g)), strict=True))}})
    return pd.DataFrame(rows)


