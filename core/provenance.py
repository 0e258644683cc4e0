"""Whether a study's trials ran on the same code and the same machine: a report reads each
trial run's `ablab.code` tag (core/plugins.py) and its `ablab.fingerprint` (core/fingerprint.py)
and says which variants and seeds ran on which when there is more than one, since figures from
different code are not one experiment, and figures from different machines are not
bit-comparable (times and latencies not comparable at all)."""

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


FINGERPRINT_NOTE = ("Training times and latencies are not comparable across them, and "
                    "accuracies not bit-comparable (`ablab report --where fingerprint=...` "
                    "compares on one).")
CODE_NOTE = ("Their figures are not one experiment: rerun the older ones, or compare within "
             "one version.")


def _describe(group: pd.DataFrame) -> str:
    """What tells a fingerprint apart, in words: ISA, oneDNN, GPU."""
    first = group.iloc[0]
    parts = [f"{k} {first[k]}" for k in ("isa", "onednn", "gpu") if k in group and
             isinstance(first[k], str)]
    return f" [{', '.join(parts)}]" if parts else ""


def mixed(runs: pd.DataFrame, column: str, what: str, note: str = CODE_NOTE) -> str | None:
    """One sentence naming each value of `column` with the variants and seeds that ran on it,
    when the study's trials hold more than one; None when they agree (or never logged it)."""
    if column not in runs or runs[column].dropna().nunique() < 2:
        return None
    parts = []
    for value, group in runs.dropna(subset=[column]).groupby(column, sort=False):
        who = "; ".join(f"{v} seeds {seeds_text(list(g['seed']))}"
                        for v, g in group.groupby("variant", sort=False))
        extra = _describe(group) if column == "fingerprint" else ""
        parts.append(f"{value}{extra} ({who})")
    return f"The trials ran on {len(parts)} {what}: " + ", ".join(parts) + ". " + note


def warnings(runs: pd.DataFrame) -> list[str]:
    """Every provenance warning of a study's runs."""
    found = [mixed(runs, "code", "versions of the plugin code (ablab.code)"),
             mixed(runs, "fingerprint", "machine fingerprints (ablab.fingerprint)",
                   FINGERPRINT_NOTE)]
    return [w for w in found if w]


def where(runs: pd.DataFrame, clauses: list[str]) -> pd.DataFrame:
    """`--where fingerprint=3fa2c1d0` (or code=..., isa=avx2, onednn=off, variant=...): only
    the trial runs whose column has that value; an unknown column is an error naming the
    known ones."""
    from core.errors import ConfigError

    for clause in clauses:
        key, sep, value = clause.partition("=")
        key = key.strip()
        if not sep or key not in runs.columns or key.startswith(("test_", "val_")):
            known = ", ".join(k for k in ("fingerprint", "code", "isa", "onednn", "gpu",
                                          "variant", "outcome") if k in runs.columns)
            raise ConfigError(f"--where: expected COLUMN=VALUE with COLUMN one of {known} "
                              f"(got {clause!r})")
        runs = runs[runs[key].astype(str) == value.strip()]
    return runs
