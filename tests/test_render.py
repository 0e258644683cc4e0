"""What people read on a terminal: at 80 columns, in a pipe or a CI log, the report's and the
run summary's variant names, intervals and verdicts are whole (a card per row when the table
does not fit), and every view takes its columns from one list."""

import re
from collections import Counter

import numpy as np
from rich.console import Console

from core.ablation.analysis import comparison_table, variant_table
from core.ablation.render import (
    COMPARISON_COLUMNS,
    HTML,
    PLAIN,
    VARIANT_COLUMNS,
    cells,
    for_csv,
    markdown,
    print_report,
    with_delta,
)
from core.ablation.study import StudyResult, print_summary
from tests.test_stats import BASE, WORSE, runs_frame

NAMES = ("augment=none", "augment=moderate_with_a_long_name", "augment=extreme")


def tables():
    seeds = list(range(6))
    close = BASE + np.array([0.01, -0.004, 0.006, 0.0, 0.012, -0.002])
    runs = runs_frame({NAMES[0]: (seeds, BASE), NAMES[1]: (seeds, close),
                       NAMES[2]: (seeds, WORSE)}, NAMES[0])
    return (variant_table(runs, "test_accuracy"),
            comparison_table(runs, "test_accuracy", "maximize", delta=0.01))


def printed(width: int, fn, *args) -> str:
    console = Console(width=width, record=True, color_system=None)
    fn(console, *args)
    return console.export_text()


def test_the_report_is_whole_at_80_columns(tmp_path):
    vt, ct = tables()
    for width in (80, 200):
        out = printed(width, lambda c: print_report(c, "study", "test_accuracy", vt, ct, [],
                                                    tmp_path, False, 0.01))
        assert "…" not in out
        flat = " ".join(out.split())
        for r in ct.itertuples():
            assert r.variant in flat and r.verdict in flat
            ci = PLAIN.ci(r.diff_ci_low, r.diff_ci_high)
            assert "nan" not in ci and ci in flat, (width, ci)
        for r in vt.itertuples():
            assert PLAIN.ci(r.ci95_low, r.ci95_high) in flat
    assert "worse" in " ".join(ct["verdict"])


def test_the_run_summary_is_whole_at_80_columns():
    vt, _ = tables()
    res = StudyResult("study", 18, 0, Counter(finished=18, ok=18), vt)
    out = printed(80, lambda c: print_summary(res, "test_accuracy", c))
    assert "…" not in out
    flat = " ".join(out.split())
    for r in vt.itertuples():
        assert r.variant in flat and PLAIN.ci(r.ci95_low, r.ci95_high) in flat
        assert f"{r.mean:.4f} ± {r.std:.4f}" in flat


def test_one_column_list_drives_markdown_html_and_csv():
    vt, ct = tables()
    md = markdown(VARIANT_COLUMNS, vt)
    assert md[0] == "| " + " | ".join(c.header for c in VARIANT_COLUMNS) + " |"
    assert len(md) == 2 + len(vt)
    html_cells = cells(COMPARISON_COLUMNS, with_delta(ct, 0.01), HTML)
    plain_cells = cells(COMPARISON_COLUMNS, with_delta(ct, 0.01), PLAIN)
    assert [len(r) for r in html_cells] == [len(COMPARISON_COLUMNS)] * len(ct)
    assert html_cells[0][1] == f"<b>{plain_cells[0][1]}</b>"  # the verdict, emphasized
    csv = for_csv(VARIANT_COLUMNS, vt)
    lead = [k for c in VARIANT_COLUMNS for k in c.fields]
    assert list(csv.columns[:len(lead)]) == lead and set(csv.columns) == set(vt.columns)
    assert np.isfinite(csv["mean"]).all()


def test_a_wide_table_fits_as_a_table_and_a_narrow_one_becomes_cards():
    from core.termtable import show

    rows = [("a", "1"), ("b", "2")]
    wide = printed(80, lambda c: show(c, ("name", "value"), rows, "t"))
    assert "┃" in wide
    long = [("x" * 50, "[0.1234, 0.5678]", "inconclusive")]
    cards = printed(40, lambda c: show(c, ("variant", "interval", "verdict"), long, "t"))
    assert "┃" not in cards and re.search(r"interval: \[0\.1234, 0\.5678\]", cards)
