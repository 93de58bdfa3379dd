"""Output for people (rich tables, progress on a terminal) and for scripts (one JSON document)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


def console() -> Console:
    """Made per use, so the terminal's current width applies."""
    return Console()


def errors() -> Console:
    return Console(stderr=True)


def emit_json(data: Any) -> None:
    """One JSON document on stdout (lists are arrays of objects)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*("" if value is None else str(value) for value in row))
    out = console()
    if view.row_count:
        out.print(view)
    else:
        out.print(f"{title}: [dim]nothing found[/]")


def fields(title: str, values: dict[str, Any]) -> None:
    view = Table(title=title, title_justify="left", show_header=False)
    view.add_column("field", style="bold")
    view.add_column("value", overflow="fold")
    for key, value in values.items():
        view.add_row(key, "" if value is None else str(value))
    console().print(view)


def progress(enabled: bool) -> Progress:
    """A progress display on stderr, shown only on a terminal (scripts and --json see nothing)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors(),
        disable=not (enabled and sys.stderr.isatty()),
        transient=True,
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    errors().print(f"[red]{message}[/]")
    return typer.Exit(code)
