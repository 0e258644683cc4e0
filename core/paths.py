"""Where the project keeps its files; one place so tests and workers agree."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("ABLAB_ROOT", Path(__file__).resolve().parent.parent))
EXPERIMENTS_DIR = ROOT / "experiments"
ABLATIONS_DIR = ROOT / "ablations"
SEARCHES_DIR = ROOT / "searches"
MLRUNS_DIR = Path(os.environ.get("ABLAB_MLRUNS", ROOT / "mlruns"))
REPORTS_DIR = Path(os.environ.get("ABLAB_REPORTS", ROOT / "reports"))
# Where searches write <search>_best.yaml (an experiment `ablab train` finds by name).
BEST_DIR = Path(os.environ.get("ABLAB_BEST_DIR", EXPERIMENTS_DIR))


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI wins; else sqlite under mlruns/ (MLflow 3 refuses file stores)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    MLRUNS_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"


def default_storage() -> str:
    """ABLAB_STORAGE wins; else an Optuna journal file (safe for parallel local workers)."""
    env = os.environ.get("ABLAB_STORAGE")
    if env:
        return env
    MLRUNS_DIR.mkdir(parents=True, exist_ok=True)
    return str(MLRUNS_DIR / "optuna.journal")
