"""Your own data, model and training loop, for ablab.

Each function is named in experiments/mine.yaml by its import path (`mymodel:small_cnn`) and
gets its settings from that section's `options:`, validated by the pydantic model annotated on
its `options` parameter (a typo is an error before any run). Every option is an axis:
`vary: {model.options.width: [4, 16]}`. The signatures (README, "Your own model"):

    data.source     load(options, data_config) -> (images NHWC, labels, class_names)
    model.backbone  build(options, input_shape) -> keras.Model (images -> features)
    model.head      head(options, features) -> tensor
    augment.strength  policy(options) -> [keras preprocessing layers]
    train.optimizer   make(options, learning_rate) -> keras optimizer
    train.lr_schedule schedule(options, lr, total_steps) -> float | LearningRateSchedule
    train.fit       fit(model, data, config, callbacks) -> {metric: [one value per epoch]}
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field


class DataOptions(BaseModel):
    n_images: int = Field(600, ge=20, le=100_000, description="images in the data set")
    noise: float = Field(1.0, ge=0, le=2, description="std of the pixel noise")


def stripes(options: DataOptions, data_config) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Horizontal or vertical stripes of random phase, in noise: a stand-in for your loader.
    The same options give the same images (the data set is not what a seed varies)."""
    rng = np.random.default_rng(0)
    n, size = options.n_images, 16
    labels = rng.integers(0, 2, n)
    phase = rng.integers(0, 4, n)
    grid = np.arange(size)
    x = np.empty((n, size, size, 1), dtype="float32")
    for i in range(n):
        wave = ((grid + phase[i]) // 2 % 2).astype("float32")
        img = np.tile(wave, (size, 1)) if labels[i] else np.tile(wave[:, None], (1, size))
        x[i, ..., 0] = img
    x = np.clip(x + rng.normal(0, options.noise, x.shape), 0, 1).astype("float32")
    return x, labels, ["horizontal", "vertical"]


class ModelOptions(BaseModel):
    width: int = Field(8, ge=1, le=512, description="filters of the first conv block")
    blocks: int = Field(2, ge=1, le=4, description="conv blocks (filters double per block)")


def small_cnn(options: ModelOptions, input_shape):
    """Conv -> ReLU -> max-pool blocks; ablab adds the head and the classifier."""
    import keras

    inputs = keras.Input(input_shape)
    x = inputs
    for i in range(options.blocks):
        x = keras.layers.Conv2D(options.width * 2**i, 3, padding="same", activation="relu",
                                name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    return keras.Model(inputs, x, name="small_cnn")


def clipped_fit(model, data, config, callbacks) -> dict[str, list[float]]:
    """Your own training step: a TensorFlow loop with gradient clipping, on the model ablab
    built and compiled (its optimizer and loss follow config.train). `data.train` and
    `data.validation` are ablab's seeded tf.data pipelines; `callbacks` are ablab's
    (per-epoch logging, Ctrl-C and preemption, early stopping): call them as below."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.CategoricalCrossentropy(
        label_smoothing=config.train.label_smoothing)
    opt = model.optimizer

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 1.0)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    def evaluate(ds) -> tuple[float, float]:
        losses, hits, n = [], 0, 0
        for x, y in ds:
            p = model(x, training=False)
            losses.append(float(loss_fn(y, p)) * len(y))
            hits += int(tf.reduce_sum(tf.cast(tf.argmax(p, 1) == tf.argmax(y, 1), "int32")))
            n += len(y)
        return sum(losses) / n, hits / n

    history: dict[str, list[float]] = {}
    callbacks.on_train_begin()
    for epoch in range(config.train.epochs):
        callbacks.on_epoch_begin(epoch)
        losses = []
        for i, (x, y) in enumerate(data.train):
            losses.append(float(step(x, y)))
            callbacks.on_train_batch_end(i)
        train_loss, train_acc = evaluate(data.train)
        val_loss, val_acc = evaluate(data.validation)
        logs = {"loss": float(np.mean(losses)), "accuracy": train_acc,
                "val_loss": val_loss, "val_accuracy": val_acc}
        callbacks.on_epoch_end(epoch, logs)
        for k, v in logs.items():
            history.setdefault(k, []).append(v)
        if model.stop_training:
            break
    callbacks.on_train_end()
    return history
