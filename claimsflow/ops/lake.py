"""``claimsflow tables``, ``flush`` and ``compact``: the lakehouse tables, read and maintained."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from deltalake.exceptions import DeltaError, TableNotFoundError

from claimsflow.ops.common import AppUrl, AsJson, RunName, run, target_of
from claimsflow.ops.render import emit_json, fail, table
from claimsflow.ops.target import DeployedApp, Target
from shared.lake.reader import read_delta
from shared.storage import LakeLocation, StorageFactory

tables_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Read the lakehouse's Delta tables."
)
flush_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Move staged rows into the Delta tables."
)
compact_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Optimize, vacuum and checkpoint the Delta tables.",
)


@tables_app.command("show")
def show(
    name: Annotated[
        str, typer.Argument(help="A table: xact_events, xact_attachments, xact_attachments_failed.")
    ],
    where: Annotated[
        str | None,
        typer.Option("--where", help="A SQL condition on the columns, e.g. \"status = 'exhausted'\"."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 20,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show rows of one Delta table, optionally filtered."""
    from shared.runtime import LAKE_TABLES

    if name not in LAKE_TABLES.names:
        raise fail(f"unknown table {name!r}; the tables are {', '.join(LAKE_TABLES.names)}")
    with target_of(run_name, app_url).activated() as settings:
        root = LakeLocation.parse(settings.lake_tables_uri)
        options = StorageFactory(settings).delta_storage_options(root)
        try:
            rows = read_delta(root.child(name).uri, options, where=where, limit=limit)
        except TableNotFoundError:
            raise fail(f"{name} has no rows yet (the table is created by the first flush)") from None
        except DeltaError as exc:  # the query engine refused the condition
            raise fail(f"--where is not a condition on {name}'s columns: {exc}") from None
    if as_json:
        emit_json(rows.to_dicts())
        return
    shown = [c for c in rows.columns if c not in ("raw_json", "description")]
    table(f"{name}: {rows.height} row(s)", shown, rows.select(shown).rows())


def _lake_work(target: Target, route: str) -> list[dict[str, Any]]:
    from shared.ops import compact_now, flush_now
    from shared.runtime import get_runtime

    if isinstance(target, DeployedApp):
        return list(run(target.call(route)))
    with target.activated():
        return flush_now(get_runtime()) if route == "ops/flush" else compact_now(get_runtime())


def _lake_report(results: list[dict[str, Any]], as_json: bool, title: str, columns: list[str]) -> None:
    if as_json:
        emit_json(results)
    else:
        table(title, ["table", *columns], ([r["table"], *(r.get(c) for c in columns)] for r in results))
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


@flush_app.command("now")
def flush_now_command(run_name: RunName = None, app_url: AppUrl = None, as_json: AsJson = False) -> None:
    """Flush staged rows into Delta now, instead of waiting for the 15-second timer."""
    results = _lake_work(target_of(run_name, app_url), "ops/flush")
    _lake_report(results, as_json, "flush", ["status", "merged", "inserted", "updated", "kept", "error"])


@compact_app.command("now")
def compact_now_command(run_name: RunName = None, app_url: AppUrl = None, as_json: AsJson = False) -> None:
    """Compact every Delta table now (optimize, vacuum, checkpoint), instead of waiting for the hour."""
    results = _lake_work(target_of(run_name, app_url), "ops/compact")
    _lake_report(
        results, as_json, "compaction", ["status", "files_removed", "files_added", "files_vacuumed", "error"]
    )
