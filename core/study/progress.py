"""The live display of a running study: a progress bar with failures and ETA, and a table the
strategy supplies (running means per variant, or the best trial so far)."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Display:
    def __init__(self, title: str, total: int, console: Console):
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.task = self.progress.add_task(title, total=total, status="")
        self.console = console
        self.live = Live(Group(self.progress), console=console, refresh_per_second=2,
                         transient=False)

    def __enter__(self) -> Display:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)
        self.console.print()  # the live display's last frame ends without a newline

    def update(self, done: int, failed: int, extra: RenderableType | None,
               total: int | None = None) -> None:
        self.progress.update(self.task, completed=done, total=total,
                             status=f"[red]{failed} failed[/]" if failed else "")
        self.live.update(Group(self.progress, extra) if extra is not None
                         else Group(self.progress))
