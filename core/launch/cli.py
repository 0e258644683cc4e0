"""`ablab launch slurm|k8s`: write a study's worker job (kept with the study, logged to its
MLflow run) and submit it."""

from __future__ import annotations

from typing import Annotated

import typer
import yaml
from rich.console import Console

app = typer.Typer(no_args_is_help=True, help="Start a study's workers on a cluster: a SLURM "
                  "job array or a Kubernetes Indexed Job of `ablab worker`.")
console = Console()

StudyArg = Annotated[str, typer.Argument(help="the study whose queue the workers serve (its "
                     "name; `ablation:NAME` or `search:NAME` when both exist)")]
WorkersOpt = Annotated[int, typer.Option(help="worker jobs (array tasks, or pods)")]
GpusOpt = Annotated[int, typer.Option(help="GPUs per worker (0: CPU workers)")]
PerGpuOpt = Annotated[int, typer.Option(help="worker processes per GPU")]
StorageOpt = Annotated[str | None, typer.Option("--storage", help="Optuna storage the "
                       "workers share (default: $ABLAB_STORAGE or mlruns/optuna.journal)")]
UriOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI the "
                   "workers log to (default: $MLFLOW_TRACKING_URI or the local store)")]


def _study(storage: str, name: str) -> str:
    from core.study.queue import check_storage
    from core.study.worker import resolve_study

    check_storage(storage)
    return resolve_study(storage, name)


@app.command()
def slurm(
    study: StudyArg,
    workers: WorkersOpt = 1,
    gpus_per_worker: GpusOpt = 0,
    per_gpu: PerGpuOpt = 1,
    partition: Annotated[str | None, typer.Option(help="SLURM partition")] = None,
    time: Annotated[str | None, typer.Option(help="time limit per task, e.g. 4:00:00")] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account")] = None,
    sbatch: Annotated[list[str] | None, typer.Option(help="another #SBATCH option, e.g. "
                      "--sbatch=--qos=low (repeatable)")] = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    dry_run: Annotated[bool, typer.Option(help="write the script, do not submit it")] = False,
) -> None:
    """A job array of `ablab worker`: requeued on preemption, warned before its time limit,
    its logs appended across restarts.

    Example: ablab launch slurm head --workers 8 --gpus-per-worker 1 --partition gpu
    --time 4:00:00"""
    from core import tracking
    from core.launch import launch_dir, log_launch
    from core.launch.slurm import SlurmJob, script, submit
    from core.paths import default_storage

    storage = storage or default_storage()
    uri = tracking.check_reachable(tracking_uri)
    name = _study(storage, study)
    folder = launch_dir(name.partition(":")[2])
    job = SlurmJob(name, storage, uri, workers, gpus_per_worker, per_gpu, partition, time,
                   account, list(sbatch or []), log_dir=folder)
    path = folder / "slurm.sh"
    path.write_text(script(job))
    path.chmod(0o755)
    log_launch(uri, name.partition(":")[2], folder)
    if dry_run:
        console.print(f"wrote {path} (not submitted: --dry-run)")
        return
    job_id = submit(path)
    (folder / "job_id").write_text(job_id + "\n")
    console.print(f"submitted job array {job_id}: {workers} worker(s) for {name}\n"
                  f"  follow it:  squeue -j {job_id}   ablab list --storage {storage}\n"
                  f"  its logs:   {folder}/*.log\n  the script: {path}")


@app.command()
def k8s(
    study: StudyArg,
    image: Annotated[str, typer.Option(help="the worker image, built from the repository's "
                     "Containerfile and pushed where the cluster pulls from")],
    workers: WorkersOpt = 1,
    gpus_per_worker: GpusOpt = 0,
    per_gpu: PerGpuOpt = 1,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes namespace")] = None,
    secret: Annotated[str | None, typer.Option(help="an existing Secret with ABLAB_STORAGE "
                      "and the MLflow variables (default: write one from this shell's)")]
    = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """An Indexed Job of `ablab worker` pods (index = slot, GPU limits, retries per index,
    evictions not counted as failures), and the Secret it reads. Apply with kubectl.

    Example: ablab launch k8s head --workers 4 --gpus-per-worker 1 --image reg/ablab:1"""
    import os

    from core import tracking
    from core.launch import launch_dir, log_launch
    from core.launch.k8s import K8sJob, job_manifest, secret_manifest
    from core.paths import default_storage

    storage = storage or default_storage()
    uri = tracking.check_reachable(tracking_uri)
    name = _study(storage, study)
    job = K8sJob(name, workers, image, gpus_per_worker, per_gpu, secret or "", namespace)
    folder = launch_dir(name.partition(":")[2])
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job_manifest(job), sort_keys=False))
    apply = f"kubectl apply -f {path}"
    if not secret:  # its own file, never logged to MLflow
        values = {"ABLAB_STORAGE": storage, "MLFLOW_TRACKING_URI": uri,
                  **{k: os.environ.get(k, "") for k in ("MLFLOW_TRACKING_USERNAME",
                                                       "MLFLOW_TRACKING_PASSWORD")}}
        spath = folder / "secret.yaml"
        spath.touch(mode=0o600)
        spath.write_text(yaml.safe_dump(secret_manifest(job, values), sort_keys=False))
        apply = f"kubectl apply -f {spath} -f {path}"
    log_launch(uri, name.partition(":")[2], folder)
    console.print(f"wrote {path}: Indexed Job {job.name} with {workers} worker(s)"
                  + ("" if secret else f", and its Secret {job.secret_name} (secret.yaml)")
                  + f"\n  apply it:   {apply}\n  follow it:  kubectl get pods -l "
                  f"ablab/study={job.name}   ablab list --storage {storage}")
