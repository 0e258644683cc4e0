"""`ablab data`: the data card of one experiment, printed and written (data.html, csv, png)."""

from __future__ import annotations

from typing import Any


def show_card(experiment: str, sets: list[str] | None, augment: str | None, out: str | None,
              console: Any) -> None:
    from pathlib import Path

    from core.ablation.html import data_page
    from core.config import load_experiment
    from core.data import card as data_card
    from core.paths import reports_dir
    from core.schema import AugmentConfig
    from core.termtable import show

    exp = load_experiment(experiment, sets)
    names = [a.strip() for a in augment.split(",")] if augment else list(dict.fromkeys(
        [exp.augment.strength, "moderate", "extreme"]))
    from core.augment import POLICIES

    for n in names:
        POLICIES.check(n)
    policies = {n: exp.augment if n == exp.augment.strength else AugmentConfig(strength=n)
                for n in names}
    card, ds = data_card.build(exp.data, console)
    folder = Path(out) if out else reports_dir() / f"data-{exp.name}"
    plots = data_card.write(card, ds, folder, policies)
    (folder / "data.html").write_text(data_page(card, plots))
    counts = card.counts.reset_index()
    show(console, [str(c) for c in counts.columns],
         [[str(v) for v in row] for row in counts.to_numpy()],
         f"{card.name}: images per class and split", right=range(1, len(counts.columns)))
    for line in card.lines():
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"data card: {folder}/data.html (and class_counts.csv, png)")
