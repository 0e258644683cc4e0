"""Study reports: read a study's runs from MLflow into pandas, compute per-variant statistics and
comparisons against the baseline, write summary.md/csv + plots, log them to a study run.

Notebook API:
    from core.ablation.report import load_runs, variant_table, comparison_table
    runs = load_runs("augmentation_strength")            # one row per trial run
    variant_table(runs, "test_accuracy")                  # per variant
    comparison_table(runs, "test_accuracy", "maximize")   # vs the baseline

Collapse (documented in README): a run is collapsed when its test predictions fall in one class,
or a one-sided binomial test cannot tell its accuracy from the majority-class rate (alpha 0.05).
Trials tag this at the end (`ablab.outcome=collapsed`); the report counts those tags.
"""

from __future__ import annotations

import difflib
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import stats, tracking
from core.errors import ConfigError

TAGS = {"variant": "ablab.variant", "seed": "ablab.seed", "trial_hash": "ablab.trial_hash",
        "outcome": "ablab.outcome", "parent": "mlflow.parentRunId",
        "baseline": "ablab.baseline"}


def default_direction(metric: str, fallback: str = "maximize") -> str:
    return "minimize" if "loss" in metric or metric.endswith("_time_s") else fallback


# ----------------------------------------------------------------------------- loading


def load_runs(study: str, tracking_uri: str | None = None, c=None) -> pd.DataFrame:
    """One row per trial run of the study's current variants (the newest parent per variant
    name, so results of an older base config are not mixed in)."""
    c = c or tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(study)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {study!r} in {c.tracking_uri}")
    parents = tracking.search(c, exp.experiment_id, "tags.`ablab.role` = 'variant'")
    newest: dict[str, object] = {}
    for p in sorted(parents, key=lambda r: r.info.start_time):
        newest[p.data.tags.get("ablab.variant")] = p
    keep = {p.info.run_id: p for p in newest.values()}
    rows = []
    for r in tracking.search(c, exp.experiment_id, "tags.`ablab.role` = 'trial'"):
        parent = r.data.tags.get(TAGS["parent"])
        if keep and parent not in keep:
            continue
        row = {k: r.data.tags.get(v) for k, v in TAGS.items()}
        row.update(run_id=r.info.run_id, status=r.info.status, start_time=r.info.start_time)
        row["baseline"] = keep[parent].data.tags.get("ablab.baseline") == "true" if keep \
            else False
        row.update(r.data.metrics)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["seed"] = df["seed"].astype(int)
    order = {name: i for i, name in enumerate(newest)}
    df["_order"] = df["variant"].map(order).fillna(len(order))
    return df.sort_values(["_order", "seed", "start_time"]).drop(columns="_order") \
        .reset_index(drop=True)


def _finished(runs: pd.DataFrame) -> pd.DataFrame:
    """One finished run per (variant, seed): the latest, if a trial was ever rerun."""
    f = runs[runs["status"] == "FINISHED"]
    return f.drop_duplicates(["variant", "seed"], keep="last")


def baseline_name(runs: pd.DataFrame) -> str | None:
    b = runs.loc[runs["baseline"].astype(bool), "variant"]
    return b.iloc[0] if len(b) else (runs["variant"].iloc[0] if len(runs) else None)


# ----------------------------------------------------------------------------- tables

MISSING_AS = ("chance", "worst", "exclude")


def _runs(runs: pd.DataFrame | str) -> pd.DataFrame:
    """Notebook convenience: a study name loads its runs from the default tracking URI."""
    return load_runs(runs) if isinstance(runs, str) else runs


def n_classes(runs: pd.DataFrame) -> int:
    """The task's class count, from what the trials logged."""
    if "n_classes" in runs and runs["n_classes"].notna().any():
        return int(runs["n_classes"].max())
    return sum(1 for c in runs.columns if c.startswith("test_recall_"))


def seed_values(runs: pd.DataFrame | str, metric: str = "test_accuracy",
                direction: str = "maximize", missing_as: str = "chance") -> pd.DataFrame:
    """One value per (variant, seed) that was run, the verdict's input. A seed that diverged
    or failed has no metric: it counts as `missing_as` says (chance: what a model at chance
    scores; worst: the worst possible value; exclude: left out), so survivors alone never
    decide. Interrupted (KILLED) runs were not run to the end and do not count."""
    runs = _runs(runs)
    if missing_as not in MISSING_AS:
        raise ValueError(f"missing_as: {missing_as!r} is not one of {', '.join(MISSING_AS)}")
    done = runs[runs["status"].isin(["FINISHED", "FAILED"])].copy()
    done["_rank"] = (done["status"] == "FINISHED").astype(int)
    latest = done.sort_values(["_rank", "start_time"]).drop_duplicates(["variant", "seed"],
                                                                      keep="last")
    values = latest[metric] if metric in latest else pd.Series(math.nan, index=latest.index)
    observed = values.to_numpy(float)
    fill = stats.impute(missing_as, metric, direction, n_classes(runs), observed)
    missing = ~np.isfinite(observed)
    out = pd.DataFrame({"variant": latest["variant"], "seed": latest["seed"],
                        "value": np.where(missing, fill, observed), "imputed": missing,
                        "outcome": latest["outcome"].fillna("failed")})
    out = out[np.isfinite(out["value"])]
    order = {v: i for i, v in enumerate(dict.fromkeys(runs["variant"]))}
    return out.sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name ==
                           "variant" else c).reset_index(drop=True)


def variant_table(runs: pd.DataFrame | str, metric: str = "test_accuracy",
                  direction: str = "maximize", missing_as: str = "chance") -> pd.DataFrame:
    runs = _runs(runs)
    vals = seed_values(runs, metric, direction, missing_as)
    bounds = stats.metric_bounds(metric)
    rows = []
    for name, g in runs.groupby("variant", sort=False):
        fin = _finished(g)
        v = vals[vals["variant"] == name]
        n_fin = len(fin)
        row = {"variant": name, "baseline": bool(g["baseline"].any()),
               **stats.describe(v["value"].to_numpy(), bounds),
               "imputed": int(v["imputed"].sum()),
               "collapse_rate": float((fin["outcome"] == "collapsed").mean()) if n_fin
               else math.nan,
               "collapsed": int((fin["outcome"] == "collapsed").sum()),
               "diverged": int((fin["outcome"] == "diverged").sum()),
               "failed": int((g["status"] == "FAILED").sum()),
               "finished": n_fin,
               "test_se": _test_se(fin, metric),
               "mean_epochs_run": float(fin["epochs_run"].mean()) if "epochs_run" in fin
               and n_fin else math.nan,
               "mean_train_time_s": float(fin["train_time_s"].mean()) if "train_time_s" in fin
               and n_fin else math.nan}
        rows.append(row)
    cols = ["variant", "baseline", "n", "imputed", "mean", "std", "ci95_low", "ci95_high",
            "median", "min", "max", "iqm", "iqm_ci95_low", "iqm_ci95_high", "test_se",
            "collapse_rate", "collapsed", "diverged", "failed", "finished", "mean_epochs_run",
            "mean_train_time_s"]
    return pd.DataFrame(rows).reindex(columns=cols)


def _test_se(fin: pd.DataFrame, metric: str) -> float:
    """The binomial standard error of one run's accuracy on the test set: the test set's
    sampling noise, which seeds do not measure."""
    if "accuracy" not in metric or "n_test" not in fin or not len(fin) or metric not in fin:
        return math.nan
    p = float(fin[metric].mean())
    n = float(fin["n_test"].max())
    return math.sqrt(p * (1 - p) / n) if n > 0 and 0 <= p <= 1 else math.nan


def pair_up(base: pd.Series, other: pd.Series) -> tuple[bool, np.ndarray, np.ndarray, list]:
    """Pair on the seeds both have (at least 2, and at least half of the smaller side);
    otherwise compare unpaired. Returns (paired, base values, other values, left-out
    seeds)."""
    common = sorted(set(base.index) & set(other.index))
    if len(common) >= 2 and len(common) * 2 >= min(len(base), len(other)):
        left = sorted(set(base.index) ^ set(other.index))
        return True, base.loc[common].to_numpy(), other.loc[common].to_numpy(), left
    return False, base.to_numpy(), other.to_numpy(), []


def comparison_table(runs: pd.DataFrame | str, metric: str = "test_accuracy",
                     direction: str = "maximize", baseline: str | None = None,
                     delta: float | None = None, missing_as: str = "chance",
                     alpha: float = stats.ALPHA) -> pd.DataFrame:
    """Each variant against the baseline, paired on the seeds both have. p-values and the
    difference's CI are Holm-adjusted across all comparisons of the study (the CI excludes
    0 exactly when the test rejects); with a declared `delta` (the smallest effect of
    interest) TOST can say "equivalent" and seeds are planned from it."""
    runs = _runs(runs)
    baseline = baseline or baseline_name(runs)
    vals = seed_values(runs, metric, direction, missing_as)
    bounds = stats.metric_bounds(metric)
    sign = 1.0 if direction == "maximize" else -1.0
    base = vals[vals["variant"] == baseline].set_index("seed")["value"]
    rows = []
    for name in dict.fromkeys(runs["variant"]):
        if name == baseline:
            continue
        other = vals[vals["variant"] == name].set_index("seed")["value"]
        paired, a, b, left = pair_up(base, other)
        res = stats.compare(a, b, paired, delta, bounds)
        poi = stats.prob_improvement(sign * a, sign * b, paired)
        res.update(prob_improvement=poi[0], prob_improvement_low=poi[1],
                   prob_improvement_high=poi[2])
        rows.append({"variant": name, "baseline": baseline, "metric": metric,
                     "test": "paired t" if paired else "Welch t",
                     "effect_size_kind": "d_z" if paired else "hedges_g",
                     "left_out_seeds": " ".join(map(str, left)), **res})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["p_holm"] = stats.holm(df["p_value"].tolist())
    df["p_tost_holm"] = stats.holm(df["p_tost"].tolist())
    df["ci_level"] = stats.holm_levels(df["p_value"].tolist(), alpha)
    ci = [stats.diff_interval(r, r["ci_level"], bounds) for r in df.to_dict("records")]
    df["diff_ci_low"] = [lo for lo, _ in ci]
    df["diff_ci_high"] = [hi for _, hi in ci]
    df["verdict"] = [stats.verdict(r, r["p_holm"], r["p_tost_holm"], direction, delta, alpha)
                     for r in df.to_dict("records")]
    return df


# ----------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def plot_per_seed(vals: pd.DataFrame, metric: str, path: Path) -> Path:
    """Every seed's value per variant over a box of quartiles; imputed seeds (diverged or
    failed, counted as `missing_as` says) as red crosses."""
    plt = _plt()
    names = list(dict.fromkeys(vals["variant"]))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 4.5))
    data = [vals.loc[vals["variant"] == n] for n in names]
    ax.boxplot([d["value"].to_numpy() if len(d) else [np.nan] for d in data], widths=0.5,
               showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        jitter = i + rng.uniform(-0.12, 0.12, len(d))
        real = ~d["imputed"].to_numpy(bool)
        ax.scatter(jitter[real], d["value"][real], s=22, alpha=0.8, zorder=3)
        ax.scatter(jitter[~real], d["value"][~real], s=40, marker="x", color="red", zorder=3,
                   label="imputed (diverged/failed)" if i == 1 or (~real).any() else None)
        if len(d):
            ax.plot([i - 0.3, i + 0.3], [d["value"].mean()] * 2, color="black", lw=1.5,
                    zorder=4)
    if vals["imputed"].any():
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles[:1], labels[:1], fontsize=8, loc="best")
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per seed (box: quartiles, bar: mean)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ecdf(vals: pd.DataFrame, metric: str, path: Path, alpha: float = stats.ALPHA) -> Path:
    """The score distribution over seeds per variant (rliable's performance profile for one
    task): the empirical CDF with its DKW confidence band (simultaneous, 1 - alpha)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(vals["variant"]):
        x = np.sort(vals.loc[vals["variant"] == name, "value"].to_numpy())
        if not len(x):
            continue
        y = np.arange(1, len(x) + 1) / len(x)
        eps = math.sqrt(math.log(2 / alpha) / (2 * len(x)))
        line, = ax.step(x, y, where="post", label=f"{name} (n={len(x)})")
        ax.fill_between(x, np.clip(y - eps, 0, 1), np.clip(y + eps, 0, 1), step="post",
                        alpha=0.15, color=line.get_color())
    ax.set_xlabel(metric)
    ax.set_ylabel("fraction of seeds <= x")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{metric}: distribution over seeds ({1 - alpha:.0%} DKW band)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def histories(runs: pd.DataFrame, c, keys=("val_accuracy", "val_loss")) -> pd.DataFrame:
    rows = []
    for r in _finished(runs).itertuples():
        for key in keys:
            for m in c.get_metric_history(r.run_id, key):
                rows.append({"variant": r.variant, "seed": r.seed, "metric": key,
                             "epoch": m.step, "value": m.value})
    return pd.DataFrame(rows, columns=["variant", "seed", "metric", "epoch", "value"])


def plot_learning_curves(hist: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key in zip(axes, ("val_accuracy", "val_loss"), strict=True):
        h = hist[hist["metric"] == key]
        for name in dict.fromkeys(h["variant"]):
            g = h[h["variant"] == name].groupby("epoch")["value"]
            mean, std = g.mean(), g.std().fillna(0)
            ax.plot(mean.index, mean.values, marker="o", ms=3, label=name)
            ax.fill_between(mean.index, mean - std, mean + std, alpha=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(f"{key}: mean over seeds, band = ±1 std")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summed_confusions(runs: pd.DataFrame, c) -> dict[str, tuple[list[str], np.ndarray]]:
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in _finished(runs).itertuples():
            try:
                p = c.download_artifacts(r.run_id, "confusion_matrix.csv", tmp)
            except Exception:  # noqa: BLE001 - diverged runs have no confusion matrix
                continue
            cm = pd.read_csv(p, index_col=0)
            names, arr = list(cm.columns), cm.to_numpy()
            if r.variant in out:
                arr = out[r.variant][1] + arr
            out[r.variant] = (names, arr)
    return out


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
    fin = _finished(runs)
    rows = []
    for name, g in fin.groupby("variant", sort=False):
        rows.append({"variant": name, **{
            f"{lab} (n={int(n)})": float(g[f"test_recall_{i}"].mean())
            if f"test_recall_{i}" in g else math.nan
            for i, (lab, n) in enumerate(zip(labels, support // max(1, len(g)), strict=True))}})
    return pd.DataFrame(rows)


def plot_confusions(cms: dict[str, tuple[list[str], np.ndarray]], path: Path) -> Path | None:
    if not cms:
        return None
    plt = _plt()
    n = len(cms)
    k = len(next(iter(cms.values()))[0])
    size = max(3.2, 0.35 * k + 2)
    fig, axes = plt.subplots(1, n, figsize=(size * n, size + 0.4), squeeze=False)
    for ax, (name, (labels, cm)) in zip(axes[0], cms.items(), strict=True):
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k), labels, fontsize=7)
        if k <= 12:
            thresh = cm.max() / 2
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if cm[i, j] > thresh else "black")
        ax.set_title(f"{name}\n(summed over seeds)", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- writing


def _fmt(x, digits: int = 4) -> str:
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return "-"
        if math.isinf(x):
            return "inf"
        return f"{x:.{digits}f}"
    return str(x)


def missing_trials(expected, runs: pd.DataFrame) -> list[str]:
    """(variant, seed) cells the study expects that have no finished run. Matched by name and
    seed, not hash, so a report of a --smoke or --set run is judged by its own cells."""
    have = set(zip(_finished(runs)["variant"], _finished(runs)["seed"], strict=True)) \
        if len(runs) else set()
    return [f"{t.variant} seed={t.seed}" for t in expected if (t.variant, t.seed) not in have]


def adaptive_replay(runs: pd.DataFrame, ab, expected: list, metric: str, direction: str,
                    delta: float | None, missing_as: str):
    """With adaptive seeds, the sequential rule replayed on the study's runs (the same
    function the coordinator uses to plan), else None."""
    plan = ab.seed_plan() if ab is not None and metric == ab.metric else None
    if plan is None or runs.empty:
        return None
    names = list(dict.fromkeys([t.variant for t in expected] or runs["variant"]))
    return replay_runs(runs, names, baseline_name(runs), plan, metric, direction, delta,
                       missing_as)


def replay_runs(runs: pd.DataFrame, names: list[str], baseline: str, plan,
                metric: str, direction: str = "maximize", delta: float | None = None,
                missing_as: str = "chance"):
    """Adaptive seeds' rule on a study's trial runs (one row per run, as `load_runs` gives),
    their seeds counted as the report counts them (`missing_as`)."""
    from core.ablation.adaptive import replay

    done = runs[runs["status"].isin(["FINISHED", "FAILED"])] if len(runs) else runs
    ran = set(zip(done["variant"], done["seed"].astype(int), strict=True)) if len(done) \
        else set()
    vals = seed_values(runs, metric, direction, missing_as) if ran else pd.DataFrame(
        columns=["variant", "seed", "value"])
    return replay(vals, ran, names, baseline, plan, direction, delta)


def expected_trials(ab) -> list:
    from core.ablation.spec import expand_trials

    if ab is None:
        return []
    try:
        return expand_trials(ab)
    except ConfigError:
        return []


def _ci(lo, hi, digits: int = 4) -> str:
    return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


COVERAGE_NOTE = (
    "What the intervals cover: training noise over seeds (initialisation, data order, "
    "augmentation, dropout) with the data split fixed. The test set's own sampling noise is "
    "not in them: its binomial standard error per run is the column 'test-set SE'. Set "
    "`data.vary_split_with_seed: true` to put the split's noise in them too.")


ADAPTIVE_NOTE = (
    "Adaptive seeds: the verdict column comes from the sequential rule (group-sequential "
    "paired t-tests at Lan-DeMets alpha-spending boundaries, Holm across variants, TOST for "
    "equivalence, futility when the final boundary is out of reach), which keeps the error "
    "rates whatever look a variant stopped at. The p-values and CIs beside it are fixed-n "
    "figures on the seeds each variant got and are not adjusted for the looks: read them as "
    "descriptions. A variant stopped as futile is inconclusive, not 'the same'.")


def reading_notes(delta: float | None, missing_as: str, imputed: int,
                  adaptive: bool = False) -> list[str]:
    """What the numbers mean, for the markdown and the HTML report alike."""
    return [ADAPTIVE_NOTE] * adaptive + [
        COVERAGE_NOTE,
        f"Seeds without a metric (diverged or failed) count as `missing_as: {missing_as}` "
        f"({imputed} imputed in this report): the verdict covers every seed that ran, not "
        "only the survivors.",
        "Verdicts: better/worse when the Holm-adjusted test rejects (the difference's CI is "
        "Holm-adjusted to agree with it: its level is in the 'CI level' column); "
        + (f"equivalent within ±{delta:g} when Holm-adjusted TOST shows the difference is "
           "inside that margin; " if delta else
           "with no `delta:` declared, equivalence cannot be shown; ")
        + "otherwise inconclusive: the data did not decide, which is not 'the same'. Seeds "
        "for 80% power are planned from the declared delta and an upper "
        f"{stats.SD_CONFIDENCE:.0%} confidence limit of the seed SD, never from the observed "
        "effect. The effect size is d_z (mean paired difference over its SD) for paired "
        "comparisons, Hedges' g otherwise. P(improvement): share of seeds where the variant "
        "beats the baseline (paired; ties count half) or Mann-Whitney U/(n1 n2). IQM: "
        f"interquartile mean, its bootstrap CI shown from {stats.IQM_CI_MIN_N} seeds.",
        "Collapsed: nearly all examples of other classes predicted as one class, or agreement "
        "with the labels no better than chance (Cohen's kappa <= 0)."]


def summary_markdown(study: str, metric: str, direction: str, vt: pd.DataFrame,
                     ct: pd.DataFrame, missing: list[str], plots: list[str],
                     delta: float | None = None, missing_as: str = "chance",
                     question: str = "", recall: pd.DataFrame | None = None,
                     adaptive: tuple[str, list[dict]] | None = None) -> str:
    lines = [f"# {study}: {metric} ({direction})", ""]
    if question:
        lines += ["> " + line for line in question.splitlines()] + [""]
    lines += ["## Per variant", "",
              "| variant | n | imputed | mean ± std | 95% CI (t) | median | IQM [95% CI] | range |"
              " test-set SE | collapse rate | diverged | failed | epochs | train s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in vt.itertuples():
        name = r.variant + (" (baseline)" if r.baseline else "")
        lines.append(
            f"| {name} | {r.n} | {r.imputed} | {_fmt(r.mean)} ± {_fmt(r.std)} | "
            f"{_ci(r.ci95_low, r.ci95_high)} | {_fmt(r.median)} | {_fmt(r.iqm)} "
            f"{_ci(r.iqm_ci95_low, r.iqm_ci95_high)} | {_fmt(r.min)} – {_fmt(r.max)} | "
            f"{_fmt(r.test_se)} | {_fmt(r.collapse_rate, 2)} | {r.diverged} | {r.failed} | "
            f"{_fmt(r.mean_epochs_run, 1)} | {_fmt(r.mean_train_time_s, 1)} |")
    if len(ct):
        lines += ["", f"## Against the baseline ({ct['baseline'].iloc[0]})", "",
                  "| variant | difference [Holm-adjusted CI] | CI level | unadjusted 95% CI | "
                  "test (pairs) | p (Holm) | Wilcoxon p | effect size | P(improvement) "
                  "[95% CI] | seeds for 80% power at ±delta | verdict |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in ct.itertuples():
            pairs = f"{r.test} ({min(r.n_base, r.n_variant)})" + (
                f", left out seeds {r.left_out_seeds}" if r.left_out_seeds else "")
            lines.append(
                f"| {r.variant} | {_fmt(r.diff)} {_ci(r.diff_ci_low, r.diff_ci_high)} | "
                f"{_fmt(r.ci_level * 100, 1)}% | {_ci(r.diff_ci95_low, r.diff_ci95_high)} | "
                f"{pairs} | {_fmt(r.p_holm)} | {_fmt(r.p_wilcoxon)} | "
                f"{r.effect_size_kind} {_fmt(r.effect_size, 2)} | {_fmt(r.prob_improvement, 2)}"
                f" {_ci(r.prob_improvement_low, r.prob_improvement_high, 2)} | "
                f"{_fmt(r.seeds_for_80_power, 0) if delta else 'declare delta'} | {r.verdict} |")
    if adaptive is not None:
        lines += ["", "## Adaptive seeds: the looks, and where each variant stopped", "",
                  adaptive[0], "", "| variant | decision | seeds | why | looks |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['decision']} | {r['n']} | {r['why']} | "
                  f"{r['looks']} |" for r in adaptive[1]]
    if recall is not None:
        cols = list(recall.columns[1:])
        lines += ["", "## Per-class recall (imbalanced test set; mean over seeds)", "",
                  "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in recall.itertuples(index=False):
            lines.append(f"| {r[0]} | " + " | ".join(_fmt(v, 3) for v in r[1:]) + " |")
    if missing:
        lines += ["", f"## Missing ({len(missing)} trial(s) without a finished run)", ""]
        lines += [f"- {m}" for m in missing[:50]]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    imputed = int(vt["imputed"].sum()) if len(vt) else 0
    lines += ["", "## How to read this", ""]
    for note in reading_notes(delta, missing_as, imputed, adaptive is not None):
        lines += [note, ""]
    return "\n".join(lines)


def resolve_study(ref: str):
    """An ablation name or path -> (study name, Ablation); a bare study name whose file is
    gone still has its runs -> (ref, None)."""
    from core.ablation.spec import load_ablation

    try:
        ab = load_ablation(ref)
    except ConfigError:
        return ref, None
    return ab.name, ab


def write_report(ref: str, metric: str | None = None, out: str | Path | None = None,
                 tracking_uri: str | None = None, console=None, quiet: bool = False,
                 direction: str | None = None, expected: list | None = None,
                 delta: float | None = None, missing_as: str | None = None) -> Report:
    """`ref`: an ablation name or file (its study), or the name of a study in MLflow.
    `expected`: the trials the study should have (default: the ablation file's). `delta` and
    `missing_as` default to the ablation's."""
    from core.paths import REPORTS_DIR

    study, ab = resolve_study(ref)
    fallback = "maximize"
    if ab is not None:
        metric = metric or ab.metric
        fallback = ab.direction if metric == ab.metric else fallback
        delta = delta if delta is not None else (ab.delta if metric == ab.metric else None)
        missing_as = missing_as or ab.missing_as
    metric = metric or "test_accuracy"
    missing_as = missing_as or "chance"
    direction = direction or default_direction(metric, fallback)
    c = tracking.client(tracking_uri)
    runs = load_runs(study, c=c)
    if runs.empty:
        raise LookupError(f"study {study!r} has no trial runs yet")
    if metric not in runs:
        known = sorted(k for k in runs.columns if k.startswith(("test_", "val_")))
        hint = difflib.get_close_matches(metric, known, n=1)
        raise LookupError(f"--metric {metric!r} is not logged by {study!r}"
                          + (f"; did you mean {hint[0]}?" if hint else "")
                          + f" (some logged: {', '.join(known[:8])})")
    out_dir = Path(out) if out else REPORTS_DIR / study
    out_dir.mkdir(parents=True, exist_ok=True)
    vals = seed_values(runs, metric, direction, missing_as)
    vt = variant_table(runs, metric, direction, missing_as)
    ct = comparison_table(runs, metric, direction, delta=delta, missing_as=missing_as)
    expected = expected if expected is not None else expected_trials(ab)
    rep = adaptive_replay(runs, ab, expected, metric, direction, delta, missing_as)
    adaptive = None
    if rep is not None:
        from core.ablation.adaptive import looks_table, section

        expected = [t for t in expected if t.seed < rep.seeds_of(t.variant)]
        if len(ct):
            ct["verdict"] = [rep.verdict(v, delta) for v in ct["variant"]]
        looks_table(rep).to_csv(out_dir / "looks.csv", index=False)
        adaptive = section(rep, len(ct))
    missing = missing_trials(expected, runs)
    vt.to_csv(out_dir / "summary.csv", index=False)
    ct.to_csv(out_dir / "comparisons.csv", index=False)
    vals.to_csv(out_dir / "seeds.csv", index=False)
    plots = [plot_per_seed(vals, metric, out_dir / "per_seed.png").name,
             plot_ecdf(vals, metric, out_dir / "score_distribution.png").name]
    hist = histories(runs, c)
    if len(hist):
        plots.append(plot_learning_curves(hist, out_dir / "learning_curves.png").name)
    cms = summed_confusions(runs, c)
    cm = plot_confusions(cms, out_dir / "confusion_matrices.png")
    if cm:
        plots.append(cm.name)
    recall = class_recall(runs, cms)
    if recall is not None:
        recall.to_csv(out_dir / "class_recall.csv", index=False)
    question = ab.question if ab is not None else ""
    (out_dir / "summary.md").write_text(
        summary_markdown(study, metric, direction, vt, ct, missing, plots, delta, missing_as,
                         question, recall, adaptive))
    from core.ablation import html

    exp_id = c.get_experiment_by_name(study).experiment_id
    ui = c.tracking_uri if c.tracking_uri.startswith("http") else "http://127.0.0.1:5000"
    notes = reading_notes(delta, missing_as, int(vt["imputed"].sum()) if len(vt) else 0,
                          adaptive is not None)
    (out_dir / "index.html").write_text(html.render(
        study, metric, direction, question, vt, ct, missing, [out_dir / p for p in plots],
        runs, exp_id, ui, notes, delta, recall, adaptive))
    _log_parents(c, runs, vt, ct, metric)
    _log_study_run(c, study, out_dir, metric)
    if console is not None:
        _print(console, study, metric, vt, ct, missing, out_dir, quiet)
    return Report(study, metric, direction, delta, missing_as, out_dir, vt, ct, missing)


@dataclass
class Report:
    study: str
    metric: str
    direction: str
    delta: float | None
    missing_as: str
    folder: Path
    variants: pd.DataFrame
    comparisons: pd.DataFrame
    missing: list[str]

    def to_json(self) -> dict:
        """For scripts (`ablab report --json`): plain values, NaN as null."""
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and math.isnan(v) else
                         v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                    for r in df.to_dict("records")]

        return {"study": self.study, "metric": self.metric, "direction": self.direction,
                "delta": self.delta, "missing_as": self.missing_as,
                "report": str(self.folder / "index.html"),
                "variants": records(self.variants), "comparisons": records(self.comparisons),
                "missing": self.missing}


def _log_parents(c, runs: pd.DataFrame, vt: pd.DataFrame, ct: pd.DataFrame,
                 metric: str) -> None:
    """The variant parent runs carry the report's numbers, so the MLflow UI compares
    variants with the same statistics and verdicts."""
    parent_of = runs.drop_duplicates("variant").set_index("variant")["parent"].to_dict()
    comp = ct.set_index("variant").to_dict("index") if len(ct) else {}
    for r in vt.to_dict("records"):
        pid = parent_of.get(r["variant"])
        if not pid:
            continue
        m = {f"{k}_{metric}": r[k] for k in ("mean", "std", "ci95_low", "ci95_high", "median",
                                             "iqm", "iqm_ci95_low", "iqm_ci95_high")}
        m.update(n_seeds=r["n"], n_imputed=r["imputed"])
        tags = {}
        if r["variant"] in comp:
            x = comp[r["variant"]]
            m.update({f"{k}_{metric}": x[k] for k in (
                "diff", "diff_ci_low", "diff_ci_high", "p_holm", "prob_improvement",
                "prob_improvement_low", "prob_improvement_high", "effect_size")})
            tags = {f"ablab.verdict_{metric}": x["verdict"]}
        tracking.log_metrics(c, pid, {k: float(v) for k, v in m.items()
                                      if v is not None and not pd.isna(v)}, step=int(r["n"]))
        if tags:
            tracking.set_tags(c, pid, tags)


def _log_study_run(c, study: str, out_dir: Path, metric: str) -> None:
    from core.study.record import role_run

    exp = c.get_experiment_by_name(study)
    run_id = role_run(c, exp.experiment_id, "study", {"ablab.study": study}, f"{study} report")
    tracking.set_tags(c, run_id, {"ablab.report_metric": metric})
    c.log_artifacts(run_id, str(out_dir), artifact_path=f"report_{metric}")


def _print(console, study, metric, vt, ct, missing, out_dir, quiet) -> None:
    from rich.table import Table

    if len(ct):
        t = Table(title=f"{study}: {metric} vs baseline {ct['baseline'].iloc[0]}")
        for col in ("variant", "diff [Holm CI]", "p (Holm)", "effect", "P(improve)",
                    "seeds@80%", "verdict"):
            t.add_column(col)
        for r in ct.itertuples():
            t.add_row(r.variant, f"{_fmt(r.diff)} {_ci(r.diff_ci_low, r.diff_ci_high)}",
                      _fmt(r.p_holm), f"{r.effect_size_kind} {_fmt(r.effect_size, 2)}",
                      _fmt(r.prob_improvement, 2), _fmt(r.seeds_for_80_power, 0), r.verdict)
        console.print(t)
    if not quiet:
        t = Table(title=f"{study}: {metric} per variant")
        for col in ("variant", "n", "imputed", "mean ± std", "95% CI", "IQM", "collapse",
                    "diverged", "failed"):
            t.add_column(col)
        for r in vt.itertuples():
            t.add_row(r.variant + (" (baseline)" if r.baseline else ""), str(r.n),
                      str(r.imputed), f"{_fmt(r.mean)} ± {_fmt(r.std)}",
                      _ci(r.ci95_low, r.ci95_high), _fmt(r.iqm), _fmt(r.collapse_rate, 2),
                      str(r.diverged), str(r.failed))
        console.print(t)
    if missing:
        console.print(f"[yellow]{len(missing)} trial(s) have no finished run yet:[/] "
                      + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
                      + " (rerun the study to fill them in)")
    console.print(f"report: {out_dir}/index.html (and summary.md, csv, png; also in MLflow)")
