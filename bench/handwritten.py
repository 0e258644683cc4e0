"""The reference ablab never had: ten_seed_baseline as a newcomer would write it by hand, plain
Keras in one process, no ablab import. 10 seeds of a 3-block CNN on scikit-learn's digits
(32x32x3, 20 epochs, Adam 0.003, batch 32, validation every epoch), test accuracy per seed.

    .venv/bin/python bench/handwritten.py            # prints wall time and accuracies

`bench/pack_study.py` runs it next to `ablab run ten_seed_baseline` (unpacked and packed).
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

t0 = time.perf_counter()
d = load_digits()
x = tf.image.resize(d.images[..., None] / 16.0, (32, 32)).numpy()
x = np.repeat(x, 3, axis=-1).astype("float32")
y = keras.utils.to_categorical(d.target, 10)
x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.25, random_state=0,
                                                  stratify=d.target)
x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2,
                                                  random_state=0)


def build():
    inp = keras.Input((32, 32, 3))
    h = inp
    for width in (32, 64, 128):
        h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D(2)(h)
        h = keras.layers.Dropout(0.1)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dropout(0.1)(h)
    return keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))


accs = []
for seed in range(10):
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=20, validation_data=(x_val, y_val),
              verbose=0)
    accs.append(float(model.evaluate(x_test, y_test, verbose=0)[1]))
    keras.backend.clear_session()
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": round(wall, 1), "mean_test_accuracy": round(float(np.mean(accs)), 4),
                  "sd": round(float(np.std(accs, ddof=1)), 4), "accuracies": accs}))
