"""Where a run ran: the environment fingerprint on every trial run. The same code and seed give
different figures on an AVX-512 and an AVX2-only CPU, with oneDNN on or off, on two kinds of
GPU; a report says when a study's trials ran on more than one fingerprint (core/provenance.py)
and `ablab report --where fingerprint=...` compares on one.

The fingerprint's digest covers the CPU model and its widest vector instruction set, the GPUs
and their driver, the CUDA/cuDNN TensorFlow was built with, the TensorFlow/Keras/NumPy
versions, oneDNN and the trial's deterministic mode; not the slot (two workers of one machine
share a fingerprint)."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess

from core import names

ISA_ORDER = (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("asimd", "neon"),
             ("sse4_2", "sse4.2"))


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), "x86_64"):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def isa(flags: set[str]) -> str:
    """The widest vector instruction set the CPU reports (oneDNN picks its kernels by it)."""
    return next((label for flag, label in ISA_ORDER if flag in flags), "baseline")


@functools.cache
def machine() -> dict[str, str]:
    """The parts that do not change within a worker process (read once)."""
    import keras
    import numpy as np
    import tensorflow as tf

    model, flags = _cpuinfo()
    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = []
    for g in gpus:
        try:
            gpu_names.append(tf.config.experimental.get_device_details(g).get("device_name",
                                                                              g.name))
        except (ValueError, RuntimeError):
            gpu_names.append(g.name)
    build = tf.sysconfig.get_build_info()
    cuda = (f"cuda {build.get('cuda_version')} cudnn {build.get('cudnn_version')}"
            if build.get("is_cuda_build") else "none")
    return {names.FP_CPU: model, names.FP_ISA: isa(flags),
            names.FP_GPU: ", ".join(gpu_names) or "none",
            names.FP_DRIVER: _driver() if gpus else "none", names.FP_CUDA: cuda,
            names.FP_VERSIONS: f"tensorflow {tf.__version__} keras {keras.__version__} "
                               f"numpy {np.__version__}"}


def _driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10).stdout.split()
        return out[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def digest(parts: dict[str, str]) -> str:
    blob = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def tags(deterministic: str) -> dict[str, str]:
    """The fingerprint tags of a trial run: its parts, and the digest that names them."""
    onednn = "off" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "0" else "on"
    parts = {**machine(), names.FP_ONEDNN: onednn, names.DETERMINISTIC: deterministic}
    return {**parts, names.FINGERPRINT: digest(parts)}
