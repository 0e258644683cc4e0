"""The options several `ablab` commands share, declared once: `run` and `search` take the same
study options (core.study.RunOptions), added to each command's signature by `study_command`."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import typer
from rich.console import Console

from core.errors import ConfigError

console = Console()

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override: key=value "
                   "(dotted path or axis alias), e.g. --set train.lr=3e-4")]
UriOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI "
                   "(default: $MLFLOW_TRACKING_URI or sqlite under mlruns/)")]
StorageOpt = Annotated[str | None, typer.Option("--storage", help="Optuna storage: RDB URL or "
                       "journal-file path (default: $ABLAB_STORAGE or mlruns/optuna.journal)")]


WorkersOpt = Annotated[int | None, typer.Option(help="worker processes (default: one per "
                       "device slot: each GPU x --per-gpu, or 1 on CPU)")]
PerGpuOpt = Annotated[int, typer.Option(help="workers per visible GPU")]
SmokeOpt = Annotated[bool, typer.Option(help="apply the file's `smoke:` overrides")]
NoWorkersOpt = Annotated[bool, typer.Option("--no-workers", help="only enqueue; `ablab worker` "
                         "processes (here or on other machines) do the work")]


KeepCheckpointsOpt = Annotated[bool, typer.Option(
    "--keep-checkpoints", help="keep each trial's last checkpoint in its run's artifacts "
    "after it ends (default: deleted; a preempted trial's is kept until it resumes)")]


def keep_checkpoints(on: bool) -> None:
    """For this process and the workers it starts (core.runner.keep_checkpoints)."""
    import os

    if on:
        os.environ["ABLAB_KEEP_CHECKPOINTS"] = "1"


STUDY_OPTIONS = {"workers": (WorkersOpt, None), "per_gpu": (PerGpuOpt, 1),
                 "set_": (SetOpt, None), "smoke": (SmokeOpt, False),
                 "tracking_uri": (UriOpt, None), "storage": (StorageOpt, None),
                 "no_workers": (NoWorkersOpt, False),
                 "keep_checkpoints": (KeepCheckpointsOpt, False)}


def study_command(fn):
    """`run` and `search` take the same options (core.study.RunOptions): they are added to
    the command's CLI signature here, once, and handed to it as `opts`."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "opts"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                annotation=annotation)
              for name, (annotation, default) in STUDY_OPTIONS.items()]

    @functools.wraps(fn)
    def command(**kw):
        from core.study import RunOptions

        o = {name: kw.pop(name) for name in STUDY_OPTIONS}
        keep_checkpoints(o["keep_checkpoints"])
        if o["per_gpu"] < 1:
            raise ConfigError(f"--per-gpu: expected a positive integer, got {o['per_gpu']}")
        opts = RunOptions(workers=o["workers"], per_gpu=o["per_gpu"], sets=o["set_"],
                          smoke=o["smoke"], tracking_uri=o["tracking_uri"],
                          storage=o["storage"], enqueue_only=o["no_workers"], console=console)
        return fn(**kw, opts=opts)

    command.__signature__ = sig.replace(parameters=own + shared)
    command.__annotations__ = {p.name: p.annotation for p in own + shared}
    return command


