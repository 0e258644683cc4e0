"""Keras' own loaders (online machines). They read Keras' cache (~/.keras/datasets, or
$KERAS_HOME/datasets) before downloading, so a pre-filled cache works offline too."""

from __future__ import annotations

import numpy as np

from core.data._base import Pool, register, resize
from core.errors import ConfigError
from core.schema import DataConfig

NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle_boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"],
}


def _take(x, y, n: int | None, seed: int):
    if n is None or n >= len(y):
        return x, y
    idx = np.random.default_rng(seed).permutation(len(y))[:n]
    return x[idx], y[idx]


def make_loader(name: str):
    def load(cfg: DataConfig) -> Pool:
        import keras

        try:
            (x_tr, y_tr), (x_te, y_te) = getattr(keras.datasets, name).load_data()
        except Exception as err:  # noqa: BLE001 - any download failure means the same thing
            raise ConfigError(
                f"data.source=keras:{name}: could not load Keras' {name} ({err}). This machine "
                f"is offline? Put the file Keras downloads into ~/.keras/datasets/ (or "
                f"$KERAS_HOME/datasets/), or use data.source=digits.") from None
        y_tr, y_te = y_tr.reshape(-1).astype("int32"), y_te.reshape(-1).astype("int32")
        n_test = None if cfg.max_samples is None else max(cfg.max_samples // 5, 10)
        x_tr, y_tr = _take(x_tr, y_tr, cfg.max_samples, cfg.split_seed)
        x_te, y_te = _take(x_te, y_te, n_test, cfg.split_seed)
        prep = lambda x: resize(x.astype("float32") / 255.0, cfg.image_size, cfg.channels)  # noqa: E731
        return Pool(class_names=NAMES[name],
                    splits={"train": (prep(x_tr), y_tr), "test": (prep(x_te), y_te)})

    return load


for _name in NAMES:
    register(f"keras:{_name}")(make_loader(_name))
