"""The end of a search: the best config as a complete experiment, parameter importances,
Optuna's plots and a top-5 table, logged to the search's parent run in MLflow."""

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

from core import lifecycle, tracking
from core.paths import best_dir, reports_dir
from core.search.spec import Search, experiment_for
from core.study.spec import Base

if TYPE_CHECKING:
    from mlflow import MlflowClient


def best_experiment_yaml(s: Search, study: optuna.Study, base: Base) -> tuple[str, Path]:
    best = study.best_trial
    exp = experiment_for(base, best.params, f"search {s.name}, best trial")
    exp = exp.model_copy(update={"name": f"{s.name}_best",
                                 "description": f"best of search {s.name}: {s.metric}="
                                                f"{best.value:.4f} (trial {best.number})"})
    body = yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False)
    text = (f"# Best configuration of search `{s.name}` ({s.metric}={best.value:.4f}, "
            f"{s.direction}, trial {best.number} of {len(study.trials)}).\n"
            f"# Written by `ablab search {s.name}`; a complete experiment:\n"
            f"#   ablab train {s.name}_best --seed 0\n{body}")
    return text, best_dir() / f"{s.name}_best.yaml"


def importances(study: optuna.Study) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError):
        return {}  # e.g. every trial had the same value of every parameter


def plots(study: optuna.Study, out: Path, has_importances: bool) -> list[Path]:
    from optuna.visualization import matplotlib as ovm

    made = []
    makers = [("optimization_history.png", ovm.plot_optimization_history),
              ("parallel_coordinate.png", ovm.plot_parallel_coordinate)]
    if has_importances:
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
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done.sort(key=lambda t: float(t.value or 0.0), reverse=s.direction == "maximize")
    t = Table(title=f"{s.name}: top {min(n, len(done))} of {len(study.trials)} trials "
                    f"({s.metric}, {s.direction})")
    t.add_column("trial", justify="right")
    t.add_column(s.metric, justify="right")
    for k in s.space:
        t.add_column(k)
    for tr in done[:n]:
        t.add_row(str(tr.number), f"{tr.value:.4f}",
                  *(f"{v:.4g}" if isinstance(v, float) else str(v)
                    for v in (tr.params.get(k) for k in s.space)))
    return t


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
    text, best_path = best_experiment_yaml(s, study, base)
    best_path.parent.mkdir(parents=True, exist_ok=True)
    best_path.write_text(text)
    (out / best_path.name).write_text(text)
    imp = importances(study)
    (out / "param_importances.json").write_text(json.dumps(imp, indent=2))
    made = plots(study, out, bool(imp))
    tracking.log_metrics(c, parent, {f"best_{s.metric}": study.best_value,
                                     "n_trials": len(trials), "n_pruned": states["PRUNED"],
                                     "n_failed": states["FAIL"],
                                     **{f"importance_{k}": v for k, v in imp.items()}},
                         step=len(trials))
    tracking.set_tags(c, parent, {lifecycle.OPTUNA_BEST_TRIAL: study.best_trial.number})
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
    summary["best_value"] = study.best_value
    summary["best_path"] = str(best_path)
    return summary
