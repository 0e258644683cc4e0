"""Adaptive seeds in a study: the sequential rule (`core/sequential.py`) replayed on the
study's per-seed results in MLflow (`replay_runs`, counted as the report counts them). The
coordinator asks it which seeds to run now; the report asks it what was decided, at which look
and why. Nothing of the plan lives elsewhere, so a
study killed at any point and run again continues the same plan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core import stats
from core.ablation.analysis import baseline_name, seed_values
from core.sequential import Decision, SeedPlan, decide, t_levels, wanted

# What a variant's state means in the report's verdict column.
VERDICT = {"better": "better", "worse": "worse", "futile": "inconclusive (futile: stopped)",
           "max": "inconclusive (undecided at max)", "open": "inconclusive (still open)"}


@dataclass
class Replay:
    plan: SeedPlan
    baseline: str
    decisions: dict[str, Decision]
    seeds: dict[str | None, int]  # seeds each variant needs now; None: the baseline

    def seeds_of(self, variant: str) -> int:
        return self.seeds[None] if variant == self.baseline else self.seeds[variant]

    def done(self) -> bool:
        return all(d.decided for d in self.decisions.values())

    def verdict(self, variant: str, delta: float | None) -> str:
        d = self.decisions[variant]
        if d.state == "equivalent":
            return f"equivalent within ±{delta:g}"
        return VERDICT[d.state]

    def rows(self) -> list[dict]:
        """One row per look per variant, for the report."""
        return [{"variant": v, "n": lk.n, "diff": lk.diff, "p": lk.p, "boundary": lk.level,
                 "p_tost": lk.p_tost, "conditional_power": lk.power_left,
                 "decision": lk.decision} for v, d in self.decisions.items() for lk in d.looks]


def replay(vals: pd.DataFrame, ran: set[tuple[str, int]], names: list[str], baseline: str,
           plan: SeedPlan, direction: str = "maximize",
           delta: float | None = None) -> Replay:
    """`vals`: one value per (variant, seed), as `analysis.seed_values` gives; `ran`: the
    (variant, seed) cells that ran to an end (a cell that ran but has no value, under
    `missing_as: exclude`, is present but left out of its pair)."""
    by: dict[str, dict[int, float]] = {v: {} for v in names}
    for v, s in ran:
        if v in by:
            by[v][int(s)] = math.nan
    for r in vals.itertuples(index=False):
        if r.variant in by:
            by[r.variant][int(r.seed)] = float(r.value)
    others = {v: by[v] for v in names if v != baseline}
    decisions = decide(by.get(baseline, {}), others, plan, direction, delta)
    return Replay(plan, baseline, decisions, wanted(decisions, plan))


def looks_table(rep: Replay) -> pd.DataFrame:
    return pd.DataFrame(rep.rows(), columns=["variant", "n", "diff", "p", "boundary", "p_tost",
                                             "conditional_power", "decision"])


def boundaries_line(plan: SeedPlan, n_variants: int) -> str:
    """The looks' two-sided p-levels for the paired t-test (calibrated for t), at the full
    alpha and, with several variants, at the first Holm step's share alpha / m."""
    looks = plan.looks()

    def line(alpha: float) -> str:
        levels = t_levels(looks, alpha, plan.spending)
        return ", ".join(f"n={n}: p < {lv:.2g}" for n, lv in zip(looks, levels, strict=True))

    if n_variants <= 1:
        return line(stats.ALPHA)
    return (f"{line(stats.ALPHA)}; with {n_variants} variants open, Holm's first step "
            f"tests at alpha/{n_variants}: {line(stats.ALPHA / n_variants)}")


def stop_rows(rep: Replay) -> list[dict]:
    """Per variant: where it stopped, why, and each look (n, difference, p against the
    look's Holm-adjusted boundary, the decision then)."""
    return [{"variant": v, "decision": d.state, "n": d.n, "why": d.why(),
             "looks": "; ".join(f"n={lk.n}: diff {lk.diff:+.4f}, p {lk.p:.2g} vs {lk.level:.2g}"
                                f" -> {lk.decision}" for lk in d.looks)}
            for v, d in rep.decisions.items()]


def section(rep: Replay, n_variants: int) -> tuple[str, list[dict]]:
    """The report's adaptive-seeds section: the plan with its boundaries, and a row per
    variant."""
    return (f"{rep.plan}; nominal levels {boundaries_line(rep.plan, n_variants)}. "
            f"The baseline ran {rep.seeds_of(rep.baseline)} seeds.", stop_rows(rep))


def adaptive_replay(runs: pd.DataFrame, ab: Any, expected: list, metric: str, direction: str,
                    delta: float | None, missing_as: str):
    """With adaptive seeds, the sequential rule replayed on the study's runs (the same
    function the coordinator uses to plan), else None."""
    plan = ab.seed_plan() if ab is not None and metric == ab.metric else None
    if plan is None or runs.empty:
        return None
    names = list(dict.fromkeys([t.variant for t in expected] or runs["variant"]))
    return replay_runs(runs, names, str(baseline_name(runs)), plan, metric, direction, delta,
                       missing_as)


def replay_runs(runs: pd.DataFrame, names: list[str], baseline: str, plan,
                metric: str, direction: str = "maximize", delta: float | None = None,
                missing_as: str = "chance"):
    """Adaptive seeds' rule on a study's trial runs (one row per run, as `load_runs` gives),
    their seeds counted as the report counts them (`missing_as`)."""
    done = runs[runs["status"].isin(["FINISHED", "FAILED"])] if len(runs) else runs
    ran = set(zip(done["variant"], done["seed"].astype(int), strict=True)) if len(done) \
        else set()
    vals = seed_values(runs, metric, direction, missing_as) if ran else pd.DataFrame(
        columns=["variant", "seed", "value"])
    return replay(vals, ran, names, baseline, plan, direction, delta)
