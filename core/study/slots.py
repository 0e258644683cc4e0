"""Device slots: one worker process per slot, each a GPU (or a share of one) or the CPU."""

from __future__ import annotations

import os
import subprocess


def gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def device_slots(workers: int | None, per_gpu: int = 1) -> list[dict[str, str]]:
    """One env per worker: each visible GPU (x per_gpu), or the CPU as one slot. `workers`
    overrides the count (round-robin over GPUs; on CPU, several CPU workers)."""
    n_gpu = gpu_count()
    if n_gpu:
        ids = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(n_gpu))))
        gpus = [g.strip() for g in ids.split(",") if g.strip()]
        slots = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus for _ in range(per_gpu)]
        if workers:
            slots = [slots[i % len(slots)] for i in range(workers)]
        return slots
    return [{"CUDA_VISIBLE_DEVICES": "-1"} for _ in range(workers or 1)]
