"""Seeded procedural "defect / no defect" images: a binary, imbalanced task at any size."""

from __future__ import annotations

import numpy as np

from core.data._base import Pool, register
from core.schema import DataConfig


def make_images(n: int, size: int, defect_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Textured surfaces; defects are a dark scratch or a bright blob at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    y = (rng.random(n) < defect_rate).astype("int32")
    x = np.empty((n, size, size), "float32")
    for i in range(n):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(2, 6)
        base = 0.5 + 0.15 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
        img = base + 0.2 * (rng.random() - 0.5) * xx + rng.normal(0, 0.05, (size, size))
        if y[i]:
            cx, cy = rng.uniform(0.2, 0.8, 2)
            if rng.random() < 0.5:  # bright blob
                r = rng.uniform(0.06, 0.15)
                img += 0.45 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            else:  # dark scratch through (cx, cy)
                t = rng.uniform(0, np.pi)
                dist = np.abs(np.cos(t) * (yy - cy) - np.sin(t) * (xx - cx))
                along = np.abs(np.sin(t) * (yy - cy) + np.cos(t) * (xx - cx))
                img -= 0.45 * ((dist < max(1.0 / size, 0.03)) & (along < 0.3))
        x[i] = img
    return np.clip(x, 0, 1), y


@register("synthetic")
def load(cfg: DataConfig) -> Pool:
    x, y = make_images(cfg.n_samples, cfg.image_size, cfg.defect_rate, cfg.split_seed)
    x = x[..., None]
    if cfg.channels == 3:
        x = np.repeat(x, 3, axis=-1)
    return Pool(x, y, ["no_defect", "defect"])
