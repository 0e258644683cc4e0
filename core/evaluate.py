"""Test-split metrics from predicted probabilities (pure; scikit-learn does the arithmetic)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray,
                           prefix: str = "test_") -> dict[str, float]:
    n = proba.shape[1]
    labels = list(range(n))
    y_pred = proba.argmax(axis=1)
    m: dict[str, float] = {
        f"{prefix}accuracy": accuracy_score(y_true, y_pred),
        f"{prefix}balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        f"{prefix}macro_f1": f1_score(y_true, y_pred, average="macro", labels=labels,
                                      zero_division=0),
    }
    if np.isfinite(proba).all():
        m[f"{prefix}loss"] = log_loss(y_true, np.clip(proba, 1e-7, 1), labels=labels)
    rec = recall_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
    prec = precision_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
    for c in labels:
        m[f"{prefix}recall_{c}"] = rec[c]
        m[f"{prefix}precision_{c}"] = prec[c]
    if len(np.unique(y_true)) == n and np.isfinite(proba).all():
        p = proba / proba.sum(axis=1, keepdims=True)
        m[f"{prefix}auc"] = (roc_auc_score(y_true, p[:, 1]) if n == 2
                             else roc_auc_score(y_true, p, multi_class="ovr", labels=labels))
    return {k: float(v) for k, v in m.items()}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(n)))


def report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict[str, Any]:
    return classification_report(y_true, y_pred, labels=list(range(len(names))),
                                 target_names=names, output_dict=True, zero_division=0)
