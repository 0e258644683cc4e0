"""Starting workers on a cluster: the engine is not a scheduler. SLURM (a job array) and
Kubernetes (an Indexed Job) start `ablab worker` processes and hand out GPUs; these modules
write their job and submit it. Each launch's files are kept with the study (under
mlruns/launch/STUDY/) and logged to the study's MLflow run."""

from __future__ import annotations

import time
from pathlib import Path

from core.paths import mlruns_dir


def launch_dir(study: str) -> Path:
    from core.tracking import slug

    folder = mlruns_dir() / "launch" / slug(study) / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_launch(tracking_uri: str | None, study: str, folder: Path) -> None:
    """The launch's files (a Secret's excepted) as artifacts of the study's `study` run."""
    from core import lifecycle, tracking
    from core.lifecycle import Role
    from core.study.record import role_run

    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, study)
    run_id = role_run(c, exp_id, Role.STUDY, {lifecycle.STUDY: study}, f"{study} report")
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith("secret"):
            c.log_artifact(run_id, str(f), artifact_path=f"launch/{folder.name}")
