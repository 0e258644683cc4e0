"""Seed packing: seeds per hour of training alone, K seeds per model (core/pack.py) against
one model per seed, and the packed layouts against each other.

    .venv/bin/python bench/pack.py fit digits_cnn --seeds 10 --ks 1,2,5,10
    .venv/bin/python bench/pack.py fit ten_seed_baseline --seeds 10 --ks 1,10
    .venv/bin/python bench/pack.py layout digits_cnn --k 10

`fit`: in one process, the seeds trained one after another (core.train.fit, K = 1) or in
packs of K (core.pack.fit_packed); wall time, seeds per hour, mean test accuracy.
`layout`: one epoch of K towers as separate towers in one graph, against the same CNN with
the seeds stacked on the channel axis (grouped convolutions, `groups=K`, and a batched
classifier): the two layouts the issue names, timed on the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def experiment(name: str):
    from core.ablation.spec import expand_variants, load_ablation
    from core.config import load_raw, validate

    try:
        return expand_variants(load_ablation(name))[0][0].exp
    except Exception:  # noqa: BLE001 - an experiment name rather than an ablation
        return validate(load_raw(name), name, ())


def accuracy(model, data) -> float:
    from core.train import predict

    proba, _ = predict(model, data.x_test)
    return float((proba.argmax(1) == data.y_test).mean())


def bench_fit(exp, seeds: int, ks: list[int]) -> list[dict]:
    import keras
    import numpy as np

    from core.data import load_dataset
    from core.pack import fit_packed
    from core.seeding import seed_everything
    from core.train import fit

    data = load_dataset(exp.data, 0)
    rows = []
    for k in ks:
        accs = []
        t0 = time.perf_counter()
        for start in range(0, seeds, k):
            group = list(range(start, min(start + k, seeds)))
            keras.backend.clear_session(free_memory=False)
            if k == 1:
                seed_everything(group[0], exp.train.deterministic)
                accs.append(accuracy(fit(exp, data, group[0]).model, data))
            else:
                accs += [accuracy(f.model, data) for f in fit_packed(exp, data, group)]
        wall = time.perf_counter() - t0
        rows.append({"k": k, "seeds": seeds, "wall_s": round(wall, 1),
                     "seeds_per_hour": round(seeds / wall * 3600),
                     "mean_test_accuracy": round(float(np.mean(accs)), 4),
                     "sd": round(float(np.std(accs, ddof=1)), 4)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = round(base / r["wall_s"], 2)
    return rows


def grouped_model(exp, input_shape, n_classes: int, k: int):
    """The digits CNN for K seeds at once: images stacked on the channel axis, grouped
    convolutions, per-group BatchNorm (BN is per channel), a batched classifier."""
    import keras

    L = keras.layers
    h, w, c = input_shape
    inp = keras.Input((h, w, c * k))
    x = inp
    for i in range(exp.model.depth):
        x = L.Conv2D(k * exp.model.width * 2**i, 3, padding="same", groups=k,
                     use_bias=False)(x)
        x = L.BatchNormalization(momentum=0.9)(x)
        x = L.ReLU()(x)
        x = L.MaxPooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Reshape((k, -1))(x)
    x = L.EinsumDense("bkc,kcn->bkn", (k, n_classes), bias_axes="kn")(x)
    out = L.Softmax()(x)
    return keras.Model(inp, out)


def bench_layout(exp, k: int, epochs: int = 3) -> list[dict]:
    """Mean epoch time after the first (tracing) epoch."""
    import keras
    import numpy as np
    import tensorflow as tf

    from core.data import load_dataset, to_tf
    from core.pack import fit_packed

    data = load_dataset(exp.data, 0)
    ex = exp.model_copy(update={"train": exp.train.model_copy(update={"epochs": epochs}),
                                "augment": exp.augment.model_copy(update={"strength": "none"}),
                                "model": exp.model.model_copy(update={"dropout": 0.0})})
    rows = []
    fits = fit_packed(ex, data, list(range(k)))
    t = fits[0].epoch_times
    rows.append({"layout": "separate towers in one graph", "k": k,
                 "epoch_s": round(float(np.mean(t[1:])) * k, 2)})
    print(json.dumps(rows[-1]), flush=True)
    keras.backend.clear_session()
    m = grouped_model(ex, data.input_shape, data.n_classes, k)
    m.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=False)
    bs = ex.train.batch_size
    xs = np.concatenate([data.x_train] * k, axis=-1)
    ys = np.repeat(tf.one_hot(data.y_train, data.n_classes).numpy()[:, None], k, axis=1)
    ds = to_tf(xs, data.y_train, data.n_classes, bs, 0, True).map(
        lambda x, y: (x, tf.repeat(y[:, None], k, axis=1)))
    del ys
    times = []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, *a):
            self.t = time.perf_counter()

        def on_epoch_end(self, *a):
            times.append(time.perf_counter() - self.t)

    m.fit(ds, epochs=epochs, verbose=0, callbacks=[T()])
    rows.append({"layout": "grouped convolutions (groups=K), batched classifier", "k": k,
                 "epoch_s": round(float(np.mean(times[1:])), 2)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["fit", "layout"])
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--ks", default="1,2,5,10")
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    from core.seeding import quiet_tensorflow

    quiet_tensorflow()
    exp = experiment(a.config)
    if a.what == "fit":
        rows = bench_fit(exp, a.seeds, [int(x) for x in a.ks.split(",")])
    else:
        rows = bench_layout(exp, a.k)
    print(json.dumps({"config": a.config, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
