"""Data sources (one file each, registered by name) and the shared split / tf.data pipeline."""

from __future__ import annotations

import json

import numpy as np

from core.data import _digits, _folder, _keras, _synthetic  # noqa: F401  (registration)
from core.data._base import SOURCES, Dataset, Pool, register, select_classes, split, subsample
from core.errors import ConfigError
from core.schema import DataConfig

__all__ = ["SOURCES", "Dataset", "Pool", "register", "load_dataset", "cache_key"]


def split_seed(cfg: DataConfig, seed: int) -> int:
    return seed if cfg.vary_split_with_seed else cfg.split_seed


def cache_key(cfg: DataConfig, seed: int) -> str:
    return json.dumps([cfg.model_dump(mode="json"), split_seed(cfg, seed)], sort_keys=True)


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """Pure: same config and split seed -> same arrays, whatever the trial seed."""
    pool = SOURCES[cfg.source](cfg)
    s = split_seed(cfg, seed)
    if pool.splits is None:
        x, y, names = select_classes(pool.x, pool.y, pool.class_names, cfg.classes)
        if cfg.max_samples is not None:
            x, y = subsample(x, y, min(1.0, cfg.max_samples / len(y)), s)
        pool = Pool(x, y, names)
    elif cfg.classes:
        splits, names = {}, pool.class_names
        for k, (x, y) in pool.splits.items():
            x, y, new_names = select_classes(x, y, names, cfg.classes)
            splits[k] = (x, y)
        pool = Pool(class_names=new_names, splits=splits)
    ds = split(pool, cfg, s)
    if min(len(ds.y_train), len(ds.y_val), len(ds.y_test)) == 0:
        raise ConfigError("data: a split came out empty; raise data.max_samples or fractions")
    return ds


def to_tf(x: np.ndarray, y: np.ndarray, n_classes: int, batch_size: int, seed: int | None,
          shuffle: bool):
    """Cached, seeded-shuffled, batched, prefetched tf.data pipeline of one split."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n_classes)))
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
