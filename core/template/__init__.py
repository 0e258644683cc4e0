"""`ablab init DIR`: a new project folder from the files beside this module (project/).

The example is the README's "Your own model" walkthrough: a data loader, a backbone and a
training loop of the user's own (mymodel.py), named by import path in an experiment, varied by
two ablations and a search. The e2e test runs exactly these files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import ConfigError

PROJECT = Path(__file__).resolve().parent / "project"


def write_project(folder: str | Path, force: bool = False) -> Path:
    """Copy the example project into `folder` (created); refuses a non-empty folder unless
    `force`, and never overwrites a file that exists."""
    root = Path(folder).expanduser().resolve()
    if root.exists() and any(root.iterdir()) and not force:
        raise ConfigError(f"ablab init: {root} is not empty; choose a new folder or pass "
                          "--force (existing files are kept)")
    for src in sorted(PROJECT.rglob("*")):
        if "__pycache__" in src.parts or src.is_dir():
            continue
        rel = src.relative_to(PROJECT)
        dest = root / ("." + rel.name[4:] if rel.name.startswith("dot-") else rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copyfile(src, dest)
    return root
