"""`ablab launch k8s`: a Kubernetes Indexed Job of `ablab worker` pods. The completion index is
each worker's slot; GPUs are `nvidia.com/gpu` limits; a pod evicted or preempted (its
DisruptionTarget condition) is not counted as a failure, and each index gets its own retries;
the Optuna storage URL and the MLflow credentials come from a Secret. The image is built from
the repository's Containerfile. Pure: the manifests are dicts, written as YAML by the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SECRET_KEYS = ("ABLAB_STORAGE", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
               "MLFLOW_TRACKING_PASSWORD")
# SIGTERM, then this long to checkpoint the trial and put it back in the queue, then SIGKILL.
# Measured (bench/preempt.py, BENCHMARKS.md): 0.2 s at most for a ten_seed_baseline trial with
# two CPU-bound processes on the 2 cores. SLURM's KillWait, which the same worker must meet,
# is 30 s: the rest is margin for a larger model's checkpoint upload (~2.5 GB at 100 MB/s).
GRACE_S = 30


@dataclass
class K8sJob:
    study: str  # the queue's name, `ablation:NAME` or `search:NAME`
    workers: int
    image: str
    gpus_per_worker: int = 0
    per_gpu: int = 1
    secret: str = ""  # default: ablab-<study>
    namespace: str | None = None
    retries_per_worker: int = 3

    @property
    def name(self) -> str:
        import re

        base = self.study.partition(":")[2] or self.study
        return "ablab-" + re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:50]

    @property
    def secret_name(self) -> str:
        return self.secret or self.name


def _meta(job: K8sJob, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "ablab",
                                                      "ablab/study": job.name}}
    if job.namespace:
        meta["namespace"] = job.namespace
    return meta


def job_manifest(job: K8sJob) -> dict[str, Any]:
    if job.workers < 1:
        from core.errors import ConfigError

        raise ConfigError(f"--workers: expected a positive integer, got {job.workers}")
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    args = ["worker", job.study, "--wait"]
    if job.gpus_per_worker and job.per_gpu > 1:
        args += ["--per-gpu", str(job.per_gpu)]
    container: dict[str, Any] = {
        "name": "worker", "image": job.image, "command": ["ablab"], "args": args,
        "env": [{"name": "ABLAB_SLOT_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index}}},
                {"name": "ABLAB_SLOT", "value": "k8s-$(ABLAB_SLOT_INDEX)"},
                {"name": "PYTHONUNBUFFERED", "value": "1"}],
        "envFrom": [{"secretRef": {"name": job.secret_name}}],
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}},
    }
    if job.gpus_per_worker:
        container["resources"]["limits"] = {"nvidia.com/gpu": job.gpus_per_worker}
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(job, job.name),
        "spec": {
            "completionMode": "Indexed", "completions": job.workers,
            "parallelism": job.workers,
            "backoffLimitPerIndex": job.retries_per_worker, "maxFailedIndexes": job.workers,
            "podFailurePolicy": {"rules": [
                # evicted, preempted, drained: not the worker's failure, retried freely
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # a configuration error (exit 2) will not go away by retrying
                {"action": "FailIndex", "onExitCodes": {"containerName": "worker",
                                                        "operator": "In", "values": [2]}}]},
            "template": {"metadata": {"labels": {"ablab/study": job.name}},
                         "spec": {"restartPolicy": "Never",
                                  "terminationGracePeriodSeconds": GRACE_S,
                                  "containers": [container]}}}}


def secret_manifest(job: K8sJob, values: dict[str, str]) -> dict[str, Any]:
    """The Secret the pods read their storage URL and MLflow credentials from."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(job, job.secret_name),
            "type": "Opaque", "stringData": {k: v for k, v in values.items() if v}}
