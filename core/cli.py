"""`ablab` command line. Heavy imports (TensorFlow, MLflow, Optuna) happen inside commands, so
`ablab axes` and config errors answer instantly."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="ablab: seeded, repeated ablation studies of image classifiers, "
                       "tracked in MLflow.")
console = Console()
err_console = Console(stderr=True)

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override: key=value "
                   "(dotted path or axis alias), e.g. --set train.lr=3e-4")]
UriOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI "
                   "(default: $MLFLOW_TRACKING_URI or sqlite under mlruns/)")]
StorageOpt = Annotated[str | None, typer.Option("--storage", help="Optuna storage: RDB URL or "
                       "journal-file path (default: $ABLAB_STORAGE or mlruns/optuna.journal)")]


@app.command()
def axes() -> None:
    """List every axis an ablation or search can vary."""
    from core.axes import describe, registered

    table = Table(title="ablab axes", show_lines=False)
    for col in ("path", "alias", "type", "values", "default"):
        table.add_column(col, no_wrap=col in ("path", "alias", "type"))
    table.add_column("meaning", ratio=1, min_width=30)
    for a in registered():
        d = describe(a)
        table.add_row(*(d[k] for k in ("path", "alias", "type", "values", "default", "meaning")))
    console.print(table)


@app.command()
def train(
    experiment: Annotated[str, typer.Argument(help="name in experiments/ or a YAML path")],
    seed: Annotated[int, typer.Option(help="the one seed of this trial")] = 0,
    set_: SetOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Train one seeded trial and log it to MLflow."""
    from core.config import load_experiment

    exp = load_experiment(experiment, set_)
    from core.trial import TrialSpec, run_trial

    spec = TrialSpec(exp, seed, experiment_name=exp.name)
    console.print(f"[bold]{exp.name}[/] seed={seed} trial={spec.hash}: training "
                  f"{exp.train.epochs} epoch(s)...")
    res = run_trial(spec, tracking_uri)
    if res.status == "FAILED":
        err_console.print(f"[red]trial failed[/]: {res.error} (run {res.run_id})")
        raise typer.Exit(1)
    m = res.metrics
    console.print(
        f"run {res.run_id}: outcome={res.outcome} test_accuracy="
        f"{m.get('test_accuracy', float('nan')):.4f} epochs={int(m['epochs_run'])} "
        f"train_time={m['train_time_s']:.1f}s")


@app.command()
def pretrain(
    experiment: Annotated[str, typer.Argument(help="the source task, an experiment name/path")],
    tracking_uri: UriOpt = None,
) -> None:
    """Train a source task once and log its backbone as an MLflow model (ablab.role=pretrain);
    experiments use it with `model.weights: pretrain:<experiment>`."""
    from core import pretrain as pt
    from core import tracking

    c = tracking.client(tracking_uri)
    exp = pt.source_experiment(experiment)
    uri = pt.find(c, exp)
    if uri:
        console.print(f"{experiment}: already pretrained ({uri}); reusing it.")
        return
    console.print(f"pretraining [bold]{experiment}[/] ({exp.train.epochs} epochs, seed "
                  f"{pt.SEED})...")
    from core.seeding import quiet_tensorflow

    quiet_tensorflow()
    uri = pt.pretrain(experiment, c)
    console.print(f"pretrained backbone: {uri}")


@app.command()
def run(
    ablation: Annotated[str, typer.Argument(help="name in ablations/ or a YAML path")],
    seeds: Annotated[int | None, typer.Option(help="seeds per variant (overrides the file)")]
    = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: one per "
                       "device slot: each GPU x --per-gpu, or 1 on CPU)")] = None,
    per_gpu: Annotated[int, typer.Option(help="workers per visible GPU")] = 1,
    set_: SetOpt = None,
    smoke: Annotated[bool, typer.Option(help="apply the file's `smoke:` overrides")] = False,
    tracking_uri: UriOpt = None,
    storage: StorageOpt = None,
    report: Annotated[bool, typer.Option(help="write the report when done")] = True,
) -> None:
    """Run an ablation study: every variant x seed, resumable, logged to MLflow."""
    from core.ablation import load_ablation
    from core.orchestrator import Coordinator, print_summary

    ab = load_ablation(ablation)
    coord = Coordinator(ab, seeds, workers, set_, tracking_uri, storage, smoke, per_gpu,
                        console)
    res = coord.run()
    print_summary(res, ab.metric, console)
    if res.interrupted:
        console.print("[yellow]Interrupted.[/] Finished trials are kept; run the same command "
                      "again to continue.")
        raise typer.Exit(130)
    if report and res.counts["finished"]:
        from core.report import write_report

        write_report(ab.path, None, None, coord.tracking_uri, console, quiet=True,
                     expected=coord.trials)
    if res.counts["failed"] or res.counts["missing"]:
        raise typer.Exit(1)


@app.command()
def worker(
    ablation: Annotated[str, typer.Argument(help="the ablation whose queue to serve")],
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    study_name: Annotated[str | None, typer.Option(hidden=True)] = None,
    wait: Annotated[bool, typer.Option(help="keep polling while other workers still run "
                    "trials (retries may appear)")] = False,
) -> None:
    """Serve one study's queue: claim trials, run them, log to MLflow (any machine)."""
    from core.paths import default_storage
    from core.queue import study_name as qname
    from core.worker import serve

    if study_name is None:
        from core.ablation import load_ablation

        study_name = qname("ablation", load_ablation(ablation).name)
    try:
        n = serve(study_name, storage or default_storage(), tracking_uri, wait=wait)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(f"worker done: ran {n} trial(s)")


@app.command()
def report(
    ablation: Annotated[str, typer.Argument(help="study name (its MLflow experiment)")],
    metric: Annotated[str | None, typer.Option(help="any logged metric (default: the "
                      "ablation's), e.g. test_macro_f1, test_recall_1")] = None,
    direction: Annotated[str | None, typer.Option(help="maximize | minimize (default: "
                         "minimize for losses, else the ablation's)")] = None,
    out: Annotated[str | None, typer.Option(help="output folder (default reports/NAME)")]
    = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Statistics, plots and significance for a study; also logged to MLflow."""
    from core.report import write_report

    if direction not in (None, "maximize", "minimize"):
        raise ConfigError(f"--direction: {direction!r} is not maximize or minimize")
    try:
        write_report(ablation, metric, out, tracking_uri, console, direction=direction)
    except LookupError as err:
        raise ConfigError(str(err)) from None


@app.command()
def search(
    name: Annotated[str, typer.Argument(help="name in searches/ or a YAML path")],
    trials: Annotated[int | None, typer.Option(help="total trials the study should reach "
                      "(a rerun continues it)")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel worker processes")] = None,
    set_: SetOpt = None,
    smoke: Annotated[bool, typer.Option(help="apply the file's `smoke:` overrides")] = False,
    tracking_uri: UriOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Optuna search over the axes; each trial is an MLflow run; writes <name>_best.yaml."""
    from core.search import load_search
    from core.search_run import run_search

    s = load_search(name)
    res = run_search(s, trials, workers, set_, tracking_uri, storage, smoke, console)
    if res.get("interrupted"):
        console.print("[yellow]Interrupted.[/] Run the same command to continue the study.")
        raise typer.Exit(130)


@app.command("search-worker", hidden=True)
def search_worker(
    name: str,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    n_trials: Annotated[int, typer.Option()] = 1,
    worker_index: Annotated[int, typer.Option()] = 0,
    set_: SetOpt = None,
    smoke: bool = False,
) -> None:
    """One search worker (started by `ablab search`)."""
    from core.paths import default_storage
    from core.search import load_search, serve

    try:
        serve(load_search(name), storage or default_storage(), tracking_uri, n_trials,
              worker_index, set_, smoke)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    import logging
    import os
    import signal
    import warnings

    # `kill PID` stops as cleanly as Ctrl-C: running trials end KILLED, the queue is kept.
    signal.signal(signal.SIGTERM, _interrupt)

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app()
    except ConfigError as err:
        err_console.print(f"[red]error:[/] {err}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
