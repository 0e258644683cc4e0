import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from core.evaluate import classification_metrics, confusion, report


def test_binary_metrics_with_auc():
    y = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.6, 0.8, 0.7, 0.3, 0.2])
    m = classification_metrics(y, np.stack([1 - p1, p1], 1))
    assert m["test_accuracy"] == pytest.approx(4 / 6)
    assert m["test_auc"] == pytest.approx(roc_auc_score(y, p1))
    assert m["test_recall_1"] == pytest.approx(2 / 3)
    assert m["test_precision_1"] == pytest.approx(2 / 3)
    assert m["test_macro_f1"] == pytest.approx(f1_score(y, p1 > 0.5, average="macro"))


def test_multiclass_missing_class_has_no_auc():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
    m = classification_metrics(y, proba)
    assert "test_auc" not in m  # class 2 absent from y: AUC undefined
    assert m["test_recall_2"] == 0.0 and m["test_precision_2"] == 0.0
    cm = confusion(y, proba.argmax(1), 3)
    assert cm.tolist() == [[2, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert report(y, proba.argmax(1), ["a", "b", "c"])["a"]["recall"] == 1.0
