"""`ablab ui`: MLflow's own UI, on 127.0.0.1, for the project's store or any tracking URI, with
the URL of each study opened on its variant view: the variants' parent runs sorted by their
mean (their aggregate metrics are columns), each variant's trial runs nested under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from core import lifecycle, names, tracking
from core.inventory import existing_client
from core.lifecycle import Role, role_filter

if TYPE_CHECKING:
    from mlflow import MlflowClient

VIEW = "ablab-variants"
# MLflow's UI reads a shared view (columns, order, grouping) from this experiment tag when the
# URL says ?viewStateShareKey=<key>: how ablab opens a study with its aggregate columns shown.
VIEW_TAG = "mlflow.sharedViewState."


def variant_view(metric: str) -> dict:
    """Parent runs with their aggregate columns, their trial runs nested under them (a click
    expands a variant); ordered by start time, the one order in which MLflow's runs table
    keeps child runs nested."""
    # The mean, its CI, the difference and the seeds, then the verdict: few enough that a
    # 1700-pixel window shows them without scrolling. MLflow sorts metric columns by name
    # whatever the order asked, so each added metric (a cost's mean_*) would push
    # mean_<metric> off screen: the costs stay one click away in the column picker.
    metrics = [f"{k}_{metric}" for k in ("mean", "ci95_low", "ci95_high", "diff")]
    return {"orderByKey": "attributes.start_time", "orderByAsc": False,
            "selectedColumns": [f"metrics.`{m}`" for m in [*metrics, "n_seeds"]]
            + [f"tags.`{lifecycle.verdict_tag(metric)}`", f"tags.`{names.PARETO}`",
               f"tags.`{lifecycle.OUTCOME}`"]}


def study_urls(c: MlflowClient, base: str, only: str | None = None) -> list[tuple[str, str]]:
    out = []
    for exp in c.search_experiments():
        if only and exp.name != only:
            continue
        parents = tracking.search(c, exp.experiment_id, role_filter(Role.VARIANT),
                                  max_results=1)
        if parents:
            metric = parents[0].data.tags.get(lifecycle.METRIC, "test_accuracy")
            c.set_experiment_tag(exp.experiment_id, VIEW_TAG + VIEW,
                                 json.dumps(variant_view(metric)))
            out.append((exp.name, f"{base}/#/experiments/{exp.experiment_id}/runs?"
                                  f"viewStateShareKey={quote(VIEW)}"))
        elif tracking.search(c, exp.experiment_id, role_filter(Role.SEARCH),
                             max_results=1) or only:
            out.append((exp.name, f"{base}/#/experiments/{exp.experiment_id}/runs"))
    return out


def serve_ui(tracking_uri: str | None, port: int, only: str | None, console) -> None:
    from core.errors import ConfigError
    from core.paths import mlruns_dir
    from core.server import wait_healthy

    uri = tracking_uri or tracking.default_tracking_uri()
    c = existing_client(uri)
    if only and c.get_experiment_by_name(only) is None:
        raise ConfigError(f"--study: no study {only!r} in {uri}")
    if uri.startswith(("http://", "https://")):  # a tracking server has the UI already
        _print(console, study_urls(c, uri.rstrip("/"), only), uri)
        return
    base = f"http://127.0.0.1:{port}"
    log = mlruns_dir() / "logs" / "mlflow-ui.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                                 uri, "--host", "127.0.0.1", "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_healthy(base, proc, log, timeout_s=120)
        _print(console, study_urls(c, base, only), base)
        console.print("Ctrl-C stops it.")
        while proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)


def _print(console, urls: list[tuple[str, str]], base: str) -> None:
    console.print(f"MLflow UI: {base}", highlight=False)
    for name, url in urls:
        console.print(f"  {name}: {url}", highlight=False, soft_wrap=True)
    if not urls:
        console.print("  (no ablab study in this store yet)")
