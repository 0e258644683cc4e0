"""MLflow at the edge: an explicit MlflowClient and run ids (safe in workers and threads)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from core.paths import default_tracking_uri  # noqa: E402

MAX_PARAMS_PER_CALL = 100
TERMINAL = ("FINISHED", "FAILED", "KILLED")


def client(uri: str | None = None):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri or default_tracking_uri())


def _artifact_root(uri: str) -> str | None:
    """Local sqlite stores keep artifacts beside the database (mlruns/artifacts/...)."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return str(db.parent / "artifacts")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


# MLflow 3's UI opens an experiment without this tag in its GenAI view; ours hold training runs.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def get_or_create_experiment(c, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        if KIND_TAG not in exp.tags:
            c.set_experiment_tag(exp.experiment_id, KIND_TAG, KIND)
        return exp.experiment_id
    root = _artifact_root(c.tracking_uri)
    location = Path(root, slug(name)).as_uri() if root else None
    try:
        exp_id = c.create_experiment(name, artifact_location=location, tags={KIND_TAG: KIND})
    except Exception:  # another worker created it first
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
    return exp_id


def fmt(v: Any) -> str:
    """MLflow params and tags are strings; booleans as YAML writes them."""
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def log_params(c, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, fmt(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), MAX_PARAMS_PER_CALL):
        c.log_batch(run_id, params=items[i:i + MAX_PARAMS_PER_CALL])


def log_metrics(c, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """All metrics of one step in one batched call."""
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        c.log_batch(run_id, metrics=items[i:i + 1000])


def set_tags(c, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    c.log_batch(run_id, tags=[RunTag(k, fmt(v)) for k, v in tags.items()])


def search(c, experiment_id: str, filter_string: str = "", max_results: int = 50000) -> list:
    """All matching runs (paged)."""
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string,
                             max_results=min(max_results, 10000), page_token=token)
        runs.extend(page)
        token = page.token
        if not token or len(runs) >= max_results:
            return runs
