"""What a seed without a metric (diverged, failed) counts as in a verdict: the study's
`missing_as` rule. Pure; its consequence for the verdicts is simulated in
tests/test_verdicts.py (a failed seed never improves a variant)."""

from __future__ import annotations

import math

import numpy as np

from core.stats import NAN, metric_bounds


def chance_value(metric: str, n_classes: int) -> float:
    """What a model at chance scores: 1/K for accuracies, recall, precision and F1 (a
    uniform guess), 0.5 AUC, ln K cross-entropy."""
    m = metric.lower()
    if "auc" in m:
        return 0.5
    if "loss" in m:
        return math.log(n_classes) if n_classes > 1 else NAN
    if any(k in m for k in ("accuracy", "f1", "recall", "precision")):
        return 1.0 / n_classes if n_classes else NAN
    return NAN


def _worst(values: np.ndarray, direction: str) -> float:
    x = values[np.isfinite(values)]
    return float(x.min() if direction == "maximize" else x.max()) if len(x) else NAN


def impute(how: str, metric: str, direction: str, n_classes: int,
           observed: np.ndarray, own: np.ndarray | None = None) -> float:
    """The value a seed without a metric (diverged, failed) counts as: `chance`, `worst`
    (the metric's worst possible value, or the worst seen in the study, `observed`, when it
    is unbounded), or NaN for `exclude`. A failed seed never improves its variant: under
    `chance` it counts as chance or as the worst value the variant's own seeds scored
    (`own`), whichever is worse (a loss whose survivors score above ln K would otherwise gain
    from every divergence). Per variant, so the parent run (which reads its own ledger) and
    the report count it alike. A metric with no chance value (Cohen's kappa, IoU, a custom
    one) under `chance` counts as `worst`: dropping those seeds would let the survivors alone
    decide."""
    if how == "exclude":
        return NAN
    if how == "chance":
        chance = chance_value(metric, n_classes)
        if math.isfinite(chance):
            own_worst = _worst(observed if own is None else own, direction)
            if not math.isfinite(own_worst):
                return chance
            return min(chance, own_worst) if direction == "maximize" else max(chance,
                                                                              own_worst)
    lo, hi = metric_bounds(metric)
    worst = lo if direction == "maximize" else hi
    return worst if math.isfinite(worst) else _worst(observed, direction)
