"""A study's plots (matplotlib, headless): every seed per variant, the score distribution,
learning curves, summed confusion matrices. Pure: tables in, PNG files out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from core import stats
from core.plots import plt, save


def plot_per_seed(vals: pd.DataFrame, metric: str, path: Path) -> Path:
    """Every seed's value per variant over a box of quartiles; imputed seeds (diverged or
    failed, counted as `missing_as` says) as red crosses."""
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
    return save(fig, path)


def plot_ecdf(vals: pd.DataFrame, metric: str, path: Path, alpha: float = stats.ALPHA) -> Path:
    """The score distribution over seeds per variant (rliable's performance profile for one
    task): the empirical CDF with its DKW confidence band (simultaneous, 1 - alpha)."""
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
    return save(fig, path)


def plot_learning_curves(hist: pd.DataFrame, path: Path) -> Path:
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
    return save(fig, path)


def plot_confusions(cms: dict[str, tuple[list[str], np.ndarray]], path: Path) -> Path | None:
    if not cms:
        return None
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
    return save(fig, path)


def plot_tradeoffs(table: pd.DataFrame, primary: str, costs: list[str], front: list[str],
                   path: Path) -> Path | None:
    """The primary metric against each cost, one panel per cost: a variant is a point at its
    means with its 95% intervals as error bars (exact costs have none); the Pareto set over
    all the study's metrics is drawn filled, the rest hollow."""
    costs = [c for c in costs if c in set(table["metric"])]
    if not costs or primary not in set(table["metric"]):
        return None
    means = table.pivot_table(index="variant", columns="metric", values="mean", sort=False)
    lo = table.pivot_table(index="variant", columns="metric", values="ci95_low", sort=False,
                           dropna=False)
    hi = table.pivot_table(index="variant", columns="metric", values="ci95_high", sort=False,
                           dropna=False)

    def err(metric: str) -> np.ndarray | None:
        if metric not in lo or lo[metric].isna().all():
            return None
        m = means[metric].to_numpy(float)
        return np.abs(np.vstack([m - lo[metric].to_numpy(float), hi[metric].to_numpy(float)
                                 - m]))

    fig, axes = plt.subplots(1, len(costs), figsize=(4.2 * len(costs), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs, strict=True):
        for i, variant in enumerate(means.index):
            x, y = means.loc[variant, cost], means.loc[variant, primary]
            xe, ye = err(cost), err(primary)
            on_front = variant in front
            ax.errorbar(x, y, xerr=None if xe is None else xe[:, i:i + 1],
                        yerr=None if ye is None else ye[:, i:i + 1], fmt="o", capsize=3,
                        mfc=None if on_front else "white", color=f"C{i % 10}",
                        label=variant)
            ax.annotate(str(variant), (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        ax.set_xlabel(cost)
        ax.set_ylabel(primary)
        ax.grid(alpha=0.3)
    axes[0][0].set_title("filled: the Pareto set", fontsize=9, loc="left")
    fig.suptitle(f"{primary} against each cost (means, 95% intervals)")
    return save(fig, path)
