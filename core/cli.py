"""`ablab` command line. Heavy imports (TensorFlow, MLflow, Optuna) happen inside commands, so
`ablab axes` and config errors answer instantly."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from core.cli_options import (
    KeepCheckpointsOpt,
    PerGpuOpt,
    SetOpt,
    StorageOpt,
    UriOpt,
    console,
    study_command,
)
from core.cli_options import keep_checkpoints as set_keep_checkpoints
from core.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ablab: seeded, repeated ablation studies of image classifiers, "
                       "tracked in MLflow.\n\nExample: ablab run bn_trainable, then ablab "
                       "report bn_trainable and ablab ui.")
err_console = Console(stderr=True)
app.add_typer(__import__("core.launch.cli", fromlist=["app"]).app, name="launch")
DEBUG = {"on": False}


@app.callback()
def _options_for_all(
    debug: Annotated[bool, typer.Option(
        "--debug", help="show the traceback of an error instead of one line")] = False,
    project: Annotated[str | None, typer.Option(
        "--project", help="the project folder (experiments/, ablations/, searches/; mlruns/ "
        "and reports/ go there). Default: $ABLAB_PROJECT, else found from the working "
        "directory upward")] = None,
) -> None:
    DEBUG["on"] = debug
    from core import paths

    if project:
        paths.use_project(project)
    elif not (os.environ.get("ABLAB_PROJECT") or os.environ.get("ABLAB_ROOT")):
        found = paths.find_project()
        if found:  # spawned workers resolve the same project, wherever they start
            os.environ["ABLAB_PROJECT"] = str(found)

@app.command()
def axes(
    experiment: Annotated[str | None, typer.Argument(help="also list the options of the "
                          "plugins this experiment names (name in experiments/ or a path)")]
    = None,
) -> None:
    """List every axis an ablation or search can vary.

    Example: ablab axes, or ablab axes mine (with its plugins' options)"""
    from core.axes import describe, describe_options, describe_seed, registered
    from core.termtable import show

    rows = [*(describe(a) for a in registered()), describe_seed()]
    if experiment:
        from core.config import load_experiment

        rows += describe_options(load_experiment(experiment))
    cols = ("path", "alias", "type", "values", "default", "meaning")
    show(console, cols, [[d[k] for k in cols] for d in rows], "ablab axes")


@app.command()
def init(
    folder: Annotated[str, typer.Argument(help="the new project folder")] = ".",
    force: Annotated[bool, typer.Option(help="write into a folder that is not empty")]
    = False,
) -> None:
    """Write a new project: an experiment, two ablations and a search over a small model
    and data module of your own (mymodel.py), ready to run.

    Example: ablab init proj && cd proj && ablab run width"""
    from core.template import write_project

    root = write_project(folder, force)
    console.print(f"wrote an ablab project in {root}:")
    for p in sorted(root.rglob("*")):
        if p.is_file():
            console.print(f"  {p.relative_to(root)}")
    console.print(f"next: cd {folder} && ablab run width (then ablab report width)")


@app.command()
def train(
    experiment: Annotated[str, typer.Argument(help="name in experiments/ or a YAML path")],
    seed: Annotated[int, typer.Option(help="the one seed of this trial")] = 0,
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Train one seeded trial and log it to MLflow.

    Example: ablab train digits_cnn --seed 3 --set train.lr=3e-4"""
    from core import pretrain, tracking
    from core.config import load_experiment
    from core.runner import run_trial
    from core.trial import Trial, source_name

    exp = load_experiment(experiment, set_)
    tracking.check_reachable(tracking_uri)
    from core.data import check

    check(exp.data, console)  # a folder's problems end here, before any run exists
    name = source_name(exp.model.weights)
    src = pretrain.source(name) if name else None
    trial = Trial.new(exp, seed, exp.name, source_hash=src.hash if src else None)
    c = tracking.client(tracking_uri)
    if src is not None:  # trained (once) in a run of its own, before this trial's run
        if not pretrain.find(c, src.hash):
            console.print(f"pretraining [bold]{src.name}[/] once (reused later)...")
        trial = trial.replace(weights_uri=pretrain.ensure(src, c))
    console.print(f"[bold]{exp.name}[/] seed={seed} trial={trial.hash}: training "
                  f"{exp.train.epochs} epoch(s)...")
    res = run_trial(trial, c=c)
    if res.status == "FAILED":
        err_console.print(f"[red]trial failed[/]: {res.error} (run {res.run_id})")
        raise typer.Exit(1)
    m = res.metrics
    console.print(
        f"run {res.run_id}: outcome={res.outcome} test_accuracy="
        f"{m.get('test_accuracy', float('nan')):.4f} epochs={int(m['epochs_run'])} "
        f"train_time={m['train_time_s']:.1f}s")


@app.command()
def data(
    experiment: Annotated[str, typer.Argument(help="name in experiments/ or a YAML path")],
    set_: SetOpt = None,
    augment: Annotated[str | None, typer.Option(help="policies to show views of, e.g. "
                       "moderate,extreme (default: the experiment's, moderate, extreme)")] = None,
    out: Annotated[str | None, typer.Option(help="folder (default reports/data-NAME)")] = None,
) -> None:
    """The data card: images per class and split, sizes before resizing, examples as the model
    sees them, augmented views per policy, skipped and unreadable files, and duplicates
    across splits (leakage). Writes data.html (one file, plots embedded) and csv/png.

    Example: ablab data digits_cnn --set data.source=folder --set data.path=~/photos"""
    from core.data_command import show_card

    show_card(experiment, set_, augment, out, console)


@app.command()
def pretrain(
    experiment: Annotated[str, typer.Argument(help="the source task, an experiment name/path")],
    tracking_uri: UriOpt = None,
) -> None:
    """Train a source task once and log its backbone as an MLflow model (a `pretrain` run);
    experiments use it with `model.weights: pretrain:<experiment>`.

    Example: ablab pretrain digits_0_4_pretrain"""
    from core import pretrain as pt
    from core import tracking

    c = tracking.client(tracking_uri)
    src = pt.source(experiment)
    uri = pt.find(c, src.hash)
    if uri:
        console.print(f"{experiment}: already pretrained ({uri}); reusing it.")
        return
    console.print(f"pretraining [bold]{experiment}[/] ({src.exp.train.epochs} epochs, seed "
                  f"{pt.SEED})...")
    console.print(f"pretrained backbone: {pt.ensure(src, c)}")


def _run_study(study):
    """Run a study; after Ctrl-C or SIGTERM its summary still comes. None when the command
    only enqueued (--no-workers)."""
    interrupted = False
    try:
        study.run()
    except KeyboardInterrupt:
        interrupted = True
    if study.opts.enqueue_only and not interrupted:
        return None
    return study.summarize(interrupted)


@app.command()
@study_command
def run(
    ablation: Annotated[str, typer.Argument(help="name in ablations/ or a YAML path")],
    seeds: Annotated[int | None, typer.Option(help="seeds per variant (overrides the file)")]
    = None,
    report: Annotated[bool, typer.Option(help="write the report when done")] = True,
    *, opts,
) -> None:
    """Run an ablation study: every variant x seed, resumable, logged to MLflow.

    Example: ablab run augmentation_strength --seeds 5 --workers 2"""
    from core.ablation.spec import load_ablation
    from core.ablation.study import AblationStudy, print_summary

    ab = load_ablation(ablation)
    study = AblationStudy(ab, opts, seeds)
    res = _run_study(study)
    if res is None:
        return
    print_summary(res, ab.metric, console)
    if res.interrupted:
        console.print("[yellow]Interrupted.[/] Finished trials are kept; run the same command "
                      "again to continue.")
        raise typer.Exit(130)
    if report and res.counts["finished"]:
        from core.ablation.report import write_report

        write_report(ab.path, None, None, study.tracking_uri, console, quiet=True,
                     expected=study.trials)
    from core.lifecycle import Outcome

    if res.counts[Outcome.FAILED.value] or res.counts["missing"]:
        raise typer.Exit(1)


@app.command()
@study_command
def search(
    name: Annotated[str, typer.Argument(help="name in searches/ or a YAML path")],
    trials: Annotated[int | None, typer.Option(help="total trials the study should reach "
                      "(a rerun continues it)")] = None,
    *, opts,
) -> None:
    """Optuna search over the axes; each trial is an MLflow run; writes <name>_best.yaml.

    Example: ablab search lr_batch --trials 40"""
    from core.search.spec import load_search
    from core.search.strategy import SearchStudy

    s = load_search(name)
    study = SearchStudy(s, opts, trials)
    res = _run_study(study)
    if res is not None and res.get("interrupted"):
        console.print("[yellow]Interrupted.[/] Run the same command to continue the study.")
        raise typer.Exit(130)


@app.command()
def worker(
    study: Annotated[str, typer.Argument(help="the ablation or search whose queue to serve "
                     "(its name; `ablation:NAME` or `search:NAME` when both exist)")],
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    wait: Annotated[bool, typer.Option(help="keep polling while other workers still run "
                    "trials (retries may appear)")] = False,
    gpus: Annotated[str | None, typer.Option(help="GPU ids to run on, e.g. 0,1: one worker "
                    "process per GPU (x --per-gpu), each capped to its share of memory")]
    = None,
    per_gpu: PerGpuOpt = 1,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: one per "
                       "slot; on a CPU-only machine 1)")] = None,
    stop_after: Annotated[float | None, typer.Option(help="seconds this worker may run: "
                          "no trial is started that would not end in time (default: the "
                          "SLURM job's time limit, if any)")] = None,
    keep_checkpoints: KeepCheckpointsOpt = False,
) -> None:
    """Serve one study's queue: claim trials, run them, log to MLflow, from any machine and
    any folder (configs travel in the queue, artifacts go through the tracking server).

    Example: ablab worker head --storage postgresql://... --tracking-uri http://host:5000
    --wait --gpus 0,1 --per-gpu 2"""
    from core.ablation.handler import AblationHandler
    from core.search.handler import SearchHandler
    from core.signals import Preempted
    from core.study.worker import run_worker

    set_keep_checkpoints(keep_checkpoints)
    try:
        n = run_worker(study, storage, tracking_uri, wait, gpus, per_gpu, workers, stop_after,
                       {"ablation": AblationHandler, "search": SearchHandler}, console)
    except Preempted as stop:
        console.print(f"worker preempted ({stop}): its trials are back in the queue")
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(f"worker done: ran {n} trial(s)")


@app.command()
def server(
    data: Annotated[str | None, typer.Option(help="folder for the PostgreSQL cluster, the "
                    "artifacts and the logs (default: mlruns/server); reused on a second start")]
    = None,
    port: Annotated[int, typer.Option(help="MLflow tracking server port")] = 5000,
    pg_port: Annotated[int, typer.Option(help="port of the local PostgreSQL cluster")] = 5433,
    postgres: Annotated[str | None, typer.Option(help="use an existing PostgreSQL server "
                        "instead of a local cluster: postgresql://USER:PASSWORD@HOST:PORT")]
    = None,
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 lets other "
                    "machines in, behind a login")] = "127.0.0.1",
    auth: Annotated[bool | None, typer.Option("--auth/--no-auth", help="MLflow's login "
                    "(default: on unless the address is loopback)")] = None,
) -> None:
    """PostgreSQL + an MLflow tracking server serving artifacts: what workers on many
    machines share. Prints the --tracking-uri and --storage they need; Ctrl-C stops it.

    Example: ablab server --data /srv/ablab --port 5000"""
    from pathlib import Path

    from core.paths import mlruns_dir
    from core.server import serve

    serve(Path(data) if data else mlruns_dir() / "server", port, pg_port, postgres, host,
          console, auth)


@app.command()
def report(
    ablation: Annotated[str, typer.Argument(help="study name (its MLflow experiment)")],
    metric: Annotated[str | None, typer.Option(help="any logged metric (default: the "
                      "ablation's), e.g. test_macro_f1, test_recall_1")] = None,
    direction: Annotated[str | None, typer.Option(help="maximize | minimize (default: "
                         "minimize for losses, else the ablation's)")] = None,
    out: Annotated[str | None, typer.Option(help="output folder (default reports/NAME)")]
    = None,
    delta: Annotated[float | None, typer.Option(help="smallest difference of interest "
                     "(default: the ablation's `delta:`): equivalence and seed planning")]
    = None,
    missing_as: Annotated[str | None, typer.Option(help="how a diverged/failed seed counts: "
                          "chance | worst | exclude (default: the ablation's, else chance)")]
    = None,
    tracking_uri: UriOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="print the tables as JSON (for "
                     "scripts) instead of a summary")] = False,
    where: Annotated[list[str] | None, typer.Option(help="only the trials with COLUMN=VALUE, "
                     "e.g. fingerprint=3fa2c1d0, isa=avx2, onednn=off, code=...")] = None,
) -> None:
    """Statistics, plots and significance for a study: reports/NAME/index.html (one file,
    plots embedded), summary.md, csv; also logged to MLflow.

    Example: ablab report augmentation_strength --metric test_macro_f1 --delta 0.01"""
    from core.ablation.analysis import MISSING_AS
    from core.ablation.report import write_report

    if direction not in (None, "maximize", "minimize"):
        raise ConfigError(f"--direction: {direction!r} is not maximize or minimize")
    if missing_as not in (None, *MISSING_AS):
        raise ConfigError(f"--missing-as: {missing_as!r} is not one of {', '.join(MISSING_AS)}")
    if delta is not None and delta <= 0:
        raise ConfigError(f"--delta: expected a positive number, got {delta}")
    from core.inventory import existing_client

    existing_client(tracking_uri)
    try:
        rep = write_report(ablation, metric, out, tracking_uri, None if json_ else console,
                           direction=direction, delta=delta, missing_as=missing_as,
                           where=where)
    except LookupError as err:
        raise ConfigError(str(err)) from None
    if json_:
        print(json.dumps(rep.to_json(), indent=2, default=str))


@app.command("list")
def list_(
    tracking_uri: UriOpt = None,
    storage: StorageOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")] = False,
) -> None:
    """The studies in a store: trials done/total, failed, running, decided variants, best.

    Example: ablab list --tracking-uri http://127.0.0.1:5000 --json"""
    from core.inventory import list_studies, rows_json

    rows = list_studies(tracking_uri, storage)
    if json_:
        print(json.dumps(rows_json(rows), indent=2))
        return
    from core.inventory import print_rows

    print_rows(rows, console)


@app.command()
def doctor(tracking_uri: UriOpt = None, storage: StorageOpt = None) -> None:
    """Can this machine run studies? Python, TensorFlow, Keras, MLflow and Optuna versions;
    GPUs; the tracking store and Optuna storage reachable and writable; disk space. Exits 1
    with what to fix.

    Example: ablab doctor --tracking-uri http://127.0.0.1:5000"""
    from core.inventory import doctor as run_checks
    from core.inventory import print_checks

    if not print_checks(run_checks(tracking_uri, storage), console):
        raise typer.Exit(1)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="port of the MLflow UI")] = 5000,
    tracking_uri: UriOpt = None,
    study: Annotated[str | None, typer.Option(help="print this study's URL only")] = None,
) -> None:
    """The MLflow UI on 127.0.0.1 for the project's store (or any tracking URI), with the URL
    of each study: its variants' parent runs sorted by their mean, trials nested under them.

    Example: ablab ui --port 5001"""
    from core.ui import serve_ui

    serve_ui(tracking_uri, port, study, console)


def main() -> None:
    import logging
    import os
    import warnings

    # `kill PID` stops as cleanly as Ctrl-C: running trials end KILLED, the queue is kept.
    from core import signals

    signals.install()

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        """A warning is one line in ablab's words, not a source line with a path."""
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    warnings.showwarning = one_line
    try:
        app()
    except ConfigError as err:
        err_console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as err:  # one clear line, the traceback only with --debug
        if DEBUG["on"]:
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        err_console.print(f"[red]error:[/] {type(err).__name__}: {msg} (ablab --debug ... shows "
                          "the traceback)", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
