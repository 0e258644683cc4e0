"""The end of a search: the best config as a complete experiment, parameter importances,
Optuna's plots and a top-5 table, logged to the search's parent run in MLflow. A
multi-objective search ends with its Pareto front instead: printed, written as pareto.csv and
a plot, and tagged on the front's runs in MLflow (`ablab.pareto`)."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from core import lifecycle, names, tracking
from core.paths import best_dir, reports_dir
from core.search.spec import Search, experiment_for
from core.study.spec import Base

if TYPE_CHECKING:
    from mlflow import MlflowClient


def best_trial(s: Search, study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial; with several objectives, the front's best on the first (primary)."""
    if not s.multi:
        return study.best_trial
    sign = 1 if s.directions[0] == "maximize" else -1
    return max(study.best_trials, key=lambda t: sign * t.values[0])


def best_experiment_yaml(s: Search, study: optuna.Study, base: Base) -> tuple[str, Path]:
    best = best_trial(s, study)
    value = best.values[0]
    exp = experiment_for(base, best.params, f"search {s.name}, best trial")
    exp = exp.model_copy(update={"name": f"{s.name}_best",
                                 "description": f"best of search {s.name}: {s.metric}="
                                                f"{value:.4f} (trial {best.number})"})
    body = yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False)
    front = (f" the Pareto front's best on {s.metric} (pareto.csv lists the front);"
             if s.multi else "")
    text = (f"# Best configuration of search `{s.name}` ({s.metric}={value:.4f}, "
            f"{s.direction},{front} trial {best.number} of {len(study.trials)}).\n"
            f"# Written by `ablab search {s.name}`; a complete experiment:\n"
            f"#   ablab train {s.name}_best --seed 0\n{body}")
    return text, best_dir() / f"{s.name}_best.yaml"


def importances(study: optuna.Study) -> dict[str, float]:
    """Parameter importances for the (first) objective."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    # several objectives: the first; Optuna's evaluator reads a target as lower-is-better
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    target = (lambda t: sign * t.values[0]) if len(study.directions) > 1 else None
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(
            study, target=target).items()}
    except (RuntimeError, ValueError):
        return {}  # e.g. every trial had the same value of every parameter


def plots(study: optuna.Study, out: Path, has_importances: bool) -> list[Path]:
    from optuna.visualization import matplotlib as ovm

    made = []
    if len(study.directions) > 1:
        makers = [("pareto_front.png", ovm.plot_pareto_front),
                  ("parallel_coordinate.png", lambda st: ovm.plot_parallel_coordinate(
                      st, target=lambda t: t.values[0]))]
    else:
        makers = [("optimization_history.png", ovm.plot_optimization_history),
                  ("parallel_coordinate.png", ovm.plot_parallel_coordinate)]
    if has_importances and len(study.directions) == 1:
        makers.append(("param_importances.png", ovm.plot_param_importances))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        for name, fn in makers:
            assert callable(fn)
            try:
                ax: Any = fn(study)
            except (ValueError, RuntimeError):
                continue
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(9, 5)
            fig.savefig(out / name, dpi=100, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close(fig)
            made.append(out / name)
    return made


def top_table(s: Search, study: optuna.Study, n: int = 5) -> Table:
    """The top n by the objective; with several objectives, the whole Pareto front."""
    if s.multi:
        done = list(study.best_trials)
        sign = 1 if s.directions[0] == "maximize" else -1
        done.sort(key=lambda t: -sign * t.values[0])
        title = (f"{s.name}: Pareto front, {len(done)} of {len(study.trials)} trials ("
                 + ", ".join(f"{m} {d}" for m, d in zip(s.objective_names, s.directions,
                                                        strict=True)) + ")")
        n = len(done)
    else:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done.sort(key=lambda t: float(t.value or 0.0), reverse=s.direction == "maximize")
        title = (f"{s.name}: top {min(n, len(done))} of {len(study.trials)} trials "
                 f"({s.metric}, {s.direction})")
    t = Table(title=title)
    t.add_column("trial", justify="right")
    for m in s.objective_names:
        t.add_column(m, justify="right")
    for k in s.space:
        t.add_column(k)
    for tr in done[:n]:
        t.add_row(str(tr.number), *(f"{v:.4g}" for v in tr.values),
                  *(f"{v:.4g}" if isinstance(v, float) else str(v)
                    for v in (tr.params.get(k) for k in s.space)))
    return t


def pareto_front(s: Search, study: optuna.Study, c: MlflowClient, exp_id: str,
                 out: Path) -> list[int]:
    """The front's trial numbers: written to pareto.csv, and every run of the search tagged
    `ablab.pareto` true or false, so the MLflow UI filters the front."""
    import pandas as pd

    front = sorted(t.number for t in study.best_trials)
    rows = [{"trial": t.number, **dict(zip(s.objective_names, t.values, strict=True)),
             **t.params} for t in study.best_trials]
    pd.DataFrame(rows).sort_values("trial").to_csv(out / "pareto.csv", index=False)
    for r in tracking.search(c, exp_id, f"tags.`{lifecycle.QUEUE_NUMBER}` != ''",
                             max_results=100_000):
        number = r.data.tags.get(lifecycle.QUEUE_NUMBER, "")
        if number.isdigit():
            tracking.set_tags(c, r.info.run_id,
                              {names.PARETO: str(int(number) in front).lower()})
    return front


def finalize(s: Search, study: optuna.Study, base: Base, c: MlflowClient, exp_id: str,
             console: Console) -> dict:
    trials = study.get_trials(deepcopy=False)
    states = {st.name: sum(t.state == st for t in trials) for st in TrialState}
    summary: dict[str, Any] = {"n_trials": len(trials), **{k.lower(): v for k, v in states.items()}}
    if not states["COMPLETE"]:
        console.print("[yellow]No completed trial yet: no best config.[/]")
        return summary
    parent = study.user_attrs["mlflow_parent_run_id"]
    out = reports_dir() / f"search-{s.name}"
    out.mkdir(parents=True, exist_ok=True)
    front = pareto_front(s, study, c, exp_id, out) if s.multi else []
    best = best_trial(s, study)
    text, best_path = best_experiment_yaml(s, study, base)
    best_path.parent.mkdir(parents=True, exist_ok=True)
    best_path.write_text(text)
    (out / best_path.name).write_text(text)
    imp = importances(study)
    (out / "param_importances.json").write_text(json.dumps(imp, indent=2))
    made = plots(study, out, bool(imp)) + ([out / "pareto.csv"] if s.multi else [])
    tracking.log_metrics(c, parent, {f"best_{s.metric}": best.values[0],
                                     "n_pareto": len(front),
                                     "n_trials": len(trials), "n_pruned": states["PRUNED"],
                                     "n_failed": states["FAIL"],
                                     **{f"importance_{k}": v for k, v in imp.items()}},
                         step=len(trials))
    tracking.set_tags(c, parent, {lifecycle.OPTUNA_BEST_TRIAL: best.number,
                                  **({names.PARETO: " ".join(map(str, front))} if s.multi
                                     else {})})
    with tempfile.TemporaryDirectory() as tmp:
        for f in [out / best_path.name, out / "param_importances.json", *made]:
            Path(tmp, f.name).write_bytes(f.read_bytes())
        c.log_artifacts(parent, tmp)
    console.print(top_table(s, study))
    if imp:
        console.print("parameter importances: " + ", ".join(f"{k} {v:.2f}"
                                                            for k, v in imp.items()))
    console.print(f"trials: {states['COMPLETE']} complete, {states['PRUNED']} pruned, "
                  f"{states['FAIL']} failed. Best config: {best_path} "
                  f"(ablab train {s.name}_best); plots: {out}")
    if s.multi:
        console.print(f"Pareto front: trials {', '.join(map(str, front))} ({out}/pareto.csv; "
                      f"tagged {names.PARETO} in MLflow)")
        summary["pareto"] = front
    summary["best_value"] = best.values[0]
    summary["best_path"] = str(best_path)
    return summary
