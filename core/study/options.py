"""What `ablab run` and `ablab search` both take, as one keyword-only object."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console


@dataclass(kw_only=True)
class RunOptions:
    workers: int | None = None  # worker processes (default: one per device slot)
    per_gpu: int = 1  # workers per visible GPU
    sets: list[str] | None = None  # --set overrides for every trial
    smoke: bool = False  # apply the study file's `smoke:` overrides
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI or sqlite under mlruns/
    storage: str | None = None  # Optuna storage; default: $ABLAB_STORAGE or a journal file
    enqueue_only: bool = False  # fill the queue and leave the work to `ablab worker`s
    console: Console | None = None
