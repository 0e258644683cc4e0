"""Which outcome a trained model has (core.lifecycle.Outcome): collapsed when its predictions
carry no information about the labels, diverged on a NaN/inf loss, else ok.

Collapsed, by two checks on the test predictions (`tests/test_outcome.py` simulates their
error rates):
- concentration: nearly all (>= 95%) of the examples of the other classes are predicted as
  the one dominant class: the classic "val_accuracy stuck at 0.5", one class for everything;
- no better than chance: the observed agreement is at most the agreement expected if labels
  and predictions were independent (Cohen's kappa <= 0).
A weak but real model (a 5-class model at 0.30, a 2-class model at 0.60, on 90 test images) is
flagged at most ~3% of the time; a majority-heavy test set (81/9) does not make a good model
collapsed because its accuracy is under the majority rate.
"""

from __future__ import annotations

import math

import numpy as np

from core.lifecycle import Outcome

CONCENTRATION = 0.95


def chance_agreement(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    pt = np.bincount(y_true, minlength=n_classes) / len(y_true)
    pp = np.bincount(y_pred, minlength=n_classes) / len(y_pred)
    return float(pt @ pp)


def kappa(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Cohen's kappa: agreement beyond what independent labels and predictions would give."""
    k = int(max(y_true.max(), y_pred.max())) + 1
    pe = chance_agreement(y_true, y_pred, k)
    po = float((y_true == y_pred).mean())
    return (po - pe) / (1 - pe) if pe < 1 else 0.0


def concentrated(y_true: np.ndarray, y_pred: np.ndarray) -> bool:
    """Nearly every example of the other classes predicted as the dominant predicted class."""
    c = np.bincount(y_pred).argmax()
    others = y_true != c
    if not others.any():
        return False
    return float((y_pred[others] == c).mean()) >= CONCENTRATION


def is_collapsed(y_true: np.ndarray, y_pred: np.ndarray) -> bool:
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    return len(np.unique(y_pred)) <= 1 or concentrated(y_true, y_pred) \
        or kappa(y_true, y_pred) <= 0


def classify(losses: list[float], y_true: np.ndarray | None,
             y_pred: np.ndarray | None) -> Outcome:
    if any(not math.isfinite(v) for v in losses):
        return Outcome.DIVERGED
    if y_true is not None and y_pred is not None and is_collapsed(y_true, y_pred):
        return Outcome.COLLAPSED
    return Outcome.OK
