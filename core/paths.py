"""Where a project keeps its files; one place so the CLI, workers and tests agree.

ablab is installed as a package into a researcher's own project folder: the folder holding
`experiments/` and `ablations/` or `searches/`, found from the working directory upward (as git
finds its repository), or named by `--project` / `$ABLAB_PROJECT`. Its `mlruns/`, `reports/`
and cache go there, never into site-packages. This repository is a project itself.

Everything is computed at call time from the environment, so `--project` (which sets
`$ABLAB_PROJECT`, inherited by spawned workers) and tests that point `$ABLAB_MLRUNS` elsewhere
take effect everywhere.

| variable | default |
|---|---|
| ABLAB_PROJECT (ABLAB_ROOT, older name) | found from the working directory upward |
| ABLAB_MLRUNS | <project>/mlruns |
| ABLAB_REPORTS | <project>/reports |
| ABLAB_BEST_DIR (a search's <name>_best.yaml) | <project>/experiments |
| ABLAB_CACHE (decoded folders, data cards) | <project>/mlruns/cache |
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("experiments", "ablations", "searches")
PACKAGE = Path(__file__).resolve().parent  # core/


def is_project(folder: Path) -> bool:
    """A project holds experiments/ and at least one of ablations/, searches/."""
    return (folder / "experiments").is_dir() and any(
        (folder / k).is_dir() for k in ("ablations", "searches"))


def find_project(start: Path | None = None) -> Path | None:
    """The nearest project folder from `start` (the working directory) upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    return None


def root() -> Path:
    """The project: $ABLAB_PROJECT, else found upward, else the working directory (where
    `ablab init`, `ablab worker` and `ablab axes` need no project)."""
    env = os.environ.get("ABLAB_PROJECT") or os.environ.get("ABLAB_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    return find_project() or Path.cwd().resolve()


def use_project(folder: str | Path) -> Path:
    """`--project DIR`: every path below, and every worker this process spawns, uses it."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        from core.errors import ConfigError

        raise ConfigError(f"--project: no folder {path} (ablab init {folder} makes a project)")
    os.environ["ABLAB_PROJECT"] = str(path)
    return path


def project_hint() -> str:
    """Said beside 'no experiment named X' when no project folder was found."""
    if os.environ.get("ABLAB_PROJECT") or os.environ.get("ABLAB_ROOT") or find_project():
        return ""
    return (f" No ablab project found from {Path.cwd()} upward (a folder holding experiments/ "
            "and ablations/ or searches/); `ablab init DIR` makes one, --project DIR names one.")


def _env_or(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def experiments_dir() -> Path:
    return root() / "experiments"


def ablations_dir() -> Path:
    return root() / "ablations"


def searches_dir() -> Path:
    return root() / "searches"


def mlruns_dir() -> Path:
    return _env_or("ABLAB_MLRUNS", root() / "mlruns")


def reports_dir() -> Path:
    return _env_or("ABLAB_REPORTS", root() / "reports")


def best_dir() -> Path:
    """Where searches write <search>_best.yaml (an experiment `ablab train` finds by name)."""
    return _env_or("ABLAB_BEST_DIR", experiments_dir())


def cache_dir() -> Path:
    return _env_or("ABLAB_CACHE", root() / "mlruns" / "cache")


def shipped(kind: str) -> Path:
    """ablab's own experiments/ablations/searches: package data in a wheel (core/examples),
    the repository's top-level folders in a checkout."""
    packaged = PACKAGE / "examples" / kind
    return packaged if packaged.is_dir() else PACKAGE.parent / kind


def search_dirs(kind: str) -> list[Path]:
    """Where a name of `kind` is looked up: the project's folder, then (experiments) where
    searches write their best configs, then ablab's shipped examples."""
    dirs = [root() / kind, *([best_dir()] if kind == "experiments" else []), shipped(kind)]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI wins; else sqlite under mlruns/ (MLflow 3 refuses file stores)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    folder = mlruns_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def default_storage() -> str:
    """ABLAB_STORAGE wins; else an Optuna journal file (safe for parallel local workers)."""
    env = os.environ.get("ABLAB_STORAGE")
    if env:
        return env
    folder = mlruns_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "optuna.journal")
