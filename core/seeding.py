"""One seed for everything; strict mode adds TensorFlow op determinism."""

from __future__ import annotations

import contextlib
import os
import sys


def quiet_tensorflow() -> None:
    """TensorFlow's environment, before it is imported. oneDNN stays on: with op determinism
    it gave bitwise-identical weights across processes here and trains ten_seed_baseline
    1.58x faster (bench/onednn.py, bench/pack.py; BENCHMARKS.md)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def import_tensorflow() -> None:
    """Import TensorFlow in that environment, its load-time C++ banner ("oneDNN custom
    operations are on", printed before TF's log level applies) kept off stderr."""
    quiet_tensorflow()
    if "tensorflow" in sys.modules:
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def silence_tf_python_logs() -> None:
    """TF's Python logger warns about tf.function retracing whenever a new trial's model
    predicts; in a worker that runs many models that is expected, not a problem."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def seed_everything(seed: int, deterministic: str) -> None:
    """`keras.utils.set_random_seed` seeds Python, NumPy and TF (init, shuffle, dropout,
    augmentation). Op determinism is process-wide and cannot be switched off again, so a worker
    that ran one strict trial stays strict; that only costs speed, never reproducibility."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    if deterministic == "strict":
        tf.config.experimental.enable_op_determinism()


def device_name() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name)


def configure_gpus(memory_mb: int | None = None) -> None:
    """Let several workers share one GPU. With a cap (`ABLAB_GPU_MEMORY_MB`, set per slot),
    the process sees a logical GPU of that size: TensorFlow never returns GPU memory inside a
    process, so without a cap one worker's peak would starve the others. Without one, memory
    is allocated as needed, not all up front."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised
            if memory_mb:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_mb)])
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
