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


def _runs(runs: pd.DataFrame | str) -> pd.DataFrame:
    """Notebook convenience: a study name loads its runs from the default tracking URI."""
    return load_runs(runs) if isinstance(runs, str) else runs


def variant_table(runs: pd.DataFrame | str, metric: str = "test_accuracy") -> pd.DataFrame:
    runs = _runs(runs)
    rows = []
    for name, g in runs.groupby("variant", sort=False):
        fin = _finished(g)
        vals = fin[metric].dropna().to_numpy() if metric in fin else np.array([])
        n_fin = len(fin)
        row = {"variant": name, "baseline": bool(g["baseline"].any()),
               **stats.describe(vals),
               "collapse_rate": float((fin["outcome"] == "collapsed").mean()) if n_fin
               else math.nan,
               "collapsed": int((fin["outcome"] == "collapsed").sum()),
               "diverged": int((fin["outcome"] == "diverged").sum()),
               "failed": int((g["status"] == "FAILED").sum()),
               "finished": n_fin,
               "mean_epochs_run": float(fin["epochs_run"].mean()) if "epochs_run" in fin
               and n_fin else math.nan,
               "mean_train_time_s": float(fin["train_time_s"].mean()) if "train_time_s" in fin
               and n_fin else math.nan}
        rows.append(row)
    cols = ["variant", "baseline", "n", "mean", "std", "ci95_low", "ci95_high", "boot_ci95_low",
            "boot_ci95_high", "median", "min", "max", "collapse_rate", "collapsed", "diverged",
            "failed", "finished", "mean_epochs_run", "mean_train_time_s"]
    return pd.DataFrame(rows).reindex(columns=cols)


def comparison_table(runs: pd.DataFrame | str, metric: str = "test_accuracy",
                     direction: str = "maximize", baseline: str | None = None) -> pd.DataFrame:
    """Each variant against the baseline; paired tests when both have the same seeds.
    p-values are Holm-adjusted across all comparisons of the study."""
    runs = _runs(runs)
    baseline = baseline or baseline_name(runs)
    fin = _finished(runs)
    fin = fin[fin[metric].notna()] if metric in fin else fin.iloc[0:0]
    base = fin[fin["variant"] == baseline].set_index("seed")[metric]
    rows = []
    for name in dict.fromkeys(runs["variant"]):
        if name == baseline:
            continue
        other = fin[fin["variant"] == name].set_index("seed")[metric]
        paired = len(base) > 0 and set(base.index) == set(other.index)
        if paired:
            a, b = base.sort_index().to_numpy(), other.sort_index().to_numpy()
        else:
            a, b = base.to_numpy(), other.to_numpy()
        res = stats.compare(a, b, paired)
        rows.append({"variant": name, "baseline": baseline, "metric": metric,
                     "test": ("paired t" if paired else "Welch t"), "paired": paired, **res})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["p_holm"] = stats.holm(df["p_value"].tolist())
    df["verdict"] = [stats.verdict(d, p, int(min(nb, nv)), direction) for d, p, nb, nv in
                     zip(df["diff"], df["p_holm"], df["n_base"], df["n_variant"], strict=True)]
    return df


# ----------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def plot_per_seed(runs: pd.DataFrame, metric: str, path: Path) -> Path:
    plt = _plt()
    fin = _finished(runs)
    names = list(dict.fromkeys(runs["variant"]))
    data = [fin.loc[fin["variant"] == n, metric].dropna().to_numpy() if metric in fin
            else np.array([]) for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 4.5))
    ax.boxplot([d if len(d) else [np.nan] for d in data], widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=22, alpha=0.8, zorder=3)
        if len(d):
            ax.plot([i - 0.3, i + 0.3], [d.mean()] * 2, color="black", lw=1.5, zorder=4)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per seed (box: quartiles, bar: mean)")
    ax.grid(axis="y", alpha=0.3)
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


def expected_trials(ab) -> list:
    from core.ablation.spec import expand_trials

    if ab is None:
        return []
    try:
        return expand_trials(ab)
    except ConfigError:
        return []


def summary_markdown(study: str, metric: str, direction: str, vt: pd.DataFrame,
                     ct: pd.DataFrame, missing: list[str], plots: list[str]) -> str:
    lines = [f"# {study}: {metric} ({direction})", ""]
    lines += ["## Per variant", "",
              "| variant | n | mean ± std | 95% CI (t) | 95% CI (bootstrap) | median | range | "
              "collapse rate | diverged | failed | epochs | train s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in vt.itertuples():
        name = r.variant + (" (baseline)" if r.baseline else "")
        lines.append(
            f"| {name} | {r.n} | {_fmt(r.mean)} ± {_fmt(r.std)} | "
            f"[{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}] | "
            f"[{_fmt(r.boot_ci95_low)}, {_fmt(r.boot_ci95_high)}] | {_fmt(r.median)} | "
            f"{_fmt(r.min)} – {_fmt(r.max)} | {_fmt(r.collapse_rate, 2)} | {r.diverged} | "
            f"{r.failed} | {_fmt(r.mean_epochs_run, 1)} | {_fmt(r.mean_train_time_s, 1)} |")
    if len(ct):
        lines += ["", f"## Against the baseline ({ct['baseline'].iloc[0]})", "",
                  "| variant | difference (95% CI) | test | p | p (Holm) | Wilcoxon p | "
                  "Hedges' g | seeds for 80% power | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in ct.itertuples():
            lines.append(
                f"| {r.variant} | {_fmt(r.diff)} [{_fmt(r.diff_ci95_low)}, "
                f"{_fmt(r.diff_ci95_high)}] | {r.test} | {_fmt(r.p_value)} | {_fmt(r.p_holm)} | "
                f"{_fmt(r.p_wilcoxon)} | {_fmt(r.hedges_g, 2)} | {_fmt(r.seeds_for_80_power, 0)}"
                f" | {r.verdict} |")
    if missing:
        lines += ["", f"## Missing ({len(missing)} trial(s) without a finished run)", ""]
        lines += [f"- {m}" for m in missing[:50]]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "Collapsed: predictions in one class, or accuracy not above the majority-class "
              "rate by a one-sided binomial test (alpha 0.05). p (Holm): Holm-adjusted across "
              "all comparisons of this study.", ""]
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
                 direction: str | None = None, expected: list | None = None) -> Path:
    """`ref`: an ablation name or file (its study), or the name of a study in MLflow.
    `expected`: the trials the study should have (default: the ablation file's)."""
    from core.paths import REPORTS_DIR

    study, ab = resolve_study(ref)
    fallback = "maximize"
    if ab is not None:
        metric = metric or ab.metric
        fallback = ab.direction if metric == ab.metric else fallback
    metric = metric or "test_accuracy"
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
    vt = variant_table(runs, metric)
    ct = comparison_table(runs, metric, direction)
    missing = missing_trials(expected if expected is not None else expected_trials(ab), runs)
    vt.to_csv(out_dir / "summary.csv", index=False)
    ct.to_csv(out_dir / "comparisons.csv", index=False)
    plots = [plot_per_seed(runs, metric, out_dir / "per_seed.png").name]
    hist = histories(runs, c)
    if len(hist):
        plots.append(plot_learning_curves(hist, out_dir / "learning_curves.png").name)
    cm = plot_confusions(summed_confusions(runs, c), out_dir / "confusion_matrices.png")
    if cm:
        plots.append(cm.name)
    (out_dir / "summary.md").write_text(
        summary_markdown(study, metric, direction, vt, ct, missing, plots))
    _log_study_run(c, study, out_dir, metric)
    if console is not None:
        _print(console, study, metric, vt, ct, missing, out_dir, quiet)
    return out_dir


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
        for col in ("variant", "diff (95% CI)", "p (Holm)", "g", "seeds@80%", "verdict"):
            t.add_column(col)
        for r in ct.itertuples():
            t.add_row(r.variant, f"{_fmt(r.diff)} [{_fmt(r.diff_ci95_low)}, "
                      f"{_fmt(r.diff_ci95_high)}]", _fmt(r.p_holm), _fmt(r.hedges_g, 2),
                      _fmt(r.seeds_for_80_power, 0), r.verdict)
        console.print(t)
    if not quiet:
        t = Table(title=f"{study}: {metric} per variant")
        for col in ("variant", "n", "mean ± std", "95% CI", "collapse", "diverged", "failed"):
            t.add_column(col)
        for r in vt.itertuples():
            t.add_row(r.variant + (" (baseline)" if r.baseline else ""), str(r.n),
                      f"{_fmt(r.mean)} ± {_fmt(r.std)}",
                      f"[{_fmt(r.ci95_low)}, {_fmt(r.ci95_high)}]",
                      _fmt(r.collapse_rate, 2), str(r.diverged), str(r.failed))
        console.print(t)
    if missing:
        console.print(f"[yellow]{len(missing)} trial(s) have no finished run yet:[/] "
                      + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
                      + " (rerun the study to fill them in)")
    console.print(f"report: {out_dir}/summary.md (+ csv, png; also in MLflow)")
