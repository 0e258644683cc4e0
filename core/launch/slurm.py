"""`ablab launch slurm`: one job array whose tasks each `exec` an `ablab worker`, so SLURM's
signals reach it: SIGTERM on preemption, requeue and at the time limit, SIGUSR1 as a warning
before it (`--signal`). The worker then ends its trial preempted and puts it back in the queue
(core.lifecycle); `--requeue` lets SLURM restart the task, whose log is appended to."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from core import paths
from core.errors import ConfigError

WARN_S = 120  # SIGUSR1 this long before the time limit
KILL_WAIT_S = 30  # SLURM's default KillWait: after SIGTERM, this long until SIGKILL


@dataclass
class SlurmJob:
    study: str  # the queue's name, `ablation:NAME` or `search:NAME`
    storage: str
    tracking_uri: str
    workers: int
    gpus_per_worker: int = 0
    per_gpu: int = 1
    partition: str | None = None
    time: str | None = None  # SLURM's --time, e.g. 4:00:00
    account: str | None = None
    sbatch: list[str] = field(default_factory=list)  # more #SBATCH options, as given
    log_dir: Path = Path("logs")
    python: str = sys.executable
    root: Path = field(default_factory=paths.root)  # the project: tasks start there


def script(job: SlurmJob) -> str:
    """The job array's batch script."""
    if job.workers < 1:
        raise ConfigError(f"--workers: expected a positive integer, got {job.workers}")
    name = job.study.partition(":")[2] or job.study
    opts = [f"--job-name=ablab-{name}", f"--array=0-{job.workers - 1}", "--requeue",
            f"--signal=B:USR1@{WARN_S}", "--open-mode=append",
            f"--output={job.log_dir / '%x-%A_%a.log'}", f"--chdir={job.root}",
            "--ntasks=1"]
    if job.gpus_per_worker:
        opts.append(f"--gres=gpu:{job.gpus_per_worker}")
    for flag, value in (("partition", job.partition), ("time", job.time),
                        ("account", job.account)):
        if value:
            opts.append(f"--{flag}={value}")
    opts += [o if o.startswith("--") else f"--{o}" for o in job.sbatch]
    worker = [job.python, "-m", "core.cli", "worker", job.study, "--storage", job.storage,
              "--tracking-uri", job.tracking_uri, "--wait"]
    if job.gpus_per_worker and job.per_gpu > 1:
        worker += ["--per-gpu", str(job.per_gpu), "--gpus", "${CUDA_VISIBLE_DEVICES}"]
    cmd = " ".join(shlex.quote(a) if not a.startswith("${") else f'"{a}"' for a in worker)
    return "\n".join([
        "#!/bin/bash",
        f"# ablab worker array for {job.study}: written by `ablab launch slurm`",
        *(f"#SBATCH {o}" for o in opts),
        "set -eu",
        "# the device slot each run is tagged with (ablab.slot): task and its GPUs",
        'export ABLAB_SLOT="slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}'
        ':gpu${CUDA_VISIBLE_DEVICES:-none}"',
        'echo "$(date -Is) task ${SLURM_ARRAY_TASK_ID} on $(hostname) (restart '
        '${SLURM_RESTART_COUNT:-0}), GPUs ${CUDA_VISIBLE_DEVICES:-none}"',
        f"exec {cmd}",
        ""])


def submit(path: Path) -> str:
    """`sbatch` the script; returns the job id."""
    try:
        out = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True,
                             text=True, timeout=60)
    except FileNotFoundError:
        raise ConfigError("sbatch is not on this machine's PATH: run `ablab launch slurm` on a "
                          "SLURM login node, or use --dry-run to only write the script") from None
    if out.returncode != 0:
        raise ConfigError(f"sbatch refused the job: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip().split(";")[0]
