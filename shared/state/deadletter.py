"""Dead letters: typed records of what could not be processed, kept for review and replay.

Ids are deterministic (stage + key, or a hash of a raw body), so a redelivered batch or a
replayed activity never doubles a record. Large payloads go to a blob beside the table; when the
table cannot be written at all, the whole record goes to a blob (:meth:`DeadLetterStore.record_in_blob`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import ContainerClient

from shared import metrics
from shared.clock import utc_now
from shared.errors import MAX_ERROR_CHARS, Failure
from shared.redact import redact_text
from shared.retry import Outcome, failed, ok
from shared.state.sharding import partition_key, safe_row_key, shard_of

INLINE_PAYLOAD_UNITS = 30_000  # a Table string property holds 32K UTF-16 code units
UNRECORDED_PREFIX = "unrecorded/"  # records only the blob fallback could keep


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"
    RESOLVED = "resolved"


class DeadLetterReason(StrEnum):
    INVALID = "invalid"  # the body is not a valid event
    PERMANENT = "permanent"  # a permanent error on the first or a later attempt
    EXHAUSTED = "exhausted"  # every retry failed
    POISON = "poison"  # a body that failed its batch again and again, and alone once isolated


def raw_body_id(stage: str, raw: str) -> str:
    return f"{stage}:{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    domain: str
    stage: str
    reason: DeadLetterReason
    category: str
    error: str
    retry_count: int
    payload: dict[str, Any] | str  # the original task, or the raw body
    trace_id: str | None = None
    media_id: str | None = None
    instance_id: str | None = None
    status: DeadLetterStatus = DeadLetterStatus.OPEN
    created_at: datetime = field(default_factory=utc_now)
    replays: int = 0  # how many times it was replayed (the generation of the latest replay)
    replay_instance_id: str | None = None  # the orchestration the latest replay started
    updated_at: datetime | None = None  # the latest status change


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which records a listing, a bulk replay or a purge takes (every field optional)."""

    domain: str | None = None
    stage: str | None = None
    reason: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> tuple[str | None, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for name in ("domain", "stage", "reason", "status"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} eq @{name}")
                params[name] = str(value)
        if self.since is not None:
            clauses.append("created_at ge @since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("created_at lt @until")
            params["until"] = self.until
        return (" and ".join(clauses) or None), params

    def matches(self, letter: DeadLetter) -> bool:
        """The same test as :meth:`query`, for records read from the blob fallback."""
        for name in ("domain", "stage", "reason", "status"):
            value = getattr(self, name)
            if value is not None and str(getattr(letter, name)) != str(value):
                return False
        if self.since is not None and letter.created_at < self.since:
            return False
        return self.until is None or letter.created_at < self.until


def _utf16_units(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le", errors="surrogatepass")) // 2


class DeadLetterStore:
    def __init__(self, table: TableClient, container: ContainerClient, *, shards: int) -> None:
        self._table = table
        self._container = container
        self._shards = shards

    def _keys(self, letter_id: str) -> tuple[str, str]:
        return partition_key("dl", shard_of(letter_id, self._shards)), safe_row_key(letter_id)

    def record(self, letter: DeadLetter, *, replay_generation: int = 0) -> bool:
        """Store the record once; ``False`` when a record with this id already exists.

        A failure of a replay (``replay_generation`` > 0) reopens the record it replayed, with the
        new error: the record is the one place on-call looks, so a replay that failed again must
        show there. Any other repeat (a redelivery, a replayed activity) changes nothing."""
        partition, row = self._keys(letter.id)
        payload = letter.payload if isinstance(letter.payload, str) else json.dumps(letter.payload)
        entity: dict[str, Any] = {"PartitionKey": partition, "RowKey": row, **self._fields(letter)}
        entity["created_at"] = letter.created_at
        if len(payload) <= INLINE_PAYLOAD_UNITS and _utf16_units(payload) <= INLINE_PAYLOAD_UNITS:
            entity["payload"] = payload
        else:
            entity["payload_blob"] = f"{row}.json"
            self._upload(entity["payload_blob"], payload)
        present = {k: v for k, v in entity.items() if v is not None}
        try:
            self._table.create_entity(present)
        except ResourceExistsError:
            if not self._reopen(partition, row, present, replay_generation):
                return False
        except ResourceNotFoundError:  # the first record: the table is created on demand
            with suppress(ResourceExistsError):
                self._table.create_table()
            try:
                self._table.create_entity(present)
            except ResourceExistsError:
                return False
        self._count(letter)
        return True

    def _reopen(self, partition: str, row: str, entity: dict[str, Any], generation: int) -> bool:
        if generation <= 0:
            return False
        current = self._table.get_entity(partition, row)
        if current.get("status") != DeadLetterStatus.REPLAYED or int(current.get("replays", 0)) != generation:
            return False  # already reopened by this replay, or replayed again since
        kept = ("created_at", "status", "replays", "replay_instance_id")
        update = {k: v for k, v in entity.items() if k not in kept}
        update |= {"status": DeadLetterStatus.OPEN.value, "updated_at": utc_now()}
        try:
            self._table.update_entity(
                update,
                mode=UpdateMode.MERGE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return False  # a concurrent write of the same failure won
        return True

    @staticmethod
    def _count(letter: DeadLetter) -> None:
        metrics.DEAD_LETTERS.add(domain=letter.domain, stage=letter.stage, reason=letter.reason.value)

    def record_in_blob(self, letter: DeadLetter) -> None:
        """The fallback when the table cannot be written: the whole record as one blob. The Blob
        service is another path than the Table service; :meth:`list` and :meth:`get` read these
        too, and a status change moves the record into the table."""
        document = {
            **self._fields(letter),
            "payload": letter.payload,
            "created_at": letter.created_at.isoformat(),
        }
        self._upload(self._unrecorded_name(letter.id), json.dumps(document))
        self._count(letter)

    def get(self, letter_id: str) -> DeadLetter | None:
        partition, row = self._keys(letter_id)
        try:
            return self._from_entity(self._table.get_entity(partition, row))
        except ResourceNotFoundError:
            pass
        try:
            blob = self._container.download_blob(self._unrecorded_name(letter_id)).readall()
        except ResourceNotFoundError:
            return None
        return self._from_document(json.loads(blob))

    def list(self, *, status: DeadLetterStatus | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Records in the table, then those only the blob fallback holds."""
        letters: list[DeadLetter] = []
        for letter in self.iter(DeadLetterFilter(status=status)):
            letters.append(letter)
            if len(letters) >= limit:
                break
        return letters

    def iter(self, where: DeadLetterFilter = DeadLetterFilter()) -> Iterator[DeadLetter]:
        """Every matching record: the table's (it pages for us), then the blob fallback's."""
        text, params = where.query()
        entities = (
            self._table.query_entities(text, parameters=params) if text else self._table.list_entities()
        )
        known: set[str] = set()
        try:
            for entity in entities:
                letter = self._from_entity(entity)
                known.add(letter.id)
                yield letter
        except ResourceNotFoundError:  # no table yet: nothing was recorded there
            pass
        for letter in self._unrecorded():
            if letter.id not in known and where.matches(letter):
                yield letter

    def set_status(self, letter_id: str, status: DeadLetterStatus, **fields: Any) -> None:
        """Change the status (and the replay fields: ``replays``, ``replay_instance_id``)."""
        partition, row = self._keys(letter_id)
        update = {"PartitionKey": partition, "RowKey": row, "status": status.value, "updated_at": utc_now()}
        try:
            self._table.update_entity(update | fields, mode=UpdateMode.MERGE)
            return
        except ResourceNotFoundError:
            letter = self.get(letter_id)
            if letter is None:
                raise
        moved = replace(letter, status=status, **fields)  # only the blob fallback had it: move it over
        self.record(moved)
        with suppress(ResourceNotFoundError):
            self._container.delete_blob(self._unrecorded_name(letter_id))

    def delete(self, letter_id: str) -> bool:
        """Remove a record and its payload blob (wherever it is kept); ``False`` when there was none."""
        partition, row = self._keys(letter_id)
        found = False
        try:
            entity = self._table.get_entity(partition, row)
            if "payload_blob" in entity:
                with suppress(ResourceNotFoundError):
                    self._container.delete_blob(entity["payload_blob"])
            self._table.delete_entity(partition, row)
            found = True
        except ResourceNotFoundError:
            pass
        try:
            self._container.delete_blob(self._unrecorded_name(letter_id))
            found = True
        except ResourceNotFoundError:
            pass
        return found

    # -- encoding -------------------------------------------------------------------------
    def _fields(self, letter: DeadLetter) -> dict[str, Any]:
        return {
            "id": letter.id,
            "domain": letter.domain,
            "stage": letter.stage,
            "reason": letter.reason.value,
            "category": letter.category,
            "error": redact_text(letter.error)[:MAX_ERROR_CHARS],
            "retry_count": letter.retry_count,
            "trace_id": letter.trace_id,
            "media_id": letter.media_id,
            "instance_id": letter.instance_id,
            "status": letter.status.value,
            "payload_is_raw": isinstance(letter.payload, str),
            "replays": letter.replays,
            "replay_instance_id": letter.replay_instance_id,
        }

    def _unrecorded_name(self, letter_id: str) -> str:
        return f"{UNRECORDED_PREFIX}{self._keys(letter_id)[1]}.json"

    def _upload(self, name: str, text: str) -> None:
        try:
            self._container.upload_blob(name, text.encode("utf-8"), overwrite=True)
        except ResourceNotFoundError:
            with suppress(ResourceExistsError):
                self._container.create_container()
            self._container.upload_blob(name, text.encode("utf-8"), overwrite=True)

    def _unrecorded(self) -> Iterator[DeadLetter]:
        try:
            for blob in self._container.list_blobs(name_starts_with=UNRECORDED_PREFIX):
                yield self._from_document(json.loads(self._container.download_blob(blob.name).readall()))
        except ResourceNotFoundError:  # no container yet: nothing was ever put there
            return

    def _from_document(self, document: dict[str, Any]) -> DeadLetter:
        return DeadLetter(
            id=document["id"],
            domain=document["domain"],
            stage=document["stage"],
            reason=DeadLetterReason(document["reason"]),
            category=document["category"],
            error=document["error"],
            retry_count=int(document["retry_count"]),
            payload=document["payload"],
            trace_id=document.get("trace_id"),
            media_id=document.get("media_id"),
            instance_id=document.get("instance_id"),
            status=DeadLetterStatus(document["status"]),
            created_at=datetime.fromisoformat(document["created_at"]),
            replays=int(document.get("replays") or 0),
            replay_instance_id=document.get("replay_instance_id"),
        )

    def _from_entity(self, entity: dict[str, Any]) -> DeadLetter:
        if "payload_blob" in entity:
            text = self._container.download_blob(entity["payload_blob"]).readall().decode("utf-8")
        else:
            text = entity.get("payload", "")
        payload: dict[str, Any] | str = text if entity.get("payload_is_raw") else json.loads(text)
        return DeadLetter(
            id=entity["id"],
            domain=entity["domain"],
            stage=entity["stage"],
            reason=DeadLetterReason(entity["reason"]),
            category=entity["category"],
            error=entity["error"],
            retry_count=int(entity["retry_count"]),
            payload=payload,
            trace_id=entity.get("trace_id"),
            media_id=entity.get("media_id"),
            instance_id=entity.get("instance_id"),
            status=DeadLetterStatus(entity["status"]),
            created_at=entity["created_at"],
            replays=int(entity.get("replays") or 0),
            replay_instance_id=entity.get("replay_instance_id"),
            updated_at=entity.get("updated_at"),
        )


def record_step(store: DeadLetterStore, letter: DeadLetter, *, replay_generation: int = 0) -> Outcome:
    """A record activity's body: the dead letter into the table, a failure returned as data (so the
    orchestrator retries it by class, docs/architecture.md section 5)."""
    try:
        store.record(letter, replay_generation=replay_generation)
    except Exception as exc:
        return failed(Failure.from_exception(exc))
    return ok()


def keep_in_blob(store: DeadLetterStore, letter: DeadLetter, because: Failure) -> Outcome:
    """The fallback activity's body, once the record activity failed for good: the dead letter
    through the Blob service, saying why the tables do not have it."""
    letter = replace(letter, error=f"{letter.error} [not recorded in the tables: {because.message}]")
    try:
        store.record_in_blob(letter)
    except Exception as exc:
        return failed(Failure.from_exception(exc))
    return ok()
