"""The dedup latch: an in-memory TTL cache in front of an Azure Table (docs/architecture.md,
section 3).

One entity per key: ``state`` (``pending``, ``done``, ``released``), ``claimed_at`` (when the
current holder took it; its lease runs :data:`LEASE` from then), ``done_at``, ``first_date`` (the
event date fixed when the key was first seen: every later delivery writes its rows to that
partition), ``rerun`` (the holder processes the key again after the TTL) and ``attempts``.

* A claim is a conditional insert in state ``pending``: one write per new key.
* A key whose work leaves a proof elsewhere (an orchestration that exists) is not marked done by
  ingest: deliveries check the proof instead (:meth:`DedupLatch.claim_settled`), and the work marks
  the latch when it runs (:meth:`DedupLatch.mark_done`, for people reading it). Other keys are
  marked done by ingest (:meth:`DedupLatch.commit_many`); those marks are queued and ride in the
  next claim transaction of the same partition, or go out with :meth:`DedupLatch.flush_commits`.
* ``done`` younger than the TTL: a duplicate. ``done`` or ``pending`` older than the TTL: the key
  is processed again (``expired``).
* ``pending`` within the TTL: another delivery holds or held it. A held key is never a duplicate
  on the latch's word alone (a killed holder finished nothing): it is one when its proof exists;
  otherwise the caller waits (:class:`Busy`) until the lease ends, then takes the key over.
* ``released`` (a failed delivery gave it back): taken at once.

Latches are kept after the TTL: they hold the key's first date, so a redelivery long after never
writes a second row in another partition; only abandoned ones (never completed, untouched for the
TTL) are purged.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode
from cachetools import TLRUCache

from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.pool import IoPool
from shared.state.sharding import partition_key, safe_row_key, shard_of

MAX_BATCH = 100  # Azure Tables transaction limit
# How long a pending latch belongs to its holder: well above the seconds a delivery needs from
# claim to orchestration start, so a live holder is never overtaken, and short enough that the
# redelivery after a killed holder waits little.
LEASE = timedelta(seconds=60)
COMMIT_DELAY = timedelta(seconds=2)  # queued done marks older than this go out on their own
# Partitions of the latch table. A batch's claims are one transaction per partition it touches,
# so fewer partitions mean fewer round trips per batch; four carry 8,000 claims a second (one
# Table partition serves about 2,000 entities a second), eight times the design's event rate.
LATCH_SHARDS = 4
POLL_SECONDS = 1.0
# A delivery waits this long at most for latches another delivery holds, then fails its batch
# (delivered again later): the lease plus a margin, so a killed holder's lease always ends first.
MAX_WAIT_SECONDS = LEASE.total_seconds() + 10
_CLAIM_ATTEMPTS = 5


def _until_stored_expiry(_key: str, expires: float, _now: float) -> float:
    return expires


class LatchState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Claim:
    """A latch this process holds for one key until it commits or releases it."""

    key: str
    partition: str
    row: str
    etag: str
    first_date: date  # the partition every row of this key goes to
    reclaimed: bool = False  # the latch existed: a killed or failed delivery, or an expired key
    expired: bool = False  # the key was processed longer ago than the TTL: process it again
    attempts: int = 1
    done_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Busy:
    """Another delivery holds the key's latch until ``until`` (its lease)."""

    key: str
    until: datetime


ClaimResult = Claim | Busy | None


@dataclass(slots=True)
class _QueuedCommit:
    claim: Claim
    done_at: datetime


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
        # A key is remembered until its latch's window ends (when it was done or taken, plus the
        # TTL), on the latch's clock: caching a latch found in the table for a whole TTL from the
        # moment it was read would stretch the window.
        self._seen: TLRUCache[str, float] = TLRUCache(
            maxsize=cache_size, ttu=_until_stored_expiry, timer=lambda: self._now().timestamp()
        )
        self._pool = pool
        self._queued: dict[str, dict[str, _QueuedCommit]] = defaultdict(dict)
        self._lock = threading.Lock()

    # -- entities -------------------------------------------------------------------------------

    def _keys(self, key: str) -> tuple[str, str]:
        return partition_key("dedup", shard_of(key, self._shards)), safe_row_key(key)

    def _entity(
        self,
        key: str,
        state: LatchState,
        *,
        claimed_at: datetime,
        first_date: date,
        attempts: int,
        done_at: datetime | None,
        rerun: bool = False,
    ) -> dict[str, Any]:
        partition, row = self._keys(key)
        entity: dict[str, Any] = {
            "PartitionKey": partition,
            "RowKey": row,
            "key": key,
            "state": state.value,
            "claimed_at": claimed_at,
            "first_date": first_date.isoformat(),
            "attempts": attempts,
            "rerun": rerun,
        }
        if done_at is not None:
            entity["done_at"] = done_at
        return entity

    def _pending(self, key: str, first_date: date) -> dict[str, Any]:
        return self._entity(
            key, LatchState.PENDING, claimed_at=self._now(), first_date=first_date, attempts=1, done_at=None
        )

    def _done(self, queued: _QueuedCommit) -> dict[str, Any]:
        claim = queued.claim
        return self._entity(
            claim.key,
            LatchState.DONE,
            claimed_at=queued.done_at,
            first_date=claim.first_date,
            attempts=claim.attempts,
            done_at=queued.done_at,
        )

    # -- claiming -------------------------------------------------------------------------------

    def _remember(self, key: str, since: datetime) -> None:
        self._seen[key] = (since + self._ttl).timestamp()

    def seen_recently(self, key: str) -> bool:
        """Cheap in-memory check; a miss says nothing, the table decides."""
        return key in self._seen

    def claim_many(self, keys: Sequence[str], first_dates: Sequence[date]) -> list[ClaimResult]:
        """:meth:`claim` for a batch: one transaction per partition (carrying the partition's queued
        done marks), falling back per key when a transaction meets an existing latch (409 fails
        the whole transaction, atomically). All or nothing: if a call fails, what it took is
        given back before the error is raised."""
        results: dict[str, ClaimResult] = {key: None for key in keys if key in self._seen}
        groups: dict[str, list[tuple[str, date]]] = defaultdict(list)
        for key, first_date in zip(keys, first_dates, strict=True):
            if key not in results:
                groups[self._keys(key)[0]].append((key, first_date))
        chunks = [
            group[i : i + MAX_BATCH] for group in groups.values() for i in range(0, len(group), MAX_BATCH)
        ]
        outcomes = self._pool.map(self._try_claim_chunk, chunks)
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                results.update(outcome)
        if errors:
            for result in results.values():
                if isinstance(result, Claim):
                    self.release(result)
            raise errors[0]
        return [results[key] for key in keys]

    async def claim_settled(
        self,
        keys: Sequence[str],
        first_dates: Sequence[date],
        *,
        sleep: Callable[[float], Awaitable[None]],
        settled: Callable[[str], Awaitable[bool]] | None = None,
    ) -> list[Claim | None]:
        """:meth:`claim_many`, then settle the keys another delivery holds or held: a key whose
        proof ``settled`` finds (its orchestration exists: the holder staged and started it) is a
        duplicate; a key whose holder's lease ended without one is taken over; for the rest, wait
        (polling, at most :data:`MAX_WAIT_SECONDS`) until one of those happens or the holder marks
        it done. If the wait runs out, what this call took is given back and the error is
        TRANSIENT (the batch is delivered again)."""
        results: list[ClaimResult] = await self._pool.run(self.claim_many, keys, first_dates)
        waited = 0.0
        try:
            while True:
                for i, result in enumerate(results):
                    if isinstance(result, Busy) and settled is not None and await settled(result.key):
                        results[i] = None
                    elif isinstance(result, Busy) and result.until <= self._now():
                        results[i] = await self._pool.run(self.take_over, keys[i], first_dates[i])
                busy = [i for i, result in enumerate(results) if isinstance(result, Busy)]
                if not busy:
                    break
                if waited >= MAX_WAIT_SECONDS:
                    raise ClassifiedError(
                        Failure.of(
                            ErrorCategory.TRANSIENT,
                            f"{len(busy)} dedup latches still held by another delivery after {waited:.0f} s",
                        )
                    )
                until = min(result.until for result in results if isinstance(result, Busy))
                pause = min(POLL_SECONDS, max(0.05, (until - self._now()).total_seconds()))
                await sleep(pause)
                waited += pause
                again = await self._pool.run(
                    self.claim_many, [keys[i] for i in busy], [first_dates[i] for i in busy]
                )
                for i, result in zip(busy, again, strict=True):
                    results[i] = result
        except BaseException:
            for result in results:
                if isinstance(result, Claim):
                    self.release(result)
            raise
        return [result if isinstance(result, Claim) else None for result in results]

    def _try_claim_chunk(self, items: list[tuple[str, date]]) -> dict[str, ClaimResult] | Exception:
        try:
            return self._claim_chunk(items)
        except Exception as exc:  # kept as a value so the other chunks' claims can be given back
            return exc

    def _claim_chunk(self, items: list[tuple[str, date]]) -> dict[str, ClaimResult]:
        entities = [self._pending(key, first_date) for key, first_date in items]
        partition = entities[0]["PartitionKey"]
        room = MAX_BATCH - len(entities)
        commits = self._take_queued(partition, room)
        operations: list[tuple[Any, ...]] = [("create", entity) for entity in entities]
        operations += [("upsert", self._done(queued), {"mode": UpdateMode.REPLACE}) for queued in commits]
        try:
            metas = self._table.submit_transaction(operations)
        except (TableTransactionError, ResourceExistsError):
            self._write_done(commits)
            return {key: self.claim(key, first_date) for key, first_date in items}
        except BaseException:
            self._requeue(partition, commits)
            raise
        return {
            key: Claim(key, str(e["PartitionKey"]), str(e["RowKey"]), meta["etag"], first_date)
            for (key, first_date), e, meta in zip(items, entities, metas, strict=False)
        }

    def take_over(self, key: str, first_date: date) -> ClaimResult:
        """:meth:`claim`, taking a pending latch whose lease ended (its holder died, or finished
        without a mark: the caller found no proof of its work)."""
        return self.claim(key, first_date, take_over=True)

    def claim(self, key: str, first_date: date, *, take_over: bool = False) -> ClaimResult:
        """Take the latch for ``key`` (``first_date``: the event's date, kept if the key is new).
        ``None`` when the key completed within the TTL; :class:`Busy` when another delivery holds
        or held it (its lease may have ended; only ``take_over`` takes it then)."""
        if key in self._seen:
            return None
        partition, row = self._keys(key)
        for _ in range(_CLAIM_ATTEMPTS):
            entity = self._pending(key, first_date)
            try:
                meta = self._table.create_entity(entity)
                return Claim(key, partition, row, meta["etag"], first_date)
            except ResourceExistsError:
                pass
            try:
                existing = self._table.get_entity(partition, row)
            except ResourceNotFoundError:  # purged between our insert and read: try again
                continue
            decided = self._decide(key, existing, take_over=take_over)
            if not isinstance(decided, bool):
                return decided
            try:
                return self._reclaim(key, existing, first_date, expired=decided)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another delivery moved it on; decide again
        raise ClassifiedError(
            Failure.of(ErrorCategory.TRANSIENT, f"dedup latch of {key[:64]!r} kept changing under us")
        )

    def _decide(self, key: str, existing: TableEntity, *, take_over: bool) -> ClaimResult | bool:
        """The answer for an existing latch, or ``True``/``False`` to take it over as an expired
        key (processed again after the TTL) or not."""
        now = self._now()
        state = existing.get("state")
        claimed_at = _as_datetime(existing.get("claimed_at"))
        done_at = _as_datetime(existing.get("done_at")) or (claimed_at if state == LatchState.DONE else None)
        if state == LatchState.DONE:
            if done_at is not None and now - done_at < self._ttl:
                self._remember(key, done_at)
                return None
            return True
        if state == LatchState.PENDING:
            if claimed_at is None or now - claimed_at >= self._ttl:
                return True
            if now < claimed_at + LEASE or not take_over:
                return Busy(key, claimed_at + LEASE)
        return bool(existing.get("rerun"))

    def _reclaim(self, key: str, existing: TableEntity, first_date: date, *, expired: bool) -> Claim:
        """Take over a latch whose holder died or gave it back, or whose key expired."""
        state = existing.get("state")
        claimed_at = _as_datetime(existing.get("claimed_at"))
        done_at = _as_datetime(existing.get("done_at")) or (claimed_at if state == LatchState.DONE else None)
        kept_date = _as_date(existing.get("first_date")) or first_date
        attempts = int(existing.get("attempts") or 1) + 1
        entity = self._entity(
            key,
            LatchState.PENDING,
            claimed_at=self._now(),
            first_date=kept_date,
            attempts=attempts,
            done_at=done_at,
            rerun=expired,
        )
        meta = self._table.update_entity(
            entity,
            mode=UpdateMode.REPLACE,
            etag=existing.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
        partition, row = self._keys(key)
        return Claim(
            key,
            partition,
            row,
            meta["etag"],
            kept_date,
            reclaimed=True,
            expired=expired,
            attempts=attempts,
            done_at=done_at,
        )

    # -- completing -----------------------------------------------------------------------------

    def mark_done(self, key: str) -> None:
        """Mark a key done from where its work went on (the event's orchestration, which proves
        that ingest staged and started it): for people reading the latch; deliveries rely on the
        orchestration itself. Merges, so the key's first date and the rest stay."""
        partition, row = self._keys(key)
        now = self._now()
        entity = {"PartitionKey": partition, "RowKey": row, "key": key, "state": LatchState.DONE.value}
        self._table.upsert_entity(entity | {"done_at": now}, mode=UpdateMode.MERGE)
        self._remember(key, now)

    def remember(self, claims: Sequence[Claim]) -> None:
        """The keys' work is done and leaves its own proof (their orchestrations): duplicates from
        now on in this process, without a done mark in the table."""
        now = self._now()
        for claim in claims:
            self._remember(claim.key, now)

    def commit_many(self, claims: Sequence[Claim]) -> None:
        """Mark the keys done: from now on, within the TTL, duplicates. In this process at once; in
        the table with the next claim of the partition or :meth:`flush_commits`."""
        now = self._now()
        with self._lock:
            for claim in claims:
                self._queued[claim.partition][claim.key] = _QueuedCommit(claim, now)
                self._remember(claim.key, now)

    def commit(self, claim: Claim) -> None:
        """Mark one key done and write it now."""
        self.commit_many([claim])
        self.flush_commits()

    def flush_commits(self, *, older_than: timedelta | None = None) -> int:
        """Write queued done marks (only those queued longer than ``older_than`` ago, if given);
        returns how many went out. A failed write puts its marks back in the queue and raises."""
        cutoff = None if older_than is None else self._now() - older_than
        with self._lock:
            taken: dict[str, list[_QueuedCommit]] = {}
            for partition, queued in self._queued.items():
                due = [q for q in queued.values() if cutoff is None or q.done_at <= cutoff]
                if due:
                    taken[partition] = due
                    for q in due:
                        del queued[q.claim.key]
        batches = [
            group[i : i + MAX_BATCH] for group in taken.values() for i in range(0, len(group), MAX_BATCH)
        ]
        self._pool.map(self._write_done, batches)  # a failed batch is queued again by _write_done
        return sum(len(batch) for batch in batches)

    def close(self) -> None:
        """The process is done with the latch: write every queued done mark."""
        self.flush_commits()

    def _take_queued(self, partition: str, limit: int) -> list[_QueuedCommit]:
        with self._lock:
            queued = self._queued.get(partition)
            if not queued:
                return []
            taken = list(queued.values())[:limit]
            for q in taken:
                del queued[q.claim.key]
            return taken

    def _requeue(self, partition: str, commits: Sequence[_QueuedCommit]) -> None:
        with self._lock:
            queued = self._queued[partition]
            for q in commits:
                queued.setdefault(q.claim.key, q)

    def _write_done(self, commits: Sequence[_QueuedCommit]) -> None:
        if not commits:
            return
        try:
            self._table.submit_transaction(
                [("upsert", self._done(q), {"mode": UpdateMode.REPLACE}) for q in commits]
            )
        except BaseException:
            self._requeue(commits[0].claim.partition, commits)
            raise

    def release(self, claim: Claim) -> None:
        """Give the latch back (processing failed) so a redelivery takes it at once. The entity
        stays, keeping the key's first date; only a latch still as this claim left it is changed."""
        with self._lock:
            self._queued.get(claim.partition, {}).pop(claim.key, None)
        self._seen.pop(claim.key, None)
        entity = self._entity(
            claim.key,
            LatchState.RELEASED,
            claimed_at=self._now(),
            first_date=claim.first_date,
            attempts=claim.attempts,
            done_at=claim.done_at,
            rerun=claim.expired,
        )
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=claim.etag,
                match_condition=MatchConditions.IfNotModified,
            )

    def entry(self, key: str) -> dict[str, Any] | None:
        """The latch row of one key as stored (``key``, ``state``, ``claimed_at``), for inspection."""
        try:
            entity = self._table.get_entity(*self._keys(key))
        except ResourceNotFoundError:
            return None
        return {"key": entity["key"], "state": entity["state"], "claimed_at": entity["claimed_at"]}

    def purge_expired(self, *, limit: int = 10_000) -> int:
        """Delete abandoned latches: given back by a failed delivery, never completed, and not taken
        again within the TTL (run from a timer). Every other latch stays: it fixes its key's
        partition. Returns how many went."""
        cutoff = self._now() - self._ttl
        removed = 0
        query = "claimed_at lt @cutoff and state eq @released"
        for entity in self._table.query_entities(
            query, parameters={"cutoff": cutoff, "released": "released"}
        ):
            if entity.get("done_at") is not None:
                continue
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


def _as_datetime(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _as_date(value: Any) -> date | None:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value)
    return None
