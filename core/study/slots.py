"""Device slots: one worker process per slot, each a GPU (or a share of one) or the CPU.

A slot is an environment for its process: `CUDA_VISIBLE_DEVICES` (one GPU, or -1 for the
CPU), `ABLAB_SLOT` (its name, a tag on every run) and, on a GPU, `ABLAB_GPU_MEMORY_MB`: the
process's cap (TensorFlow never returns GPU memory inside a process, so K workers sharing a
GPU each get a 1/K share, less 10% headroom)."""

from __future__ import annotations

import os
import subprocess

HEADROOM = 0.9


def list_gpus() -> list[tuple[str, int]]:
    """(id, total memory in MB) of each visible GPU, from nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.splitlines():
        idx, _, mem = line.partition(",")
        if idx.strip().isdigit() and mem.strip().isdigit():
            gpus.append((idx.strip(), int(mem.strip())))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        keep = [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        gpus = [g for g in gpus if g[0] in keep]
    return gpus


def device_slots(workers: int | None = None, per_gpu: int = 1,
                 gpus: list[str] | None = None) -> list[dict[str, str]]:
    """One env per worker: each GPU (`gpus`, default every visible one) x `per_gpu`, or the
    CPU as one slot. `workers` overrides the count (round-robin over the GPU slots; on the
    CPU, that many CPU workers)."""
    found = list_gpus()
    if gpus is not None:
        memory = dict(found)
        found = [(g, memory.get(g, 0)) for g in gpus]
    if found:
        slots = []
        for gpu, mem in found:
            for k in range(per_gpu):
                env = {"CUDA_VISIBLE_DEVICES": gpu,
                       "ABLAB_SLOT": f"gpu{gpu}" + (f"/{k}" if per_gpu > 1 else "")}
                if mem:
                    env["ABLAB_GPU_MEMORY_MB"] = str(int(mem * HEADROOM / per_gpu))
                slots.append(env)
        if workers:
            slots = [slots[i % len(slots)] for i in range(workers)]
        return slots
    return [{"CUDA_VISIBLE_DEVICES": "-1", "ABLAB_SLOT": f"cpu/{i}" if (workers or 1) > 1
             else "cpu"} for i in range(workers or 1)]
