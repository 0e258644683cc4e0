"""Statistics of seeds (pure functions over arrays; scipy does the distributions)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as st


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t CI of the mean; degenerate (mean, mean) for n=1 or zero variance."""
    x = np.asarray(values, float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan
    m = float(x.mean())
    if n < 2:
        return m, m
    sem = float(x.std(ddof=1) / math.sqrt(n))
    if sem == 0:
        return m, m
    lo, hi = st.t.interval(level, n - 1, loc=m, scale=sem)
    return float(lo), float(hi)


def aggregate(values: Sequence[float], metric: str) -> dict[str, float]:
    """The numbers a variant's parent run holds: mean, std, 95% CI, n_seeds."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(x) == 0:
        return {"n_seeds": 0}
    lo, hi = t_interval(x)
    return {
        f"mean_{metric}": float(x.mean()),
        f"std_{metric}": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        f"ci95_low_{metric}": lo,
        f"ci95_high_{metric}": hi,
        "n_seeds": float(len(x)),
    }
