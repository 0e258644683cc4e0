"""Whether a study's trials ran on the same code: a report reads each trial run's `ablab.code`
tag (core/plugins.py) and says which variants and seeds ran on which version when there is
more than one, since figures from different code are not one experiment."""

from __future__ import annotations

import pandas as pd


def seeds_text(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out: list[str] = []
    for s in sorted(set(seeds)):
        if out and out[-1].split("-")[-1] == str(s - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{s}"
        else:
            out.append(str(s))
    return ", ".join(out)


def mixed(runs: pd.DataFrame, column: str, what: str) -> str | None:
    """One sentence naming each value of `column` with the variants and seeds that ran on it,
    when the study's trials hold more than one; None when they agree (or never logged it)."""
    if column not in runs or runs[column].dropna().nunique() < 2:
        return None
    parts = []
    for value, group in runs.dropna(subset=[column]).groupby(column, sort=False):
        who = "; ".join(f"{v} seeds {seeds_text(list(g['seed']))}"
                        for v, g in group.groupby("variant", sort=False))
        parts.append(f"{value} ({who})")
    return (f"The trials ran on {len(parts)} versions of {what}: " + ", ".join(parts)
            + ". Their figures are not one experiment: rerun the older ones, or compare "
            "within one version.")


def warnings(runs: pd.DataFrame) -> list[str]:
    """Every provenance warning of a study's runs."""
    found = [mixed(runs, "code", "the plugin code (ablab.code)")]
    return [w for w in found if w]
