"""MLflow at the edge: an explicit MlflowClient and run ids (safe in workers and threads)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# A tracking server that went away mid-study: a few quick retries, not MLflow's minutes.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

from core.errors import ConfigError  # noqa: E402
from core.paths import default_tracking_uri  # noqa: E402

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

MAX_PARAMS_PER_CALL = 100
TERMINAL = ("FINISHED", "FAILED", "KILLED")
SQLITE_TIMEOUT_S = 60  # several workers write one sqlite file: wait for the lock, never fail
_READY: set[str] = set()  # sqlite stores this process has seen initialised


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def client(uri: str | None = None):
    """An MlflowClient. A sqlite store gets a long lock timeout, write-ahead logging, and is
    created under a file lock, so several processes may start on a fresh store at once (MLflow
    creates its tables on first use, and two creators collide)."""
    from mlflow import MlflowClient

    uri = uri or default_tracking_uri()
    db = sqlite_path(uri)
    if db is not None:
        if "timeout=" not in uri:
            uri += ("&" if "?" in uri else "?") + f"timeout={SQLITE_TIMEOUT_S}"
        if uri not in _READY:
            _init_sqlite(uri, db)
    return MlflowClient(tracking_uri=uri)


def _init_sqlite(uri: str, db: Path) -> None:
    import fcntl
    import sqlite3

    from mlflow import MlflowClient

    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(db.parent / f".{db.name}.lock", "a")  # noqa: SIM115 (held while creating)
    except OSError as err:
        raise ConfigError(f"MLflow store {db}: cannot be written ({err.strerror}); choose "
                          "another --tracking-uri or ABLAB_MLRUNS") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates the schema
        with sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S) as con:
            con.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    _READY.add(uri)


def check_reachable(uri: str | None = None, timeout_s: float = 5.0) -> str:
    """Fail fast, with one message naming the URI, when the tracking store cannot be used: a
    server that does not answer its health check, a sqlite file that cannot be written."""
    uri = uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=timeout_s)
            r.raise_for_status()
        except requests.RequestException as err:
            reason = type(err).__name__ if not str(err) else str(err).split("(")[0].strip()
            raise ConfigError(f"MLflow tracking server {uri} is not reachable ({reason}); "
                              "start it (`ablab server`) or fix --tracking-uri / "
                              "MLFLOW_TRACKING_URI") from None
        check_login(uri)
    elif sqlite_path(uri) is not None:
        client(uri)
    return uri


def check_login(uri: str) -> None:
    """A server with a login (`ablab server` off loopback) answers 401 without credentials:
    say so at once, with where MLflow reads them from, instead of failing mid-study."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except MlflowException as err:
        text = str(err)
        if "401" in text or "nauthorized" in text or "not authenticated" in text:
            raise ConfigError(f"MLflow tracking server {uri} asks for a login: set "
                              "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or copy "
                              "the server's mlflow.credentials to ~/.mlflow/credentials"
                              ) from None
        raise


def _artifact_root(uri: str) -> str | None:
    """Local sqlite stores keep artifacts beside the database (mlruns/artifacts/...)."""
    db = sqlite_path(uri)
    return str(db.parent / "artifacts") if db is not None else None


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


# MLflow 3's UI opens an experiment without this tag in its GenAI view; ours hold training runs.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def get_or_create_experiment(c: MlflowClient, name: str) -> str:
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


def log_params(c: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, fmt(v)[:6000]) for k, v in sorted(params.items())]
    for i in range(0, len(items), MAX_PARAMS_PER_CALL):
        c.log_batch(run_id, params=items[i:i + MAX_PARAMS_PER_CALL])


def log_metrics(c: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """All metrics of one step in one batched call."""
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    items = [Metric(k, float(v), ts, step) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        c.log_batch(run_id, metrics=items[i:i + 1000])


def log_batch(c: MlflowClient, run_id: str, params: dict[str, Any],
              tags: dict[str, Any]) -> None:
    """A few params and tags in one call (per-trial set-up: one round trip, not three)."""
    from mlflow.entities import Param, RunTag

    c.log_batch(run_id, params=[Param(k, fmt(v)[:6000]) for k, v in params.items()],
                tags=[RunTag(k, fmt(v)) for k, v in tags.items()])


def set_tags(c: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    c.log_batch(run_id, tags=[RunTag(k, fmt(v)) for k, v in tags.items()])


def log_dataset(c: MlflowClient, run_id: str, name: str, digest: str, source: str,
                profile: dict[str, Any], context: str = "training") -> None:
    """An MLflow dataset input on the run, so the runs table's Datasets column names it.
    Workers that start trials on the same data at once race to create the dataset: MLflow's
    store checks, then inserts, and the loser's insert breaks the unique key. The dataset
    is there by then, so a retry links it."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException

    ds = Dataset(name=name, digest=digest, source_type="ablab", source=source,
                 profile=json.dumps(profile))
    inputs = [DatasetInput(ds, [InputTag("mlflow.data.context", context)])]
    for attempt in range(5):
        try:
            c.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as err:
            if "UNIQUE" not in str(err).upper() and "DUPLICATE" not in str(err).upper() \
                    or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def search(c: MlflowClient, experiment_id: str, filter_string: str = "",
           max_results: int = 50000) -> list[Run]:
    """All matching runs (paged)."""
    runs: list[Run] = []
    token = None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string,
                             max_results=min(max_results, 10000), page_token=token)
        runs.extend(page)
        token = page.token
        if not token or len(runs) >= max_results:
            return runs
