"""Shared fixtures. Tests never touch the repo's mlruns/: each gets its own sqlite store, a
copy of one store migrated once per session (MLflow's schema migrations cost ~1-3 s per new
store, a copy 30 ms)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("ABLAB_MLRUNS", tempfile.mkdtemp(prefix="ablab-mlruns-"))
os.environ.setdefault("ABLAB_REPORTS", tempfile.mkdtemp(prefix="ablab-reports-"))
os.environ.setdefault("ABLAB_BEST_DIR", tempfile.mkdtemp(prefix="ablab-best-"))
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("ABLAB_STORAGE", None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("ABLAB_LATENCY_CALLS", "3")  # core/cost.py: fewer timed calls per trial
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# Downloads fail fast and for certain (an unreachable proxy): tests of the offline paths must
# not depend on whether this machine happens to be online.
OFFLINE = {k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY",
                                              "HTTPS_PROXY")} | {"no_proxy": "", "NO_PROXY": ""}

import pytest  # noqa: E402

from core.config import experiment_from_dict  # noqa: E402
from core.dicts import deep_merge  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# 8x8 images, one tiny conv block, a couple of epochs: seconds per trial on 2 cores.
TINY = {
    "name": "tiny",
    "data": {"source": "digits", "image_size": 8, "max_samples": 300},
    "model": {"depth": 1, "width": 4},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01},
}


def tiny(**sections):
    """TINY with overrides: tiny(train={'epochs': 1}, model={'head': 'gap_dense'})."""
    return experiment_from_dict(deep_merge(TINY, sections))


_TEMPLATE: list[Path] = []


def migrated_store(folder: Path, name: str = "mlflow.db") -> str:
    """A fresh, already migrated MLflow sqlite store in `folder`; returns its URI."""
    if not _TEMPLATE:
        from mlflow import MlflowClient

        db = Path(tempfile.mkdtemp(prefix="ablab-template-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()  # creates the schema
        _TEMPLATE.append(db)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE[0], folder / name)
    return f"sqlite:///{folder / name}"


@pytest.fixture
def tracking_uri(tmp_path) -> str:
    return migrated_store(tmp_path)


@pytest.fixture
def mlflow_client(tracking_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process, as a person would run it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd or ROOT)
