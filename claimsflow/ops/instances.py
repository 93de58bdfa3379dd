"""``claimsflow instances``: orchestration instances through the Durable management API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer

from claimsflow.ops.common import AppUrl, AsJson, RunName, Since, parse_since, run, target_of
from claimsflow.ops.render import emit_json, fail, fields, progress, table
from claimsflow.ops.target import DurableApi, Target
from claimsflow.ops.timeline import Step, timeline

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Orchestration instances: list them, read one's history, restart, terminate or purge.",
)

STATUSES = ("Pending", "Running", "Completed", "Failed", "Terminated", "Suspended", "ContinuedAsNew")


def instance_object(status: dict[str, Any]) -> dict[str, Any]:
    """The JSON shape of an instance (the management API's names, in snake case)."""
    return {
        "instance_id": status.get("instanceId"),
        "name": status.get("name"),
        "runtime_status": status.get("runtimeStatus"),
        "created_at": status.get("createdTime"),
        "last_updated_at": status.get("lastUpdatedTime"),
        "custom_status": status.get("customStatus"),
        "output": status.get("output"),
    }


def normalise_statuses(values: list[str] | None) -> list[str]:
    wanted = []
    for value in values or []:
        for part in value.split(","):
            match = [s for s in STATUSES if s.lower() == part.strip().lower()]
            if not match:
                raise typer.BadParameter(f"unknown status {part!r}; use one of {', '.join(STATUSES)}")
            wanted += match
    return wanted


async def list_instances(
    target: Target,
    *,
    statuses: list[str],
    since: str | None,
    prefix: str | None,
    show_progress: bool,
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with target.durable() as api:
        created_from = parse_since(since, now=api.now)  # an age counts back from the target's clock
        with progress(show_progress) as bar:
            task = bar.add_task("reading instances", total=None)
            async for page in api.pages(statuses=statuses, created_from=created_from, prefix=prefix):
                found += [instance_object(s) for s in page]
                bar.update(task, completed=len(found))
    return found


@app.command("list")
def list_command(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="Only these runtime statuses (repeat or comma-separate): failed, running, ..."
        ),
    ] = None,
    since: Since = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only instance ids starting with this (xact-<event id>).")
    ] = None,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """List orchestration instances, every page of them."""
    target = target_of(run_name, app_url)
    found = run(
        list_instances(
            target,
            statuses=normalise_statuses(status),
            since=since,
            prefix=prefix,
            show_progress=not as_json,
        )
    )
    if as_json:
        emit_json(found)
        return
    table(
        f"{len(found)} instance(s)",
        ["instance id", "name", "status", "created", "last updated"],
        (
            [i["instance_id"], i["name"], i["runtime_status"], i["created_at"], i["last_updated_at"]]
            for i in found
        ),
    )


async def _status(target: Target, instance_id: str, history: bool) -> dict[str, Any] | None:
    async with target.durable() as api:
        return await api.status(instance_id, history=history)


@app.command("show")
def show(
    instance_id: Annotated[str, typer.Argument(help="The instance id (see `instances list`).")],
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show one instance: status, times, custom status and output."""
    status = run(_status(target_of(run_name, app_url), instance_id, history=False))
    if status is None:
        raise fail(f"no instance {instance_id}")
    instance = instance_object(status)
    if as_json:
        emit_json(instance)
        return
    fields(instance_id, {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in instance.items()})


@app.command("history")
def history(
    instance_id: Annotated[str, typer.Argument(help="The instance id (see `instances list`).")],
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Dump the raw history events, one JSON object per line.")
    ] = False,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """What happened in one instance, step by step.

    Each activity attempt with its outcome and error category, each retry timer (set when, due
    when, fired when), sub-orchestrations, and how the instance ended."""
    status = run(_status(target_of(run_name, app_url), instance_id, history=True))
    if status is None:
        raise fail(f"no instance {instance_id}")
    events: list[dict[str, Any]] = status.get("historyEvents") or []
    if jsonl:
        for event in events:
            typer.echo(json.dumps(event, default=str))
        return
    steps = timeline(events)
    if as_json:
        emit_json({"instance": instance_object(status), "timeline": [s.to_dict() for s in steps]})
        return
    table(
        f"{instance_id} ({status.get('runtimeStatus')})",
        ["at", "what", "name", "attempt", "outcome", "category", "detail"],
        (
            [
                s.at[:19].replace("T", " "),
                s.kind,
                s.name or s.instance_id,
                s.attempt,
                s.outcome,
                s.category,
                describe(s),
            ]
            for s in steps
        ),
    )


def describe(step: Step) -> str | None:
    if step.kind == "retry timer" and step.fire_at and step.wait_seconds is not None:
        return f"wait {step.wait_seconds / 60:g} min, due {step.fire_at[11:19]}"
    if step.kind == "timer fired" and step.fire_at:
        return f"was due {step.fire_at[11:19]}"
    return step.detail


async def _each(target: Target, ids: list[str], action: str, reason: str) -> list[dict[str, Any]]:
    results = []
    async with target.durable() as api:
        for instance_id in ids:
            results.append(await _act(api, instance_id, action, reason))
    return results


async def _act(api: DurableApi, instance_id: str, action: str, reason: str) -> dict[str, Any]:
    if action == "restart":
        status, new_id = await api.restart(instance_id)
        return {"instance_id": instance_id, "status": status, "new_instance_id": new_id}
    if action == "terminate":
        return {"instance_id": instance_id, "status": await api.terminate(instance_id, reason)}
    return {"instance_id": instance_id, "purged": await api.purge(instance_id)}


_ANSWERS = {202: "accepted", 404: "not found", 410: "already ended", 400: "refused", 409: "already running"}


def _report(results: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        emit_json(results)
        return
    table(
        title,
        ["instance id", "result"],
        (
            [r["instance_id"], r.get("new_instance_id") or _ANSWERS.get(r.get("status", 0), r.get("purged"))]
            for r in results
        ),
    )


@app.command("restart")
def restart(
    instance_ids: Annotated[list[str], typer.Argument(help="Instance ids to start again from their input.")],
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Start instances again from their original input, under new ids.

    For a dead letter, prefer `claimsflow dlq replay`: it also marks the record."""
    _report(run(_each(target_of(run_name, app_url), instance_ids, "restart", "")), as_json, "restarted")


@app.command("terminate")
def terminate(
    instance_ids: Annotated[list[str], typer.Argument(help="Instance ids to stop.")],
    reason: Annotated[str, typer.Option("--reason", help="Recorded in the history.")] = "terminated by ops",
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Stop running instances now (their history stays)."""
    _report(
        run(_each(target_of(run_name, app_url), instance_ids, "terminate", reason)), as_json, "terminated"
    )


async def _purge_windows(
    target: Target, since: str, until: str | None, slice_hours: float, statuses: list[str], show: bool
) -> tuple[int, datetime, datetime]:
    deleted = 0
    async with target.durable() as api:
        start = parse_since(since, now=api.now)
        end = parse_since(until, now=api.now) or api.now
        assert start is not None
        step = timedelta(hours=slice_hours)
        windows = []
        cursor = start
        while cursor < end:
            windows.append((cursor, min(cursor + step, end)))
            cursor += step
        with progress(show) as bar:
            task = bar.add_task("purging", total=len(windows))
            for low, high in windows:
                deleted += await api.purge_window(low, high, statuses)
                bar.advance(task)
    return deleted, start, end


@app.command("purge")
def purge(
    instance_ids: Annotated[
        list[str] | None, typer.Argument(help="Instance ids to purge (finished ones only).")
    ] = None,
    since: Since = None,
    until: Annotated[
        str | None, typer.Option("--until", help="End of the window (ISO time or age); default now.")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only these statuses; default every finished one (completed, failed, terminated).",
        ),
    ] = None,
    slice_hours: Annotated[
        float,
        typer.Option("--slice-hours", help="Purge the window in slices this long (big purges time out)."),
    ] = 24.0,
    yes: Annotated[bool, typer.Option("--yes", help="Purge without asking.")] = False,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Delete the history of finished instances.

    Either the instances named, or every one created in a time window (--since, --until), purged
    one slice at a time."""
    target = target_of(run_name, app_url)
    if instance_ids:
        _report(run(_each(target, instance_ids, "purge", "")), as_json, "purged")
        return
    if not since:
        raise fail("name instance ids, or give --since for a time window")
    parse_since(since)  # refuse a malformed time before anything is asked or deleted
    statuses = normalise_statuses(status) or ["Completed", "Failed", "Terminated"]
    if not yes and not typer.confirm(f"Purge {'/'.join(statuses)} instances created since {since}?"):
        raise typer.Exit(1)
    deleted, start, end = run(_purge_windows(target, since, until, slice_hours, statuses, not as_json))
    if as_json:
        emit_json({"instances_deleted": deleted, "from": start, "to": end, "statuses": statuses})
    else:
        typer.echo(f"{deleted} instance(s) purged")
