"""scikit-learn's handwritten digits: shipped with scikit-learn, so the offline default."""

from __future__ import annotations

import numpy as np

from core.data._base import Pool, register, resize
from core.schema import DataConfig


@register("digits")
def load(cfg: DataConfig) -> Pool:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")
    return Pool(resize(x, cfg.image_size, cfg.channels), d.target.astype("int32"),
                [str(c) for c in np.unique(d.target)])
