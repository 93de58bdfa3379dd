"""Options every ops command shares, with help written for someone who never saw the code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer

from claimsflow.ops.render import fail
from claimsflow.ops.target import APP_KEY_VARIABLE, Target, TargetError, resolve_target

T = TypeVar("T")

RunName = Annotated[
    str | None,
    typer.Option(
        "--run-name",
        help="Work on a local run: the name given to `claimsflow run --run-name`. Storage is "
        "AzureWebJobsStorage, or the Azurite that run left running.",
        envvar="CLAIMSFLOW_RUN_NAME",
    ),
]
AppUrl = Annotated[
    str | None,
    typer.Option(
        "--app-url",
        help=f"Work on a deployed app (https://<app>.azurewebsites.net). Its master key must be in "
        f"{APP_KEY_VARIABLE}; the state account and lake are the ones named in your environment.",
        envvar="CLAIMSFLOW_APP_URL",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
Since = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only what was created since then: an ISO time (2026-11-23T09:00) or an age (30m, 6h, 2d). "
        "For instances of a local run an age counts back from the run's virtual clock.",
    ),
]


def target_of(run_name: str | None, app_url: str | None) -> Target:
    if not logging.getLogger().handlers:  # the app's own warnings are not the command's output
        logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        return resolve_target(run_name, app_url)
    except TargetError as exc:
        raise fail(str(exc)) from None


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except TargetError as exc:
        raise fail(str(exc)) from None


def parse_since(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """An ISO time (UTC when no zone is given) or an age like ``90s``, ``30m``, ``6h``, ``2d``."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip()
    if value[:-1].isdigit() and value[-1:] in units:
        return (now or datetime.now(UTC)) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither an ISO time nor an age like 30m, 6h or 2d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
