import numpy as np
from scipy.stats import binomtest

from core.outcome import classify, is_collapsed, majority_rate


def test_single_class_predictions_are_collapsed():
    y = np.array([0, 1] * 50)
    assert is_collapsed(y, np.zeros(100, int))


def test_chance_level_is_collapsed_and_good_is_not():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    assert is_collapsed(y, rng.integers(0, 2, 200))  # coin flips
    good = y.copy()
    good[:20] = 1 - good[:20]  # 90% accurate
    assert not is_collapsed(y, good)


def test_matches_binomial_reference():
    y = np.array([0] * 70 + [1] * 30)
    pred = y.copy()
    pred[:10] = 1  # 90 correct of 100, majority rate 0.7
    p = binomtest(90, 100, 0.7, alternative="greater").pvalue
    assert majority_rate(y) == 0.7
    assert is_collapsed(y, pred) == (p >= 0.05)


def test_classify():
    y = np.array([0, 1, 2] * 20)
    assert classify([1.0, float("nan")], y, y) == "diverged"
    assert classify([1.0, float("inf")], None, None) == "diverged"
    assert classify([1.0, 0.5], y, np.zeros_like(y)) == "collapsed"
    assert classify([1.0, 0.5], y, y) == "ok"
