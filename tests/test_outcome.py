"""Collapse detection, tested by simulation: weak-but-real models are not called collapsed,
predictors without information are."""

import numpy as np
import pytest

from core.outcome import classify, concentrated, is_collapsed, kappa

SIMS = 2000


def weak_model(rng, k: int, acc: float, n: int = 90):
    """Balanced labels; each prediction right with probability `acc`, else a uniformly
    chosen wrong class."""
    y = rng.integers(0, k, n)
    wrong = (y + rng.integers(1, k, n)) % k
    return y, np.where(rng.random(n) < acc, y, wrong)


@pytest.mark.parametrize(("k", "acc"), [(5, 0.30), (2, 0.60)])
def test_weak_but_real_models_are_rarely_flagged(k, acc):
    rng = np.random.default_rng(0)
    flagged = np.mean([is_collapsed(*weak_model(rng, k, acc)) for _ in range(SIMS)])
    assert flagged <= 0.05, flagged  # the old binomial-vs-majority rule: ~0.30 and ~0.45


def test_a_predictor_without_information_is_flagged_often():
    """Labels independent of predictions: kappa <= 0 half the time, concentration the rest
    of the time when predictions pile up in one class."""
    rng = np.random.default_rng(1)
    flagged = np.mean([is_collapsed(rng.integers(0, 5, 90), rng.integers(0, 5, 90))
                       for _ in range(SIMS)])
    assert flagged >= 0.45, flagged


def test_one_class_and_nearly_one_class_predictors_are_flagged():
    y = np.array([0, 1] * 50)
    assert is_collapsed(y, np.zeros(100, int))
    nearly = np.zeros(100, int)
    nearly[1] = 1  # one example of class 1 right, 49 predicted 0
    assert concentrated(y, nearly) and is_collapsed(y, nearly)


def test_majority_heavy_test_set_with_a_good_model_is_not_flagged():
    """81/9 labels, balanced accuracy 0.94: accuracy 0.889 is under the majority rate 0.90,
    which made the old rule call it collapsed."""
    y = np.array([0] * 81 + [1] * 9)
    pred = y.copy()
    pred[:10] = 1  # 10 of 81 negatives wrong, every positive right
    from sklearn.metrics import balanced_accuracy_score

    assert (pred == y).mean() == pytest.approx(0.889, abs=1e-3)
    assert balanced_accuracy_score(y, pred) == pytest.approx(0.94, abs=0.005)
    assert not is_collapsed(y, pred)


def test_kappa_matches_sklearn():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    for _ in range(20):
        y, p = weak_model(rng, 4, 0.5)
        assert kappa(y, p) == pytest.approx(cohen_kappa_score(y, p))


def test_classify():
    y = np.array([0, 1, 2] * 20)
    assert classify([1.0, float("nan")], y, y) == "diverged"
    assert classify([1.0, float("inf")], None, None) == "diverged"
    assert classify([1.0, 0.5], y, np.zeros_like(y)) == "collapsed"
    assert classify([1.0, 0.5], y, y) == "ok"
