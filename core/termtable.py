"""Tables on a terminal of any width, in a pipe or a CI log: a table when it fits, else one
"card" per row (its first cell as a heading, then one `column: value` line per cell), so the
cells people came for (a variant, its interval, its verdict) are never cut to `…`."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
          boxed: bool = True, right: Sequence[int] = ()) -> Table:
    """A rich table whose cells fold rather than shrink to an ellipsis."""
    t = Table(title=title, box=box.HEAVY_HEAD if boxed else None, pad_edge=boxed)
    for i, h in enumerate(headers):
        t.add_column(h, overflow="fold", justify="right" if i in right else "left")
    for row in rows:
        t.add_row(*(Text(str(c)) for c in row))
    return t


def fits(console: Console, renderable: Table) -> bool:
    """Whether its natural (unwrapped) width fits the console."""
    wide = console.options.update_width(100_000)
    return console.measure(renderable, options=wide).maximum <= console.width


def show(console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]],
         title: str | None = None, right: Sequence[int] = ()) -> None:
    """Print a table if its natural width fits the console, else a card per row."""
    t = table(headers, rows, title, right=right)
    if fits(console, t):
        console.print(t)
        return
    if title:
        console.print(Text(title, style="bold"))
    for row in rows:
        console.print(Text(str(row[0]), style="bold"))
        for h, cell in zip(headers[1:], row[1:], strict=True):
            if str(cell):  # an empty field (no caveat, a decided row's planning) is left out
                console.print(Text.assemble("  ", (f"{h}: ", "dim"), str(cell)))
