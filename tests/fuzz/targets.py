"""Fuzz targets (atheris, coverage-guided): each takes the fuzzer's bytes and raises only when an
invariant of issue 9 breaks. An exception of a type the code is allowed to raise (a classified
refusal, an unstageable row) is an answer, not a finding; any other exception is a finding.

* ``body``: any bytes as an Event Hub body: the parser never raises; an invalid body keeps text a
  dead letter can store; a valid event's row is stageable or refused with a reason.
* ``event``: an XACT-shaped document built from the bytes, with secrets planted in its URLs: no
  secret reaches the row; every path is safe and unique.
* ``url``: any text as an attachment URL: the policy only refuses PERMANENT, ids and names never
  raise, an allowed URL is https on an allowed host without user info or ``..``.
* ``source``: a source's answer (encoding header and bytes, presigned dates): only classified
  refusals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports(include=["shared"]):
    from shared.bodies import InvalidBody
    from shared.errors import ClassifiedError, ErrorCategory
    from shared.ids import media_id
    from shared.lake.staging import (
        MAX_ENTITY_BYTES,
        MAX_PROPERTY_BYTES,
        StagingTable,
        UnstageableRow,
        entity_size,
    )
    from shared.redact import public_url, redact_json_text, redact_text, redact_url, strip_query
    from shared.transfer.attachment import check_not_expired
    from shared.transfer.encodings import DECODED_PIECE, check_not_markup, decoder_for
    from shared.transfer.filetypes import file_name_of
    from shared.transfer.stores import checked_path
    from shared.transfer.urls import UrlPolicy
    from shared.xact.events import XactEvent, parse_xact_body
    from shared.xact.paths import AttachmentTarget, attachment_targets
    from shared.xact.rows import event_row
    from shared.xact.tables import XACT_EVENTS

from azure.data.tables import TableServiceClient

from shared.pool import IoPool
from tests.hostile import S3_HOST, SIGNATURE_NAMES, body, issue_lines

CREATED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = UrlPolicy.of((S3_HOST,))
ENCODER = StagingTable(
    TableServiceClient.from_connection_string("UseDevelopmentStorage=true"), IoPool(1), table_name="unused"
)
SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class Finding(AssertionError):
    """An invariant of issue 9 does not hold for this input."""


def _check_row(event: XactEvent) -> dict[str, object] | None:
    row = event_row(event, created_at=CREATED)
    try:
        entity = ENCODER.encode(XACT_EVENTS, row)
    except UnstageableRow:
        return None
    if entity_size(entity) > MAX_ENTITY_BYTES:
        raise Finding("an encoded row is over the entity limit")
    for value in entity.values():
        if isinstance(value, str):
            value.encode("utf-8")  # Delta (Arrow) will take it
            if len(value.encode("utf-16-le")) > MAX_PROPERTY_BYTES:
                raise Finding("an encoded property is over the property limit")
    return row


def fuzz_body(data: bytes) -> None:
    parsed = parse_xact_body(data)
    if isinstance(parsed, InvalidBody):
        parsed.raw.encode("utf-8")
        return
    _check_row(parsed)


def _secret(provider: atheris.FuzzedDataProvider) -> str:
    length = provider.ConsumeIntInRange(8, 20)
    return "".join(
        SECRET_ALPHABET[provider.ConsumeIntInRange(0, len(SECRET_ALPHABET) - 1)] for _ in range(length)
    )


def fuzz_event(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    secrets: list[str] = []
    attachments: list[str] = []
    paths_of: list[str] = []
    for _ in range(provider.ConsumeIntInRange(0, 4)):
        separator = ["&", "&amp;", ";"][provider.ConsumeIntInRange(0, 2)]
        secret = _secret(provider)
        secrets.append(secret)
        name = SIGNATURE_NAMES[provider.ConsumeIntInRange(0, len(SIGNATURE_NAMES) - 1)]
        where = provider.ConsumeIntInRange(0, 2)
        path = provider.ConsumeUnicodeNoSurrogates(30)
        paths_of.append(path)
        query = f"X-Amz-Date=20261122T150405Z{separator}{name}={secret}"
        if where == 0:
            attachments.append(f"https://{S3_HOST}/{path}?{query}")
        elif where == 1:
            attachments.append(f"https://{S3_HOST}/{path}#{name}={secret}")
        else:
            attachments.append(f"https://user:{secret}@{S3_HOST}/{path}")
    document = {
        "type": provider.ConsumeUnicodeNoSurrogates(40) or "verisk.claims.property.xn.documentsReceived",
        "utcDateTime": "2026-11-22T15:04:05Z",
        "traceId": provider.ConsumeUnicode(60) or "t",
        "data": {
            "assignmentId": provider.ConsumeUnicode(30),
            "estimateVersion": provider.ConsumeUnicode(10),
            "attachments": attachments,
            "note": f"see {attachments[0]}" if attachments else "",
        },
    }
    as_text = provider.ConsumeBool()
    raw = json.dumps(
        {**document, "data": json.dumps(document["data"])} if as_text else document,
        ensure_ascii=provider.ConsumeBool(),
    )
    event = parse_xact_body(raw)
    if not isinstance(event, XactEvent):
        return
    row = _check_row(event)
    if row is not None:
        stored = json.dumps({k: v for k, v in row.items() if isinstance(v, str)})
        # what the fuzzer wrote outside the secrets' places may spell one by chance
        elsewhere = json.dumps({**document, "data": {**document["data"], "attachments": paths_of}})
        for secret in secrets:
            if secret in stored and secret not in elsewhere:
                raise Finding(f"a secret reached the xact_events row: {secret}")
    pairs = list({media_id(event.trace_id, url): url for url in event.attachments}.items())
    targets = attachment_targets(
        status_subtype=event.status_subtype,
        assignment_id=event.assignment_id or "A",
        trace_id=event.trace_id,
        estimate_version=event.estimate_version,
        attachments=pairs,
    )
    paths = [t.blob_path for t in targets.values() if isinstance(t, AttachmentTarget)]
    if len({p.casefold() for p in paths}) != len(paths):
        raise Finding("two attachments of one event share a path")
    for path in paths:
        if checked_path(path) != path:
            raise Finding(f"an unsafe path: {path!r}")


def fuzz_url(data: bytes) -> None:
    url = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(300)  # what the parser lets through
    for text in (redact_url(url), public_url(url), strip_query(url), redact_text(url)):
        if not isinstance(text, str):
            raise Finding("redaction did not return text")
    media_id("t", url)
    file_name_of(url)
    try:
        POLICY.check(url)
    except ClassifiedError as exc:
        if exc.failure.category is not ErrorCategory.PERMANENT:
            raise Finding("the URL policy refused with another category") from exc
        return
    if not url.startswith("https://") or "@" in url.split("/")[2] or ".." in url.split("?")[0].split("/"):
        raise Finding(f"the URL policy allowed {url!r}")


def fuzz_source(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    header = provider.ConsumeUnicode(20)
    date = provider.ConsumeUnicode(20)
    expires = provider.ConsumeUnicode(30)
    answer = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 4096))
    try:
        check_not_expired(f"https://{S3_HOST}/a.pdf?X-Amz-Date={date}&X-Amz-Expires={expires}", NOW)
    except ClassifiedError as exc:
        if exc.failure.category is not ErrorCategory.PERMANENT:
            raise Finding("an expired or impossible presigned URL is not PERMANENT") from exc
    try:
        decoder = decoder_for(header)
        check_not_markup(answer, "pdf")
        if decoder is not None:
            decoded = 0
            for piece in (*decoder.feed(answer), *decoder.finish()):
                if len(piece) > DECODED_PIECE:
                    raise Finding("one decoding step made more than a piece")
                decoded += len(piece)
    except ClassifiedError:
        return
    redact_json_text(answer.decode("utf-8", errors="replace"))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "body": fuzz_body,
    "event": fuzz_event,
    "url": fuzz_url,
    "source": fuzz_source,
}


def seeds(target: str) -> list[bytes]:
    """Starting inputs: the issue's hostile lines and a few well-formed ones."""
    if target == "body":
        lines = issue_lines(lambda path, size=4096: f"https://{S3_HOST}{path}?X-Amz-Signature=s&size={size}")
        return [line if isinstance(line, bytes) else line.encode() for line in lines.values()] + [
            body("t-1", [f"https://{S3_HOST}/a/b.pdf?X-Amz-Signature=abc"]).encode()
        ]
    if target == "url":
        return [
            f"https://{S3_HOST}/a/../b.pdf".encode(),
            f"https://u:p@{S3_HOST}/a.pdf?sig=x#access_token=y".encode(),
            b"https://[::1/x.pdf",
            b"http://169.254.169.254/latest/meta-data",
        ]
    return [b"\x00" * 64, bytes(range(256))]
