"""How often each body's batch failed: the count that tells a poison body from bad luck
(docs/architecture.md, section 3).

One entity per body, keyed by the SHA-256 of its bytes: ``failures`` and ``last_failed_at``. It
lives in the state account, not in memory, because what must count past a restart does: the
Functions host restarts the worker after a crash or a timeout, and Event Hubs moves partitions
between instances and delivers from the last checkpoint, often in batches of another shape. A
count per body survives all of that; a count per batch or per process would start over each
time, and the poison body would hold its partition forever.

Beside it, :class:`IngestReport`: what every domain's ingest makes of a batch, poison included.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared import metrics
from shared.errors import MAX_ERROR_CHARS, is_outage
from shared.pool import IoPool
from shared.redact import redact_text
from shared.state.sharding import partition_key, shard_of

_ATTEMPTS = 5
T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class FailureLedger:
    def __init__(
        self,
        table: TableClient,
        *,
        shards: int,
        pool: IoPool,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._table = table
        self._shards = shards
        self._pool = pool
        self._now = now

    def _keys(self, digest: str) -> tuple[str, str]:
        return partition_key("failures", shard_of(digest, self._shards)), digest

    def record(self, digests: Sequence[str], error: str) -> list[int]:
        """Count one more failure for each body; returns each body's count so far."""
        message = redact_text(error)[:MAX_ERROR_CHARS]
        return self._pool.map(lambda digest: self._increment(digest, message), list(digests))

    def _increment(self, digest: str, error: str) -> int:
        partition, row = self._keys(digest)
        for _ in range(_ATTEMPTS):
            try:
                existing = self._table.get_entity(partition, row)
            except ResourceNotFoundError:
                entity = {"PartitionKey": partition, "RowKey": row, "failures": 1}
                entity.update(last_failed_at=self._now(), last_error=error)
                try:
                    self._table.create_entity(entity)
                    return 1
                except ResourceExistsError:
                    continue
            count = int(existing.get("failures") or 0) + 1
            try:
                self._table.update_entity(
                    {"PartitionKey": partition, "RowKey": row, "failures": count}
                    | {"last_failed_at": self._now(), "last_error": error},
                    mode=UpdateMode.REPLACE,
                    etag=existing.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return count
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        return int(self._table.get_entity(partition, row).get("failures") or 0)

    def forget(self, digests: Sequence[str]) -> None:
        """Drop the counts of bodies that went through (best effort: a stale count only makes a
        later failure isolate sooner)."""

        def delete(digest: str) -> None:
            with contextlib.suppress(ResourceNotFoundError):
                self._table.delete_entity(*self._keys(digest))

        self._pool.map(delete, list(digests))

    def purge_older_than(self, age: timedelta, *, limit: int = 10_000) -> int:
        """Delete counts not touched for ``age``; returns how many went."""
        cutoff = self._now() - age
        removed = 0
        for entity in self._table.query_entities("last_failed_at lt @cutoff", parameters={"cutoff": cutoff}):
            with contextlib.suppress(ResourceNotFoundError):
                self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                removed += 1
            if removed >= limit:
                break
        return removed


POISON_AFTER = 3  # failures of a body's batch before the batch is split to find it


def body_digest(body: bytes | str) -> str:
    """The key a body's failures are counted under: the SHA-256 of its bytes."""
    data = body if isinstance(body, bytes) else body.encode("utf-8", errors="surrogatepass")
    return hashlib.sha256(data).hexdigest()


def failure_summary(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:300]


@dataclass(slots=True)
class IngestReport:
    """What one delivered batch came to, in any domain: every body counted once, as accepted,
    duplicate, skipped or invalid."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    skipped: int = 0
    invalid: int = 0
    poison: int = 0  # invalid bodies found by isolating a failing batch (counted in ``invalid`` too)
    started: list[str] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        for name in ("received", "accepted", "duplicates", "skipped", "invalid", "poison"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.started += other.started

    def count_outcomes(self, domain: str) -> None:
        """The batch's outcomes into the ``events`` and ``dedup.hits`` metrics."""
        for outcome, count in (
            ("accepted", self.accepted),
            ("duplicate", self.duplicates),
            ("skipped", self.skipped),
            ("invalid", self.invalid),
        ):
            metrics.EVENTS.add(count, domain=domain, outcome=outcome)
        metrics.DEDUP_HITS.add(self.duplicates, domain=domain)

    def add_poison(self, count: int, domain: str) -> None:
        """Bodies :class:`PoisonGuard` isolated (dead-lettered by the caller): received and invalid."""
        self.received += count
        self.invalid += count
        self.poison = count
        metrics.EVENTS.add(count, domain=domain, outcome="invalid")


@dataclass(slots=True)
class PoisonGuard(Generic[T, R]):
    """Runs a batch; when it fails for a reason that is not an outage, counts a failure for each of
    its bodies. Once a body's count reaches ``threshold`` the batch is split in halves until the
    bodies that fail alone are found: those are handed back as poison and the rest are processed.
    If every body fails alone, the fault is not one body's and the batch fails (it is delivered
    again; nothing is lost). Outages always fail the batch: the unlimited retry is for them."""

    ledger: FailureLedger
    pool: IoPool
    body_of: Callable[[T], bytes | str]
    threshold: int = POISON_AFTER

    async def run(
        self, items: Sequence[T], process: Callable[[Sequence[T]], Awaitable[R]]
    ) -> tuple[list[R], list[tuple[T, BaseException]]]:
        """(the results of the parts that went through, the poison items and their errors)."""
        try:
            return [await process(items)], []
        except Exception as exc:
            if is_outage(exc) or not items:
                raise
            digests = [body_digest(self.body_of(item)) for item in items]
            counts = await self.pool.run(self.ledger.record, digests, failure_summary(exc))
            if max(counts) < self.threshold:
                raise
            log.warning("a batch failed %d times; isolating the bodies that fail alone", max(counts))
        results: list[R] = []
        poison: list[tuple[T, BaseException]] = []

        async def split(part: Sequence[T]) -> None:
            try:
                results.append(await process(part))
            except Exception as exc:
                if is_outage(exc):
                    raise
                if len(part) == 1:
                    poison.append((part[0], exc))
                    return
                middle = len(part) // 2
                await split(part[:middle])
                await split(part[middle:])

        middle = len(items) // 2
        if middle:
            await split(items[:middle])
        await split(items[middle:])
        if len(poison) == len(items) > 1:
            raise poison[0][1]
        # the poison bodies keep their counts: a redelivery isolates them at its first failure
        kept = {body_digest(self.body_of(item)) for item, _ in poison}
        await self.pool.run(self.ledger.forget, [d for d in digests if d not in kept])
        return results, poison
