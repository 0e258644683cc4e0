"""What a trained model costs: parameters and forward FLOPs per example (exact, counted per
layer: Keras has no FLOPs API, keras#18391), and what the trial measured on its own device
(training rate, inference latency at batch 1 and throughput at a large batch, peak memory,
size of its weights). Every trial run logs them (core/runner.py); a study compares them like
accuracy (exact ones as values, measured ones with intervals).

FLOPs follow TensorFlow's profiler conventions (a multiply-add is 2, biases and batch-norm's
scale-and-shift count per element, pooling per input element, ReLU free), and
tests/test_cost.py checks the count against the profiler on every shipped backbone and head.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core import names
from core.models._base import leaf_layers

# Timed batch-1 calls (after WARMUP), their median is the latency. ABLAB_LATENCY_CALLS sets
# it (the test suite times 3: the same code, a tenth of the cost on its hundreds of trials).
LATENCY_CALLS = int(os.environ.get("ABLAB_LATENCY_CALLS", 10))
WARMUP = 2
THROUGHPUT_BATCH = 256


def _prod(shape) -> int:
    return int(np.prod([d for d in shape if d is not None])) if shape else 0


def _out(layer) -> int:
    """Elements of one example's output (batch dimension dropped)."""
    shape = layer.output.shape if hasattr(layer, "output") else None
    return _prod(shape[1:]) if shape is not None else 0


def _in(layer) -> int:
    shape = layer.input.shape if hasattr(layer, "input") else None
    return _prod(shape[1:]) if shape is not None else 0


def _conv(layer) -> int:
    k = _prod(layer.kernel_size)
    cin = layer.input.shape[-1] // getattr(layer, "groups", 1)
    out = _out(layer)  # H_out * W_out * C_out
    return 2 * k * cin * out + (out if layer.use_bias else 0)


def _depthwise(layer) -> int:
    out = _out(layer)  # H_out * W_out * C_in * multiplier
    return 2 * _prod(layer.kernel_size) * out + (out if layer.use_bias else 0)


def _dense(layer) -> int:
    units = layer.units
    rows = _prod(layer.output.shape[1:-1]) or 1
    return rows * (2 * layer.input.shape[-1] * units + (units if layer.use_bias else 0)) \
        + (5 * rows * units if _activation(layer) == "softmax" else 0)


def _activation(layer) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", str(act)) if act is not None else ""


def _pool(layer) -> int:
    return _prod(layer.pool_size) * _out(layer)


def _elements(per: int) -> Callable[[Any], int]:
    return lambda layer: per * _out(layer)


# Layer class name -> forward FLOPs per example. Layers not listed count 0: reshapes,
# dropout, augmentation (identity at inference), ReLU; `uncounted` names the others.
RULES: dict[str, Callable[[Any], int]] = {
    "Conv2D": _conv, "Conv1D": _conv, "Conv3D": _conv, "DepthwiseConv2D": _depthwise,
    "Dense": _dense, "BatchNormalization": _elements(2), "LayerNormalization": _elements(5),
    "MaxPooling2D": _pool, "AveragePooling2D": _pool,
    "GlobalAveragePooling2D": _in, "GlobalMaxPooling2D": _in,
    "Add": lambda la: _out(la) * (len(la.input) - 1), "Multiply": lambda la: _out(la) * (
        len(la.input) - 1), "Subtract": _elements(1), "Rescaling": _elements(2),
    "Normalization": _elements(2), "Softmax": _elements(5),
}
FREE = {"InputLayer", "Dropout", "SpatialDropout2D", "Flatten", "Reshape", "ReLU",
        "Activation", "ZeroPadding2D", "Cropping2D", "Identity", "Permute", "Concatenate",
        "Resizing", "CenterCrop", "RandomFlip", "RandomRotation", "RandomZoom", "RandomShear",
        "RandomTranslation", "RandomBrightness", "RandomContrast", "GaussianNoise",
        "LeakyReLU", "PReLU", "ELU", "TFOpLambda", "Lambda"}


def count_flops(model) -> tuple[int, list[str]]:
    """Forward FLOPs of one example at inference, and the layer types it could not count
    (not in RULES, not known to be free): a plugin's custom layer, say."""
    total, unknown = 0, []
    for layer in leaf_layers(model):
        kind = type(layer).__name__
        if kind in RULES:
            total += int(RULES[kind](layer))
        elif kind not in FREE:
            unknown.append(kind)
    return total, sorted(set(unknown))


def params(model) -> dict[str, float]:
    trainable = int(sum(_prod(w.shape) for w in model.trainable_weights))
    return {names.N_PARAMS: float(model.count_params()), names.N_PARAMS_TRAINABLE: trainable}


def weights_mb(model) -> float:
    """The bytes of its weights: what its saved file holds, less a few KB of config."""
    return float(sum(_prod(w.shape) * np.dtype(w.dtype).itemsize for w in model.weights)
                 / 2**20)


def _median_ms(call: Callable[[], Any], calls: int, warmup: int = WARMUP) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def inference(model, x: np.ndarray) -> dict[str, float]:
    """Latency: median ms of a batch-1 call after warm-up; throughput: examples per second at
    a batch of THROUGHPUT_BATCH (the test split repeated up to it). Eager calls, as ablab's
    own evaluation makes them, on the device the trial trained on."""
    one = x[:1]
    big = np.resize(x, (THROUGHPUT_BATCH, *x.shape[1:])).astype(x.dtype)

    def run(batch):
        return lambda: np.asarray(model(batch, training=False))

    latency = _median_ms(run(one), LATENCY_CALLS)
    batch_ms = _median_ms(run(big), 2, warmup=1)
    return {names.LATENCY: latency, names.THROUGHPUT: THROUGHPUT_BATCH / (batch_ms / 1000)}


def memory() -> dict[str, float]:
    """The worker's peak resident memory so far (Linux reports KB) and, on a GPU, the peak
    since `reset_gpu_peak` (at the trial's start)."""
    out = {names.PEAK_RSS: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    gpu = _gpu_peak()
    if gpu is not None:
        out[names.GPU_PEAK] = gpu
    return out


def _gpu_peak() -> float | None:
    import tensorflow as tf

    if not tf.config.list_logical_devices("GPU"):
        return None
    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (ValueError, RuntimeError):
        return None


def reset_gpu_peak() -> None:
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        with contextlib.suppress(ValueError, RuntimeError):
            tf.config.experimental.reset_memory_stats("GPU:0")


def measure(model, x_test: np.ndarray, n_train: int, epochs_run: int,
            train_time_s: float) -> dict[str, float]:
    """Every cost metric of one trained model, logged on its run."""
    flops, _ = count_flops(model)
    rate = n_train * epochs_run / train_time_s if train_time_s > 0 else math.nan
    return {**params(model), names.FLOPS: float(flops), names.MODEL_SIZE: weights_mb(model),
            names.TRAIN_RATE: rate, **inference(model, x_test), **memory()}
