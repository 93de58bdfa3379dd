"""``claimsflow dlq``: the dead letters, and their way back in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from claimsflow.ops.common import AppUrl, AsJson, RunName, Since, parse_since, run, target_of
from claimsflow.ops.render import emit_json, fail, fields, progress, table
from claimsflow.ops.target import DeployedApp, LocalRun, Target
from claimsflow.ops.timeline import brief
from shared.redact import redact_text
from shared.state.deadletter import DeadLetter, DeadLetterFilter, DeadLetterStatus

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Dead letters: what could not be processed, why, and replaying it once the cause is fixed.",
)

Domain = Annotated[str | None, typer.Option("--domain", help="xact or claimx.")]
Stage = Annotated[
    str | None,
    typer.Option("--stage", help="Where it failed: xact_ingest (not an event), xact_enrich, xact_transfer."),
]
Reason = Annotated[
    str | None,
    typer.Option("--reason", help="invalid, permanent (no retry helps) or exhausted (retries ran out)."),
]
Status = Annotated[str | None, typer.Option("--status", help="open, replayed or resolved.")]


def letter_object(letter: DeadLetter, *, with_payload: bool = False) -> dict[str, Any]:
    """The JSON shape of a dead letter. The payload (the original task, which may hold a signed URL)
    is shown only on request, with secrets masked; replay reads it from storage itself."""
    data: dict[str, Any] = {
        "id": letter.id,
        "domain": letter.domain,
        "stage": letter.stage,
        "reason": letter.reason.value,
        "category": letter.category,
        "trace_id": letter.trace_id,
        "media_id": letter.media_id,
        "retry_count": letter.retry_count,
        "status": letter.status.value,
        "error": letter.error,
        "instance_id": letter.instance_id,
        "created_at": letter.created_at.isoformat(),
        "replays": letter.replays,
        "replay_instance_id": letter.replay_instance_id,
    }
    if with_payload:
        text = letter.payload if isinstance(letter.payload, str) else json.dumps(letter.payload)
        masked = redact_text(text)
        data["payload"] = masked if isinstance(letter.payload, str) else json.loads(masked)
    return data


def _filter(
    domain: str | None, stage: str | None, reason: str | None, status: str | None, since: str | None
) -> DeadLetterFilter:
    if status is not None and status not in {s.value for s in DeadLetterStatus}:
        raise typer.BadParameter(f"--status must be open, replayed or resolved, not {status!r}")
    return DeadLetterFilter(
        domain=domain, stage=stage, reason=reason, status=status, since=parse_since(since)
    )


def _letters(target: Target, where: DeadLetterFilter) -> list[DeadLetter]:
    from shared.runtime import get_runtime

    with target.activated():
        return list(get_runtime().dead_letters.iter(where))


@app.command("list")
def list_command(
    domain: Domain = None,
    stage: Stage = None,
    reason: Reason = None,
    status: Status = None,
    since: Since = None,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """List dead letters, newest last, filtered as asked."""
    letters = _letters(target_of(run_name, app_url), _filter(domain, stage, reason, status, since))
    letters.sort(key=lambda letter: letter.created_at)
    if as_json:
        emit_json([letter_object(letter) for letter in letters])
        return
    table(
        f"{len(letters)} dead letter(s)",
        ["id", "stage", "reason", "category", "retries", "status", "trace id", "error"],
        (
            [
                dl.id,
                dl.stage,
                dl.reason.value,
                dl.category,
                dl.retry_count,
                dl.status.value,
                dl.trace_id,
                brief(dl.error)[:80],
            ]
            for dl in letters
        ),
    )


@app.command("show")
def show(
    letter_id: Annotated[str, typer.Argument(help="The dead letter's id (see `dlq list`).")],
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show one dead letter in full, with its original task (secrets masked)."""
    from shared.runtime import get_runtime

    with target_of(run_name, app_url).activated():
        letter = get_runtime().dead_letters.get(letter_id)
    if letter is None:
        raise fail(f"no dead letter {letter_id}")
    data = letter_object(letter, with_payload=True)
    if as_json:
        emit_json(data)
        return
    fields(letter_id, {k: json.dumps(v, indent=1) if isinstance(v, dict) else v for k, v in data.items()})


async def replay_local(
    target: LocalRun, ids: list[str], world: dict[str, Any], show: bool
) -> list[dict[str, Any]]:
    """Do what the app's replay route does, then run the started work to its end and flush it."""
    import function_app
    from claimsflow.simulator import AttachmentSimulator
    from local_host import LocalHost, VirtualClock
    from shared.durable import DurableStarter
    from shared.lake.flush import FlushStatus
    from shared.ops import replay_dead_letters
    from shared.runtime import get_runtime

    async with AttachmentSimulator(world) as simulator:
        with target.activated(simulator.url), progress(show) as bar:
            task = bar.add_task("replaying", total=3)
            host = LocalHost(
                function_app.app,
                connection_string=target.connection_string,
                settings_env=target.env(simulator.url),
                clock=VirtualClock(_now()),
            )
            await host.start()
            try:
                runtime = get_runtime()
                results = await replay_dead_letters(
                    ids, runtime=runtime, starter=DurableStarter(host.durable_client())
                )
                bar.advance(task)
                await host.run_until_idle()
                bar.advance(task)
                while True:
                    flushed = runtime.lakehouse.flush_all()
                    if all(r.status is FlushStatus.EMPTY for r in flushed):
                        break
                bar.advance(task)
                answers = []
                for result in results:
                    data = result.to_dict()
                    if result.instance_id:
                        status = await host.get_status(result.instance_id)
                        data["runtime_status"] = status.runtime_status if status else None
                    answers.append(data)
                return answers
            finally:
                await host.stop()
                await get_runtime().aclose()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


@app.command("replay")
def replay(
    letter_ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids to replay.")] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="Replay every open dead letter the filters match.")
    ] = False,
    domain: Domain = None,
    stage: Stage = None,
    reason: Reason = None,
    since: Since = None,
    world: Annotated[
        Path | None,
        typer.Option(
            "--world", help="Local runs: simulator faults while replaying (default: every source answers)."
        ),
    ] = None,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Send dead letters back into the pipeline, once each.

    A body that was not an event goes through ingest again; an event or an attachment starts a new
    orchestration from its original task (retry count 0, marked as a replay). Each record is marked
    `replayed`, so replaying it again starts nothing. On a local run the replay runs to its end and
    its rows are flushed before the command returns."""
    target = target_of(run_name, app_url)
    where = _filter(domain, stage, reason, "open", since)
    if replay_all:
        ids = [letter.id for letter in _letters(target, where)]
    elif letter_ids:
        ids = list(letter_ids)
    else:
        raise fail("name dead letter ids, or give --all (with filters)")
    if isinstance(target, DeployedApp):
        body: dict[str, Any] = {"ids": ids}
        results = run(target.call("ops/deadletters/replay", body))
    else:
        faults = json.loads(world.read_text()) if world else {}
        results = run(replay_local(target, ids, faults, not as_json))
    if as_json:
        emit_json(results)
        return
    table(
        f"{len(results)} replay(s)",
        ["id", "outcome", "instance", "status", "detail"],
        (
            [r["id"], r["outcome"], r.get("instance_id"), r.get("runtime_status"), r.get("detail")]
            for r in results
        ),
    )


@app.command("resolve")
def resolve(
    letter_ids: Annotated[list[str], typer.Argument(help="Dead letter ids to close without replay.")],
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Mark dead letters `resolved`: handled by other means, not to be replayed."""
    from shared.runtime import get_runtime

    results = []
    with target_of(run_name, app_url).activated():
        store = get_runtime().dead_letters
        for letter_id in letter_ids:
            if store.get(letter_id) is None:
                results.append({"id": letter_id, "status": "not_found"})
                continue
            store.set_status(letter_id, DeadLetterStatus.RESOLVED)
            results.append({"id": letter_id, "status": "resolved"})
    if as_json:
        emit_json(results)
    else:
        table("resolved", ["id", "status"], ([r["id"], r["status"]] for r in results))


@app.command("purge")
def purge(
    domain: Domain = None,
    stage: Stage = None,
    reason: Reason = None,
    status: Status = None,
    since: Since = None,
    yes: Annotated[bool, typer.Option("--yes", help="Required: purging cannot be undone.")] = False,
    run_name: RunName = None,
    app_url: AppUrl = None,
    as_json: AsJson = False,
) -> None:
    """Delete the dead letters the filters match (all of them without filters). Needs --yes."""
    from shared.runtime import get_runtime

    if not yes:
        raise fail("purge deletes records for good: add --yes")
    where = _filter(domain, stage, reason, status, since)
    with target_of(run_name, app_url).activated():
        store = get_runtime().dead_letters
        ids = [letter.id for letter in store.iter(where)]
        with progress(not as_json) as bar:
            task = bar.add_task("purging dead letters", total=len(ids))
            deleted = 0
            for letter_id in ids:
                deleted += store.delete(letter_id)
                bar.advance(task)
    if as_json:
        emit_json({"deleted": deleted})
    else:
        typer.echo(f"{deleted} dead letter(s) purged")
