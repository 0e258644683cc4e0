"""Data sources (one file each, registered by name) and the shared split / tf.data pipeline."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np

from core.data import _digits, _folder, _keras, _synthetic  # noqa: F401  (registration)
from core.data._base import SOURCES, Dataset, Pool, register, select_classes, split, subsample
from core.data._rows import Rows
from core.errors import ConfigError
from core.schema import DataConfig

__all__ = ["SOURCES", "Dataset", "Pool", "register", "load_dataset", "cache_key", "check"]

# Images read from a decoded cache stay on disk (streamed) above this size as float32 in
# memory; smaller sets are read into memory, where training is faster.
STREAM_ABOVE_MB = int(os.environ.get("ABLAB_STREAM_ABOVE_MB", 1024))


def check(cfg: DataConfig, console=None):
    """What a source can check before any MLflow run exists (a folder: its shape, its decoded
    cache, its unreadable images); raises ConfigError. Sources without checks pass."""
    run = SOURCES.meta(cfg.source).get("check")
    return run(cfg, console) if run else None


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
        pool = Pool(x, y, names, info=pool.info)
    elif cfg.classes:
        splits, names = {}, pool.class_names
        for k, (x, y) in pool.splits.items():
            x, y, new_names = select_classes(x, y, names, cfg.classes)
            splits[k] = (x, y)
        pool = Pool(class_names=new_names, splits=splits, info=pool.info)
    ds = split(pool, cfg, s)
    if min(len(ds.y_train), len(ds.y_val), len(ds.y_test)) == 0:
        raise ConfigError("data: a split came out empty; raise data.max_samples or fractions")
    parts = (ds.x_train, ds.x_val, ds.x_test)
    if isinstance(ds.x_train, Rows):
        if sum(x.float_bytes() for x in parts) <= STREAM_ABOVE_MB * 2**20:
            return replace(ds, x_train=ds.x_train.materialize(), x_val=ds.x_val.materialize(),
                           x_test=ds.x_test.materialize(), pipeline="memory")
        return replace(ds, pipeline="stream")
    return ds


def to_tf(x, y: np.ndarray, n_classes: int, batch_size: int, seed: int | None,
          shuffle: bool):
    """Seeded-shuffled, batched, prefetched tf.data pipeline of one split: from memory
    (cached), or streamed from the decoded cache on disk when `x` is `Rows` (each batch read
    in parallel map calls, a few batches ahead)."""
    import tensorflow as tf

    if isinstance(x, Rows):
        return _stream(x, y, n_classes, batch_size, seed, shuffle)
    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n_classes)))
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def epoch_order(n: int, seed: int, epoch):
    """The order of the training examples in one epoch: a permutation of range(n) that is a
    pure function of (seed, epoch) (TensorFlow's stateless index_shuffle), so a trial resumed
    in another process at epoch e sees the order the uninterrupted trial saw there."""
    import tensorflow as tf

    key = tf.stack([tf.constant(int(seed) % 2**62, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.index_shuffle(tf.range(n, dtype=tf.int64), key,
                                                max_index=n - 1)


def train_epochs(x, y: np.ndarray, n_classes: int, batch_size: int, seed: int, first: int,
                 last: int, skip: int = 0):
    """The training batches of epochs first..last-1 in one pipeline (`model.fit` with
    steps_per_epoch keeps one iterator across its epochs), each epoch in `epoch_order`;
    the first `skip` batches of epoch `first` left out (a trial resumed mid-epoch). In
    memory: one gather per batch; streamed `Rows`: each batch read from disk in parallel."""
    import tensorflow as tf

    n = len(y)
    if isinstance(x, Rows):
        eye = np.eye(n_classes, dtype=np.float32)
        shape = x.shape[1:]

        def read(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ids = np.sort(ids)  # storage order; a batch's order does not matter to SGD
            return x[ids], eye[y[ids]]

        def load(ids):
            xb, yb = tf.numpy_function(read, [ids], [tf.float32, tf.float32], stateful=False)
            return tf.ensure_shape(xb, (None, *shape)), tf.ensure_shape(yb, (None, n_classes))
    else:
        xs, ys = tf.constant(x), tf.one_hot(y, n_classes)

        def load(ids):
            return tf.gather(xs, ids), tf.gather(ys, ids)

    def epoch(e):
        batches = tf.data.Dataset.from_tensor_slices(epoch_order(n, seed, e)).batch(batch_size)
        return batches.skip(tf.where(tf.equal(e, first), tf.constant(skip, tf.int64),
                                     tf.constant(0, tf.int64)))

    ds = tf.data.Dataset.range(first, last).flat_map(epoch)
    if last == first + 1:  # one epoch: its length known, as Keras counts an epoch by it
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size) - skip))
    return (ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def _stream(x: Rows, y: np.ndarray, n_classes: int, batch_size: int, seed: int | None,
            shuffle: bool):
    import tensorflow as tf

    eye = np.eye(n_classes, dtype=np.float32)

    def read(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.sort(ids)  # storage order; a batch's order does not matter to SGD
        return x[ids], eye[y[ids]]

    ds = tf.data.Dataset.range(len(y))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    shape = x.shape[1:]

    def load(ids):
        xb, yb = tf.numpy_function(read, [ids], [tf.float32, tf.float32], stateful=False)
        return tf.ensure_shape(xb, (None, *shape)), tf.ensure_shape(yb, (None, n_classes))

    return ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE,
                                    deterministic=True).prefetch(tf.data.AUTOTUNE)
