"""The data-source interface: a source yields images + labels; splitting is shared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.data._rows import take
from core.errors import ConfigError
from core.registry import Registry
from core.schema import DataConfig


@dataclass
class Pool:
    """What a source returns: either one pool of images, or pre-made splits."""

    x: Any = None  # float32 NHWC in [0, 1]: an ndarray, or `Rows` read on demand
    y: Any = None  # int labels (ndarray)
    class_names: list[str] = field(default_factory=list)
    splits: dict[str, tuple[Any, Any]] | None = None  # train/validation/test: (x, y)
    info: dict[str, str] = field(default_factory=dict)  # logged as run tags (e.g. its cache)


@dataclass
class Dataset:
    """Images as float32 arrays in memory, or as `Rows` read from a decoded cache on disk
    (`pipeline` says which: "memory" or "stream")."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    pipeline: str = "memory"
    info: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


Loader = Callable[[DataConfig], Pool]


def _plugin(fn: Callable, path: str) -> Loader:
    """A user's `load(options, data_config) -> (x, y, class_names)` as a source: images of
    any size (uint8 or float in [0, 1]) resized to data.image_size and data.channels."""

    def load(cfg: DataConfig) -> Pool:
        from core.plugins import bind

        out = fn(bind(fn, cfg.options, "data", path), cfg)
        if isinstance(out, Pool):
            return out
        try:
            x, y, names = out
        except (TypeError, ValueError):
            raise ConfigError(f"data.source: {path} returned {type(out).__name__}; expected "
                              "(x, y, class_names) or a core.data.Pool") from None
        x = np.asarray(x)
        x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
        y = np.asarray(y).astype("int32")
        names = [str(n) for n in names]
        if len(x) != len(y) or x.ndim not in (3, 4):
            raise ConfigError(f"data.source: {path} returned {len(x)} images of shape "
                              f"{x.shape[1:]} and {len(y)} labels; expected as many NHWC "
                              "images as labels")
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise ConfigError(f"data.source: {path} returned labels outside 0..{len(names) - 1}")
        return Pool(resize(x, cfg.image_size, cfg.channels), y, names,
                    info={"plugin": path})

    return load


SOURCES: Registry[Loader] = Registry("data.source", adapt=_plugin)
register = SOURCES.register


def resize(x: np.ndarray, size: int, channels: int) -> np.ndarray:
    """NHWC float images -> size x size with `channels` channels (antialiased bilinear)."""
    import tensorflow as tf

    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:3] != (size, size):
        x = tf.image.resize(x, (size, size), method="bilinear", antialias=True).numpy()
    if x.shape[-1] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=-1)
    elif x.shape[-1] == 3 and channels == 1:
        x = x.mean(axis=-1, keepdims=True)
    return np.clip(x, 0.0, 1.0).astype("float32")


def select_classes(x, y: np.ndarray, names: list[str], classes: list[int] | None):
    """Keep only `classes` (e.g. digits 5-9 for a transfer target), relabelled 0..k-1."""
    if not classes:
        return x, y, names
    unknown = sorted(set(classes) - set(range(len(names))))
    if unknown:
        raise ConfigError(f"data.classes: {unknown} not in 0..{len(names) - 1}")
    keep = np.flatnonzero(np.isin(y, classes))
    remap = {c: i for i, c in enumerate(classes)}
    return (take(x, keep), np.array([remap[v] for v in y[keep]], "int32"),
            [names[c] for c in classes])


def _stratify(y: np.ndarray) -> np.ndarray | None:
    counts = np.bincount(y)
    return y if counts[counts > 0].min() >= 2 else None


def train_test_split(*arrays, **kw):
    from sklearn.model_selection import train_test_split as tts  # heavy: only when splitting

    return tts(*arrays, **kw)


def _divide(x, y: np.ndarray, seed: int, **size):
    """A stratified, seeded split of rows (in-memory arrays or `Rows` alike): (x_a, x_b,
    y_a, y_b), as train_test_split returns them."""
    a, b = train_test_split(np.arange(len(y)), random_state=seed, stratify=_stratify(y), **size)
    return take(x, a), take(x, b), y[a], y[b]


def subsample(x, y, fraction: float, seed: int):
    if fraction >= 1.0:
        return x, y
    n = max(int(round(len(y) * fraction)), len(np.unique(y)))
    xs, _, ys, _ = _divide(x, y, seed, train_size=n)
    return xs, ys


def split(pool: Pool, cfg: DataConfig, split_seed: int) -> Dataset:
    if pool.splits is not None:
        x_tr, y_tr = pool.splits["train"]
        x_te, y_te = pool.splits["test"]
        if "validation" in pool.splits:
            x_va, y_va = pool.splits["validation"]
        else:
            x_tr, x_va, y_tr, y_va = _divide(x_tr, y_tr, split_seed,
                                             test_size=cfg.val_fraction)
    else:
        x_rest, x_te, y_rest, y_te = _divide(pool.x, pool.y, split_seed,
                                             test_size=cfg.test_fraction)
        val = cfg.val_fraction / (1.0 - cfg.test_fraction)
        x_tr, x_va, y_tr, y_va = _divide(x_rest, y_rest, split_seed, test_size=val)
    x_tr, y_tr = subsample(x_tr, y_tr, cfg.train_fraction, split_seed)
    return Dataset(x_tr, y_tr.astype("int32"), x_va, y_va.astype("int32"),
                   x_te, y_te.astype("int32"), list(pool.class_names), info=dict(pool.info))
