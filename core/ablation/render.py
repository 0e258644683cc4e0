"""Rendering a study's tables: one list of columns per table drives the console, the live
table, markdown, HTML and the CSV files, so a column added here shows everywhere with the same
name and the same numbers. Pure: tables in, strings (or rich tables) out."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core import stats, termtable
from core.lifecycle import Outcome


@dataclass(frozen=True)
class Fmt:
    """How cells are written: markdown and the console as plain text, HTML escaped."""

    html: bool = False

    def num(self, x: Any, digits: int = 4) -> str:
        if isinstance(x, (float, np.floating)):
            if math.isnan(x):
                return "–" if self.html else "-"
            return "inf" if math.isinf(x) else f"{x:.{digits}f}"
        return self.text(x)

    def ci(self, lo: Any, hi: Any, digits: int = 4) -> str:
        return f"[{self.num(lo, digits)}, {self.num(hi, digits)}]"

    def text(self, x: Any) -> str:
        return html.escape(str(x)) if self.html else str(x)

    def note(self, x: str) -> str:
        return f"<em>{x}</em>" if self.html else x

    def strong(self, x: str) -> str:
        return f"<b>{self.text(x)}</b>" if self.html else self.text(x)


PLAIN, HTML = Fmt(), Fmt(html=True)
Row = Any  # a table row: a namedtuple from DataFrame.itertuples
Cell = Callable[[Row, Fmt], str]


@dataclass(frozen=True)
class Column:
    header: str  # markdown, HTML
    cell: Cell
    fields: tuple[str, ...]  # the table's fields it shows (the CSV's leading columns)
    short: str | None = None  # the console's header; None: not in the console table
    live: bool = False  # also in the live table while the study runs


def _variant(r: Row, f: Fmt) -> str:
    return f.text(r.variant) + (" " + f.note("(baseline)") if r.baseline else "")


def _why(r: Row, f: Fmt) -> str:
    """Why a variant has no interval, where the table knows (the live table may not)."""
    note = getattr(r, "ci_note", "")
    return f" ({f.text(note)})" if isinstance(note, str) and note else ""


VARIANT_COLUMNS = [
    Column("variant", _variant, ("variant", "baseline"), "variant", live=True),
    Column("n", lambda r, f: str(r.n), ("n",), "n", live=True),
    Column("imputed", lambda r, f: str(r.imputed), ("imputed",), "imputed", live=True),
    Column("mean ± std", lambda r, f: f"{f.num(r.mean)} ± {f.num(r.std)}", ("mean", "std"),
           "mean ± std", live=True),
    Column("95% CI (t)", lambda r, f: f.ci(r.ci95_low, r.ci95_high) + _why(r, f),
           ("ci95_low", "ci95_high", "ci_note"), "95% CI", live=True),
    Column("median", lambda r, f: f.num(r.median), ("median",)),
    Column("IQM [95% CI]", lambda r, f: f"{f.num(r.iqm)} {f.ci(r.iqm_ci95_low, r.iqm_ci95_high)}",
           ("iqm", "iqm_ci95_low", "iqm_ci95_high"), "IQM"),
    Column("range", lambda r, f: f"{f.num(r.min)} – {f.num(r.max)}", ("min", "max")),
    Column("test-set SE", lambda r, f: f.num(r.test_se), ("test_se",)),
    Column("collapse rate", lambda r, f: f.num(r.collapse_rate, 2), ("collapse_rate",),
           "collapse"),
    # One count, one name: failures = runs that collapsed, diverged or raised (errors)
    Column("failures [95% CI]", lambda r, f: f"{r.failures}/{r.ran} "
           f"{f.ci(r.failure_ci95_low, r.failure_ci95_high, 2)}",
           ("failures", "ran", "failure_rate", "failure_ci95_low", "failure_ci95_high"),
           "failures"),
    Column(Outcome.DIVERGED.value, lambda r, f: str(getattr(r, Outcome.DIVERGED.value)),
           (Outcome.DIVERGED.value,), Outcome.DIVERGED.value),
    Column("errors", lambda r, f: str(getattr(r, Outcome.FAILED.value)),
           (Outcome.FAILED.value,), "errors"),
    Column("epochs", lambda r, f: f.num(r.mean_epochs_run, 1), ("mean_epochs_run",)),
    Column("train s", lambda r, f: f.num(r.mean_train_time_s, 1), ("mean_train_time_s",)),
]


def _pairs(r: Row, f: Fmt) -> str:
    failed = r.failures.split(" vs ")
    return f"{r.test} ({min(r.n_base, r.n_variant)})" + (
        f", failures {r.failures}" if failed[0] != failed[1] else "") + (
        f", left out seeds {f.text(r.left_out_seeds)}" if r.left_out_seeds else "")


def _interval(r: Row, f: Fmt) -> str:
    """The difference and its Holm CI; an interval that can only be the whole range (a
    permutation test on so few seeds that its smallest p is above the CI's alpha) says so."""
    text = f"{f.num(r.diff)} {f.ci(r.diff_ci_low, r.diff_ci_high)}"
    if r.test in ("sign-flip", "permutation") and not stats.rejects(r.min_p, 1 - r.ci_level):
        text += f" ({f.text(_trivial(r))})"
    return text


def _trivial(r: Row) -> str:
    n = min(r.n_base, r.n_variant)
    return (f"any difference: {n} {'pairs' if r.paired else 'seeds a side'} cannot reject at "
            f"{r.ci_level:.1%}, the smallest {r.test} p is {r.min_p:.3g}")


def _seeds(r: Row, f: Fmt) -> str:
    """Shown where it helps a decision: an undecided row (README, Statistics)."""
    if not str(r.verdict).startswith("inconclusive"):
        return ""
    if not r.delta_declared:
        return "declare delta"
    return f"{f.num(r.seeds_for_80_power, 0)} to detect ±{r.delta_declared:g}"


COMPARISON_COLUMNS = [
    Column("variant", lambda r, f: f.text(r.variant), ("variant",), "variant"),
    Column("verdict", lambda r, f: f.strong(r.verdict), ("verdict",), "verdict"),
    Column("caveat", lambda r, f: f.text(r.caveat), ("caveat",), "caveat"),
    Column("difference [Holm-adjusted CI]", _interval, ("diff", "diff_ci_low", "diff_ci_high"),
           "diff [Holm CI]"),
    Column("CI level", lambda r, f: f"{f.num(r.ci_level * 100, 1)}%", ("ci_level",)),
    Column("unadjusted 95% CI", lambda r, f: f.ci(r.diff_ci95_low, r.diff_ci95_high),
           ("diff_ci95_low", "diff_ci95_high")),
    Column("test (pairs)", _pairs, ("test", "n_base", "n_variant", "failures",
                                    "left_out_seeds")),
    Column("p (Holm)", lambda r, f: f.num(r.p_holm), ("p_holm",), "p (Holm)"),
    Column("Wilcoxon p", lambda r, f: f.num(r.p_wilcoxon), ("p_wilcoxon",)),
    Column("effect size", lambda r, f: f"{r.effect_size_kind} {f.num(r.effect_size, 2)}",
           ("effect_size_kind", "effect_size"), "effect"),
    Column("P(improvement) [95% CI]", lambda r, f: f"{f.num(r.prob_improvement, 2)} "
           f"{f.ci(r.prob_improvement_low, r.prob_improvement_high, 2)}",
           ("prob_improvement", "prob_improvement_low", "prob_improvement_high"), "P(improve)"),
    Column("seeds per variant to detect ±delta at 80% power (Holm over the comparisons; "
           "inconclusive rows)", _seeds, ("seeds_for_80_power",), "seeds@80%"),
]


def cells(columns: list[Column], df: pd.DataFrame, f: Fmt) -> list[list[str]]:
    return [[col.cell(r, f) for col in columns] for r in df.itertuples()]


def for_csv(columns: list[Column], df: pd.DataFrame) -> pd.DataFrame:
    """The table's fields in the order its columns show them, then the rest."""
    lead = list(dict.fromkeys(k for col in columns for k in col.fields if k in df))
    return df[lead + [k for k in df.columns if k not in lead]]


def markdown(columns: list[Column], df: pd.DataFrame) -> list[str]:
    return ["| " + " | ".join(c.header for c in columns) + " |",
            "|" + "---|" * len(columns),
            *("| " + " | ".join(row) + " |" for row in cells(columns, df, PLAIN))]


def _console_view(columns: list[Column], df: pd.DataFrame,
                  live: bool) -> tuple[list[str], list[list[str]]]:
    shown = [c for c in columns if (c.live if live else c.short)]
    return [c.short or c.header for c in shown], cells(shown, df, PLAIN)


def live_table(columns: list[Column], df: pd.DataFrame):
    """The live display's view (its `live` columns): cells fold, never cut."""
    headers, rows = _console_view(columns, df, live=True)
    return termtable.table(headers, rows, boxed=False, right=range(1, len(headers)))


def show(console, columns: list[Column], df: pd.DataFrame, title: str,
         live: bool = False) -> None:
    """The console's view (its `short` columns, or the `live` ones): a table where it fits,
    else a card per row (core.termtable), so nothing is cut at 80 columns or in a pipe."""
    headers, rows = _console_view(columns, df, live)
    termtable.show(console, headers, rows, title, right=range(1, len(headers)))


def with_delta(ct: pd.DataFrame, delta: float | None) -> pd.DataFrame:
    """The comparison table with what its seed-planning column needs to know."""
    return ct.assign(delta_declared=delta or 0.0) if len(ct) else ct


# ----------------------------------------------------------------------------- notes

COVERAGE_NOTE = (
    "What the intervals cover: training noise over seeds (initialisation, data order, "
    "augmentation, dropout) with the data split fixed. The test set's own sampling noise is "
    "not in them: its binomial standard error per run is the column 'test-set SE'. Set "
    "`data.vary_split_with_seed: true` to put the split's noise in them too.")


ADAPTIVE_NOTE = (
    "Adaptive seeds: the verdict column comes from the sequential rule (group-sequential "
    "paired t-tests at Lan-DeMets alpha-spending levels calibrated for t by simulation, Holm "
    "across variants, TOST for "
    "equivalence, futility when the final boundary is out of reach), which keeps the error "
    "rates whatever look a variant stopped at. The p-values and CIs beside it are fixed-n "
    "figures on the seeds each variant got and are not adjusted for the looks: read them as "
    "descriptions. A variant stopped as futile is inconclusive, not 'the same'.")


def reading_notes(delta: float | None, missing_as: str, imputed: int,
                  adaptive: bool = False) -> list[str]:
    """What the numbers mean, for the markdown and the HTML report alike."""
    return [ADAPTIVE_NOTE] * adaptive + [
        COVERAGE_NOTE,
        f"Seeds without a metric (diverged or failed) count as `missing_as: {missing_as}` "
        f"({imputed} imputed in this report): the verdict covers every seed that ran, not "
        "only the survivors.",
        "Verdicts: better/worse when the Holm-adjusted test rejects (the difference's CI is "
        "Holm-adjusted to agree with it: its level is in the 'CI level' column); "
        + (f"equivalent within ±{delta:g} when Holm-adjusted TOST shows the difference is "
           "inside that margin (its row then shows the interval TOST used: 90% before Holm, "
           "inside the margin); " if delta else
           "with no `delta:` declared, equivalence cannot be shown; ")
        + "otherwise inconclusive: the data did not decide, which is not 'the same'. Tests: "
        "the paired t-test (Welch's when seeds cannot be paired); a permutation test of the "
        "difference of means (sign-flip when paired) where one side has more failed seeds "
        "(collapsed, diverged, imputed) than the other, as its differences are then far from "
        "normal, or where an unpaired arm has fewer than 3 seeds. The 'test' column names the "
        "test that decided. Seeds "
        "for 80% power are planned from the declared delta and an upper "
        f"{stats.SD_CONFIDENCE:.0%} confidence limit of the seed SD, never from the observed "
        "effect. The effect size is d_z (mean paired difference over its SD) for paired "
        "comparisons, Hedges' g otherwise. P(improvement): share of seeds where the variant "
        "beats the baseline (paired; ties count half) or Mann-Whitney U/(n1 n2). IQM: "
        f"interquartile mean, its bootstrap CI shown from {stats.IQM_CI_MIN_N} seeds.",
        "Collapsed: nearly all examples of other classes predicted as one class, or agreement "
        "with the labels no better than chance (Cohen's kappa <= 0)."]


def summary_markdown(study: str, metric: str, direction: str, vt: pd.DataFrame,
                     ct: pd.DataFrame, missing: list[str], plots: list[str],
                     delta: float | None = None, missing_as: str = "chance",
                     question: str = "", recall: pd.DataFrame | None = None,
                     adaptive: tuple[str, list[dict]] | None = None,
                     warnings: list[str] | None = None) -> str:
    lines = [f"# {study}: {metric} ({direction})", ""]
    if question:
        lines += ["> " + line for line in question.splitlines()] + [""]
    for w in warnings or []:
        lines += [f"**Warning:** {w}", ""]
    lines += ["## Per variant", "", *markdown(VARIANT_COLUMNS, vt)]
    if len(ct):
        lines += ["", f"## Against the baseline ({ct['baseline'].iloc[0]})", "",
                  *markdown(COMPARISON_COLUMNS, with_delta(ct, delta))]
    if adaptive is not None:
        lines += ["", "## Adaptive seeds: the looks, and where each variant stopped", "",
                  adaptive[0], "", "| variant | decision | seeds | why | looks |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['decision']} | {r['n']} | {r['why']} | "
                  f"{r['looks']} |" for r in adaptive[1]]
    if recall is not None:
        cols = list(recall.columns[1:])
        lines += ["", "## Per-class recall (imbalanced test set; mean over seeds)", "",
                  "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for r in recall.itertuples(index=False):
            lines.append(f"| {r[0]} | " + " | ".join(PLAIN.num(v, 3) for v in r[1:]) + " |")
    if missing:
        lines += ["", f"## Missing ({len(missing)} trial(s) without a finished run)", ""]
        lines += [f"- {m}" for m in missing[:50]]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    imputed = int(vt["imputed"].sum()) if len(vt) else 0
    lines += ["", "## How to read this", ""]
    for note in reading_notes(delta, missing_as, imputed, adaptive is not None):
        lines += [note, ""]
    return "\n".join(lines)


def print_report(console, study: str, metric: str, vt: pd.DataFrame, ct: pd.DataFrame,
                 missing: list[str], out_dir, quiet: bool, delta: float | None) -> None:
    if len(ct):
        show(console, COMPARISON_COLUMNS, with_delta(ct, delta),
             f"{study}: {metric} vs baseline {ct['baseline'].iloc[0]}")
    if not quiet:
        show(console, VARIANT_COLUMNS, vt, f"{study}: {metric} per variant")
    if missing:
        console.print(f"[yellow]{len(missing)} trial(s) have no finished run yet:[/] "
                      + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
                      + " (rerun the study to fill them in)")
    console.print(f"report: {out_dir}/index.html (and summary.md, csv, png; also in MLflow)")
