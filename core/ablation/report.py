"""A study's report: load its runs (`runs`), compute (`analysis`, `adaptive`), draw
(`figures`), render (`render`, `html`), and write: summary.md/csv, index.html and the plots
under reports/NAME, the variants' parent runs (`parents`) and a `study` run holding the files
in MLflow. This module only puts those together and writes; each part is its own module."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core import lifecycle, provenance, tracking
from core.ablation import figures, html
from core.ablation.adaptive import adaptive_replay, looks_table, section
from core.ablation.analysis import (
    class_recall,
    comparison_table,
    default_direction,
    missing_trials,
    seed_values,
    variant_table,
    with_failure_caveat,
)
from core.ablation.metrics import HEADERS as METRIC_HEADERS
from core.ablation.metrics import by_variant, metric_list, metric_table, pareto, with_primary
from core.ablation.metrics import cells as metric_cells
from core.ablation.metrics import markdown as metric_markdown
from core.ablation.parents import log_parents
from core.ablation.render import (
    COMPARISON_COLUMNS,
    VARIANT_COLUMNS,
    for_csv,
    print_report,
    reading_notes,
    summary_markdown,
)
from core.ablation.runs import histories, load_runs, summed_confusions
from core.errors import ConfigError
from core.lifecycle import Role
from core.termtable import show

if TYPE_CHECKING:
    from mlflow import MlflowClient


def resolve_study(ref: str) -> tuple[str, Any]:
    """An ablation name or path -> (study name, Ablation); a bare study name whose file is
    gone still has its runs -> (ref, None)."""
    from core.ablation.spec import load_ablation

    try:
        ab = load_ablation(ref)
    except ConfigError:
        return ref, None
    return ab.name, ab


def expected_trials(ab: Any) -> list:
    from core.ablation.spec import expand_trials

    if ab is None:
        return []
    try:
        return expand_trials(ab)
    except ConfigError:
        return []


def data_card(expected: list, out: Path) -> str:
    """The study's data card (core.data.card) as an HTML section: the baseline's data, with
    augmented views for each augmentation policy its variants use."""
    from core.data import card

    if not expected:
        return ""
    exps = {t.variant: t.exp for t in expected}
    base = next(iter(exps.values()))
    augs: dict[str, Any] = {}
    for variant, exp in exps.items():
        key = exp.augment.strength
        if key in augs and augs[key] != exp.augment:
            key = variant  # two custom policies: named by their variant
        augs[key] = exp.augment
    try:
        c, plots = card.cached(base.data, augs, out)
    except (ConfigError, OSError, ValueError) as err:
        return f"<h2>Data</h2><p>data card unavailable: {err}</p>"
    return html.data_section(c, plots)


def write_report(ref: str, metric: str | None = None, out: str | Path | None = None,
                 tracking_uri: str | None = None, console: Any = None, quiet: bool = False,
                 direction: str | None = None, expected: list | None = None,
                 delta: float | None = None, missing_as: str | None = None,
                 where: list[str] | None = None) -> Report:
    """`ref`: an ablation name or file (its study), or the name of a study in MLflow.
    `expected`: the trials the study should have (default: the ablation file's). `delta` and
    `missing_as` default to the ablation's; the parent runs are written only with the
    study's own `missing_as`, so they always hold what the study counts."""
    from core.paths import reports_dir

    study, ab = resolve_study(ref)
    fallback = "maximize"
    own_counting = ab is None or missing_as in (None, ab.missing_as)
    if ab is not None:
        metric = metric or ab.metric
        fallback = ab.direction if metric == ab.metric else fallback
        delta = delta if delta is not None else (ab.delta if metric == ab.metric else None)
        missing_as = missing_as or ab.missing_as
    metric = metric or "test_accuracy"
    missing_as = missing_as or "chance"
    direction = direction or default_direction(metric, fallback)
    c = tracking.client(tracking_uri)
    runs = load_runs(study, c=c)
    if runs.empty:
        raise LookupError(f"study {study!r} has no trial runs yet")
    if where:  # compare on one fingerprint (or code version); the parents keep the whole study
        runs = provenance.where(runs, where)
        own_counting = False
        if runs.empty:
            raise LookupError(f"study {study!r} has no trial runs with {' and '.join(where)}")
    if metric not in runs:
        known = sorted(k for k in runs.columns if k.startswith(("test_", "val_")))
        hint = difflib.get_close_matches(metric, known, n=1)
        raise LookupError(f"--metric {metric!r} is not logged by {study!r}"
                          + (f"; did you mean {hint[0]}?" if hint else "")
                          + f" (some logged: {', '.join(known[:8])})")
    out_dir = Path(out) if out else reports_dir() / study
    out_dir.mkdir(parents=True, exist_ok=True)
    vals = seed_values(runs, metric, direction, missing_as)
    vt = variant_table(runs, metric, direction, missing_as)
    ct = comparison_table(runs, metric, direction, delta=delta, missing_as=missing_as)
    expected = expected if expected is not None else expected_trials(ab)
    rep = adaptive_replay(runs, ab, expected, metric, direction, delta, missing_as)
    adaptive = None
    if rep is not None:
        expected = [t for t in expected if t.seed < rep.seeds_of(t.variant)]
        if len(ct):
            ct["verdict"] = [rep.verdict(v, delta) for v in ct["variant"]]
            ct = with_failure_caveat(ct)
        looks_table(rep).to_csv(out_dir / "looks.csv", index=False)
        adaptive = section(rep, len(ct))
    missing = missing_trials(expected, runs)
    for_csv(VARIANT_COLUMNS, vt).to_csv(out_dir / "summary.csv", index=False)
    for_csv(COMPARISON_COLUMNS, ct).to_csv(out_dir / "comparisons.csv", index=False)
    vals.to_csv(out_dir / "seeds.csv", index=False)
    plots = [figures.plot_per_seed(vals, metric, out_dir / "per_seed.png").name,
             figures.plot_ecdf(vals, metric, out_dir / "score_distribution.png").name]
    hist = histories(runs, c)
    if len(hist):
        plots.append(figures.plot_learning_curves(hist, out_dir / "learning_curves.png").name)
    study_metrics = metric_list(metric, direction, ab.metrics[1:] if ab is not None and
                                ab.metrics else None)
    others = metric_table(runs, study_metrics[1:])
    every = with_primary(others, vt, ct, metric, direction)  # the primary's rows first
    front = pareto(every, study_metrics) if len(others) else []
    if len(others):
        others.to_csv(out_dir / "metrics.csv", index=False)
        trade = figures.plot_tradeoffs(every, metric, [m.name for m in study_metrics[1:]],
                                       front, out_dir / "tradeoffs.png")
        if trade:
            plots.append(trade.name)
    cms = summed_confusions(runs, c)
    cm = figures.plot_confusions(cms, out_dir / "confusion_matrices.png")
    if cm:
        plots.append(cm.name)
    recall = class_recall(runs, cms)
    if recall is not None:
        recall.to_csv(out_dir / "class_recall.csv", index=False)
    question = ab.question if ab is not None else ""
    data = data_card(expected, out_dir / "data")
    warned = provenance.warnings(runs)
    (out_dir / "summary.md").write_text(
        summary_markdown(study, metric, direction, vt, ct, missing, plots, delta, missing_as,
                         question, recall, adaptive, warned)
        + ("\n## Every metric, with its direction\n\n" + "\n".join(
            metric_markdown(others, front)) + "\n" if len(others) else ""))
    exp = c.get_experiment_by_name(study)
    assert exp is not None  # load_runs found it
    exp_id = exp.experiment_id
    ui = c.tracking_uri if c.tracking_uri.startswith("http") else "http://127.0.0.1:5000"
    notes = warned + reading_notes(delta, missing_as,
                                   int(vt["imputed"].sum()) if len(vt) else 0,
                                   adaptive is not None)
    (out_dir / "index.html").write_text(html.render(
        study, metric, direction, question, vt, ct, missing, [out_dir / p for p in plots],
        runs, exp_id, ui, notes, delta, recall, adaptive, data,
        (METRIC_HEADERS, metric_cells(others), front) if len(others) else None))
    if own_counting:  # the parents hold the study's own counting (core.ablation.parents)
        parent_of = runs.drop_duplicates("variant").set_index("variant")["parent"].to_dict()
        log_parents(c, parent_of, vt, ct, metric, others, front)
    _log_study_run(c, study, out_dir, metric)
    if console is not None:
        from rich.markup import escape

        if len(others):
            show(console, *by_variant(every),
                 f"{study}: every metric (↑ higher is better, ↓ lower)")
            console.print(escape(f"Pareto set over {', '.join(m.name for m in study_metrics)}: "
                                 f"{', '.join(front) or '(none)'}"))
        print_report(console, study, metric, vt, ct, missing, out_dir, quiet, delta)
        for w in warned:
            console.print(f"[yellow]warning:[/] {escape(w)}")
    return Report(study, metric, direction, delta, missing_as, out_dir, vt, ct, missing)


@dataclass
class Report:
    study: str
    metric: str
    direction: str
    delta: float | None
    missing_as: str
    folder: Path
    variants: pd.DataFrame
    comparisons: pd.DataFrame
    missing: list[str]

    def to_json(self) -> dict:
        """For scripts (`ablab report --json`): plain values, NaN as null."""
        def records(df: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and math.isnan(v) else
                         v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                    for r in df.to_dict("records")]

        return {"study": self.study, "metric": self.metric, "direction": self.direction,
                "delta": self.delta, "missing_as": self.missing_as,
                "report": str(self.folder / "index.html"),
                "variants": records(self.variants), "comparisons": records(self.comparisons),
                "missing": self.missing}


def _log_study_run(c: MlflowClient, study: str, out_dir: Path, metric: str) -> None:
    from core.study.record import role_run

    exp = c.get_experiment_by_name(study)
    assert exp is not None
    run_id = role_run(c, exp.experiment_id, Role.STUDY, {lifecycle.STUDY: study},
                      f"{study} report")
    tracking.set_tags(c, run_id, {lifecycle.REPORT_METRIC: metric})
    c.log_artifacts(run_id, str(out_dir), artifact_path=f"report_{metric}")

