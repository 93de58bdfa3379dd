"""Dead letters: typed records of what could not be processed, kept for review and replay.

Ids are deterministic (stage + key, or a hash of a raw body), so a redelivered batch or a
replayed activity never doubles a record. Large payloads go to a blob beside the table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import ContainerClient

from shared.errors import MAX_ERROR_CHARS
from shared.redact import redact_text
from shared.state.sharding import partition_key, safe_row_key, shard_of

INLINE_PAYLOAD_CHARS = 30_000  # a Table string property holds 32K UTF-16 characters


class DeadLetterStatus(StrEnum):
    OPEN = "open"
    REPLAYED = "replayed"
    RESOLVED = "resolved"


class DeadLetterReason(StrEnum):
    INVALID = "invalid"  # the body is not a valid event
    PERMANENT = "permanent"  # a permanent error on the first or a later attempt
    EXHAUSTED = "exhausted"  # every retry failed


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
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class DeadLetterStore:
    def __init__(self, table: TableClient, container: ContainerClient, *, shards: int) -> None:
        self._table = table
        self._container = container
        self._shards = shards

    def _keys(self, letter_id: str) -> tuple[str, str]:
        return partition_key("dl", shard_of(letter_id, self._shards)), safe_row_key(letter_id)

    def record(self, letter: DeadLetter) -> bool:
        """Store the record once; ``False`` when a record with this id already exists."""
        partition, row = self._keys(letter.id)
        payload = letter.payload if isinstance(letter.payload, str) else json.dumps(letter.payload)
        payload_is_raw = isinstance(letter.payload, str)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
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
            "created_at": letter.created_at,
            "payload_is_raw": payload_is_raw,
        }
        if len(payload) <= INLINE_PAYLOAD_CHARS:
            entity["payload"] = payload
        else:
            blob_name = f"{row}.json"
            try:
                self._container.upload_blob(blob_name, payload.encode("utf-8"), overwrite=True)
            except ResourceNotFoundError:
                self._container.create_container()
                self._container.upload_blob(blob_name, payload.encode("utf-8"), overwrite=True)
            entity["payload_blob"] = blob_name
        try:
            self._table.create_entity({k: v for k, v in entity.items() if v is not None})
        except ResourceExistsError:
            return False
        return True

    def get(self, letter_id: str) -> DeadLetter | None:
        partition, row = self._keys(letter_id)
        try:
            entity = self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None
        return self._from_entity(entity)

    def list(self, *, status: DeadLetterStatus | None = None, limit: int = 1000) -> list[DeadLetter]:
        query = "status eq @status" if status else None
        entities = (
            self._table.query_entities(query, parameters={"status": status.value})
            if query and status
            else self._table.list_entities()
        )
        letters: list[DeadLetter] = []
        for entity in entities:
            letters.append(self._from_entity(entity))
            if len(letters) >= limit:
                break
        return letters

    def set_status(self, letter_id: str, status: DeadLetterStatus) -> None:
        partition, row = self._keys(letter_id)
        self._table.update_entity(
            {"PartitionKey": partition, "RowKey": row, "status": status.value}, mode=UpdateMode.MERGE
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
        )
