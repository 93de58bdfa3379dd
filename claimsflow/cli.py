"""The ``claimsflow`` command line."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="claimsflow: claims events into the lakehouse, and the tools to operate it",
)


@app.command()
def run(
    xact_events: Annotated[
        Path | None, typer.Option(help="JSON Lines file, one Event Hub message body per line")
    ] = None,
    claimx_events: Annotated[
        Path | None, typer.Option(help="JSON Lines file of ClaimX webhook bodies, one per line")
    ] = None,
    world: Annotated[
        Path | None, typer.Option(help="JSON world file: simulator faults, ClaimX API answers (claimx)")
    ] = None,
    generate: Annotated[
        int | None, typer.Option(help="Generate N realistic sample events when no event file is given")
    ] = None,
    redeliver: Annotated[
        bool, typer.Option(help="Deliver every batch twice, the second time after a restart of the host")
    ] = False,
    run_name: Annotated[
        str | None,
        typer.Option(
            help="Name the run (lower-case letters and digits): its task hub, tables and files are "
            "named after it, so ops commands find them, and the same command with the same name "
            "resumes a run that was stopped or killed. Default: a fresh name per run."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the generated traffic (default: random, kept with the run)")
    ] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            help="The run's start time on its virtual clock, e.g. 2026-12-01T09:00:00+00:00 "
            "(default: now, kept with the run)",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
        ),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the run report as JSON to this path")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step, not only errors")] = False,
) -> None:
    """Run the pipeline locally: Azurite + local host + simulator, until everything settled."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from claimsflow.azurite import AzuriteError
    from claimsflow.progress import live_progress
    from claimsflow.run import RunError, RunOptions, run_pipeline
    from claimsflow.summary import print_summary
    from shared.config import ConfigError

    if xact_events is None and claimx_events is None and generate is None:
        raise typer.BadParameter("give --xact-events PATH, --claimx-events PATH or --generate N")
    options = RunOptions(
        xact_events=xact_events,
        claimx_events=claimx_events,
        world=json.loads(world.read_text()) if world else None,
        generate=generate,
        redeliver=redeliver,
        run_name=run_name,
        seed=seed,
        start=start if start is None or start.tzinfo else start.replace(tzinfo=UTC),
    )
    try:
        with live_progress():
            result = asyncio.run(run_pipeline(options))
    except (RunError, AzuriteError, ConfigError, OSError) as exc:
        typer.echo(f"claimsflow run could not complete: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    print_summary(result)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2, default=str))
    if not result["invariants"]["ok"]:
        raise typer.Exit(code=1)


@app.command("claimx-backfill")
def claimx_backfill(
    start: Annotated[datetime, typer.Option(help="First ingestion time to read again (ISO, UTC if no zone)")],
    end: Annotated[datetime, typer.Option(help="Last ingestion time to read again (ISO, UTC if no zone)")],
) -> None:
    """Ask the ClaimX poller to read the Eventhouse rows ingested in [START, END] again.

    The request is stored beside the poller's cursor in the state account (``AzureWebJobsStorage``
    and ``TASKHUB_NAME`` of the app); the next polls hand the rows on through the normal ingest,
    whose dedup latch drops the events already processed.
    """
    from shared.claimx.poller import CursorStore, request_backfill
    from shared.clock import utc_now
    from shared.config import ConfigError, get_settings
    from shared.storage import StorageFactory

    try:
        settings = get_settings()
    except ConfigError as exc:
        typer.echo(f"claimsflow claimx-backfill: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    container = (
        StorageFactory(settings).blob_service().get_container_client(settings.state_container("pollers"))
    )
    first, last = (value if value.tzinfo else value.replace(tzinfo=UTC) for value in (start, end))
    try:
        name = request_backfill(CursorStore(container), first, last, now=utc_now())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"backfill requested: {name} ({first.isoformat()} .. {last.isoformat()})")


def _register_ops_commands() -> None:
    from claimsflow.ops import config, dlq, instances, lake, trace

    app.add_typer(instances.app, name="instances")
    app.add_typer(dlq.app, name="dlq")
    app.add_typer(lake.tables_app, name="tables")
    app.add_typer(lake.flush_app, name="flush")
    app.add_typer(lake.compact_app, name="compact")
    app.add_typer(config.app, name="config")
    app.command("trace")(trace.trace)


_register_ops_commands()


@app.command("version")
def version() -> None:
    """Print the claimsflow version."""
    from importlib.metadata import version as package_version

    typer.echo(package_version("claimsflow"))


def main() -> None:
    app()
