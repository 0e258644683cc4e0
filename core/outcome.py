"""Trial outcomes: ok, collapsed (predicts one class, or no better than the majority class by a
one-sided binomial test), diverged (NaN/inf loss), failed (an exception; set by the runner)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest

COLLAPSE_ALPHA = 0.05


def majority_rate(y_true: np.ndarray) -> float:
    return float(np.bincount(y_true).max() / len(y_true))


def is_collapsed(y_true: np.ndarray, y_pred: np.ndarray, alpha: float = COLLAPSE_ALPHA) -> bool:
    """The classic 'val_accuracy stuck at 0.5': one predicted class, or accuracy that a binomial
    test cannot tell apart from always guessing the majority class."""
    if len(np.unique(y_pred)) <= 1:
        return True
    correct = int((y_true == y_pred).sum())
    p = binomtest(correct, len(y_true), majority_rate(y_true), alternative="greater").pvalue
    return bool(p >= alpha)


def classify(losses: list[float], y_true: np.ndarray | None, y_pred: np.ndarray | None) -> str:
    if any(not math.isfinite(v) for v in losses):
        return "diverged"
    if y_true is not None and y_pred is not None and is_collapsed(y_true, y_pred):
        return "collapsed"
    return "ok"
