"""The 24-hour dedup latch: an in-memory TTL cache in front of an Azure Table
(docs/architecture.md, section 3).

A claim is a conditional insert in state ``pending``; it becomes ``done`` once the event's row is
staged and its orchestration started. A ``done`` entry younger than the TTL is a duplicate. A
``pending`` entry means an earlier delivery stopped half-way (a crash): the event is processed
again, which is safe because staging and orchestration ids are idempotent. Entries older than
the TTL count as unseen.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from cachetools import TLRUCache

from shared.pool import IoPool
from shared.state.sharding import partition_key, safe_row_key, shard_of

MAX_BATCH = 100  # Azure Tables transaction limit


def _until_stored_expiry(_key: str, expires: float, _now: float) -> float:
    return expires


class LatchState(StrEnum):
    PENDING = "pending"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Claim:
    """A latch this process holds for one key until it commits or releases it."""

    key: str
    partition: str
    row: str
    etag: str
    reclaimed: bool  # an earlier delivery had left the latch pending (a crash) or it had expired
    expired: bool = False  # the key was completed longer ago than the TTL: process it again


class DedupLatch:
    def __init__(
        self,
        table: TableClient,
        *,
        ttl: timedelta,
        shards: int,
        cache_size: int,
        pool: IoPool,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = table
        self._ttl = ttl
        self._shards = shards
        self._now = now
        # A key is remembered until its latch's window ends (its claimed_at plus the TTL), on the
        # latch's clock: caching a latch found in the table for a whole TTL from the moment it was
        # read would stretch the window.
        self._seen: TLRUCache[str, float] = TLRUCache(
            maxsize=cache_size, ttu=_until_stored_expiry, timer=lambda: self._now().timestamp()
        )
        self._pool = pool

    def _entity(self, key: str, state: LatchState) -> dict[str, object]:
        return {
            "PartitionKey": partition_key("dedup", shard_of(key, self._shards)),
            "RowKey": safe_row_key(key),
            "key": key,
            "state": state.value,
            "claimed_at": self._now(),
        }

    def claim_many(self, keys: Sequence[str]) -> list[Claim | None]:
        """:meth:`claim` for a batch: one transaction per partition, falling back per key when a
        transaction meets an existing latch (409 makes the whole transaction fail, atomically)."""
        results: dict[str, Claim | None] = {key: None for key in keys if key in self._seen}
        groups: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            if key not in results:
                groups[partition_key("dedup", shard_of(key, self._shards))].append(key)
        chunks = [
            group[i : i + MAX_BATCH] for group in groups.values() for i in range(0, len(group), MAX_BATCH)
        ]
        outcomes = self._pool.map(self._try_claim_chunk, chunks)
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                results.update(outcome)
        if errors:  # all or nothing: give back what this call took, then report the failure
            for claim in results.values():
                if claim is not None:
                    self.release(claim)
            raise errors[0]
        return [results[key] for key in keys]

    def _try_claim_chunk(self, keys: list[str]) -> dict[str, Claim | None] | Exception:
        try:
            return self._claim_chunk(keys)
        except Exception as exc:  # kept as a value so the other chunks' claims can be given back
            return exc

    def _claim_chunk(self, keys: list[str]) -> dict[str, Claim | None]:
        entities = [self._entity(key, LatchState.PENDING) for key in keys]
        try:
            metas = self._table.submit_transaction([("create", entity) for entity in entities])
        except (TableTransactionError, ResourceExistsError):
            return {key: self.claim(key) for key in keys}
        return {
            key: Claim(key, str(e["PartitionKey"]), str(e["RowKey"]), meta["etag"], reclaimed=False)
            for key, e, meta in zip(keys, entities, metas, strict=True)
        }

    def commit_many(self, claims: Sequence[Claim]) -> None:
        """:meth:`commit` for a batch, one transaction per partition."""
        groups: dict[str, list[Claim]] = defaultdict(list)
        for claim in claims:
            groups[claim.partition].append(claim)
        chunks = [
            group[i : i + MAX_BATCH] for group in groups.values() for i in range(0, len(group), MAX_BATCH)
        ]
        self._pool.map(self._commit_chunk, chunks)

    def _commit_chunk(self, claims: list[Claim]) -> None:
        operations = [
            ("upsert", self._entity(claim.key, LatchState.DONE), {"mode": UpdateMode.REPLACE})
            for claim in claims
        ]
        self._table.submit_transaction(operations)
        committed_at = self._now()
        for claim in claims:
            self._remember(claim.key, committed_at)

    def _remember(self, key: str, done_at: datetime) -> None:
        self._seen[key] = (done_at + self._ttl).timestamp()

    def seen_recently(self, key: str) -> bool:
        """Cheap in-memory check; a miss says nothing, the table decides."""
        return key in self._seen

    def claim(self, key: str) -> Claim | None:
        """Take the latch for ``key``; ``None`` when the key was completed within the TTL."""
        if key in self._seen:
            return None
        entity = self._entity(key, LatchState.PENDING)
        partition, row = str(entity["PartitionKey"]), str(entity["RowKey"])
        try:
            meta = self._table.create_entity(entity)
            return Claim(key, partition, row, meta["etag"], reclaimed=False)
        except ResourceExistsError:
            pass
        try:
            existing = self._table.get_entity(partition, row)
        except ResourceNotFoundError:  # released between our insert and read: try once more
            return self.claim(key)
        claimed_at = existing.get("claimed_at")
        fresh = isinstance(claimed_at, datetime) and self._now() - claimed_at < self._ttl
        if existing.get("state") == LatchState.DONE.value and fresh:
            assert isinstance(claimed_at, datetime)
            self._remember(key, claimed_at)
            return None
        try:
            meta = self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=existing.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return self.claim(key)  # another delivery moved it on; decide again
        expired = existing.get("state") == LatchState.DONE.value
        return Claim(key, partition, row, meta["etag"], reclaimed=True, expired=expired)

    def commit(self, claim: Claim) -> None:
        """Mark the key done: from now on, within the TTL, it is a duplicate."""
        self._commit_chunk([claim])

    def release(self, claim: Claim) -> None:
        """Give the latch back (processing failed) so a redelivery processes the event."""
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            self._table.delete_entity(
                claim.partition, claim.row, etag=claim.etag, match_condition=MatchConditions.IfNotModified
            )
        self._seen.pop(claim.key, None)

    def purge_expired(self, *, limit: int = 10_000) -> int:
        """Delete latch rows older than the TTL (run from a timer); returns how many went."""
        cutoff = self._now() - self._ttl
        removed = 0
        query = "claimed_at lt @cutoff"
        for entity in self._table.query_entities(query, parameters={"cutoff": cutoff}):
            try:
                self._table.delete_entity(
                    entity["PartitionKey"],
                    entity["RowKey"],
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                removed += 1
            except (ResourceNotFoundError, ResourceModifiedError):
                continue
            if removed >= limit:
                break
        return removed

    def entry(self, key: str) -> dict[str, Any] | None:
        """The latch row of one key as stored (``key``, ``state``, ``claimed_at``), for inspection."""
        try:
            entity = self._table.get_entity(
                partition_key("dedup", shard_of(key, self._shards)), safe_row_key(key)
            )
        except ResourceNotFoundError:
            return None
        return {"key": entity["key"], "state": entity["state"], "claimed_at": entity["claimed_at"]}
