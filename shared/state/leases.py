"""Per-table blob leases shared by flush and compaction, so they never race on one Delta table.

Acquire-or-skip: a busy lease means another worker is on the table and the caller skips this
round. The holder renews in the background for long operations; a crashed holder stops renewing
and its lease expires after ``duration`` seconds (15 s, the shortest blob lease: a flush that died
holds its table up for no longer than the next timer tick).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobClient, BlobLeaseClient, BlobServiceClient

log = logging.getLogger(__name__)

LOCK_CONTAINER = "claimsflow-locks"
LEASE_SECONDS = 15


@dataclass(slots=True)
class TableLease:
    """A blob lease named after one Delta table, in the state account."""

    service: BlobServiceClient
    table: str
    duration: int = LEASE_SECONDS
    container: str = LOCK_CONTAINER
    renew_every: float | None = None  # default: a third of the duration
    _lease: BlobLeaseClient | None = field(default=None, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _renewer: threading.Thread | None = field(default=None, init=False, repr=False)
    _lost: bool = field(default=False, init=False, repr=False)

    @property
    def blob(self) -> BlobClient:
        return self.service.get_blob_client(self.container, f"{self.table}.lock")

    @property
    def held(self) -> bool:
        return self._lease is not None and not self._lost

    @property
    def lost(self) -> bool:
        """True when renewal failed: another holder may have the table now."""
        return self._lost

    def _ensure_blob(self, blob: BlobClient) -> None:
        with suppress(ResourceExistsError):
            self.service.create_container(self.container)
        with suppress(ResourceExistsError):  # exists, possibly leased: both answer 409
            blob.upload_blob(b"", overwrite=False)

    def acquire(self) -> bool:
        """Take the lease, or return False when someone else holds it."""
        if self._lease is not None:
            raise RuntimeError(f"lease on {self.table} is already held by this object")
        blob = self.blob
        lease = BlobLeaseClient(blob)
        try:
            lease.acquire(lease_duration=self.duration)
        except ResourceExistsError:
            return False  # 409 LeaseAlreadyPresent
        except HttpResponseError as exc:
            if exc.status_code != 404:
                raise
            self._ensure_blob(blob)
            try:
                lease.acquire(lease_duration=self.duration)
            except ResourceExistsError:
                return False
        self._lease = lease
        self._lost = False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lease-{self.table}", daemon=True)
        self._renewer.start()
        return True

    def _renew_loop(self) -> None:
        interval = self.renew_every if self.renew_every is not None else self.duration / 3
        while not self._stop.wait(interval):
            lease = self._lease
            if lease is None:
                return
            try:
                lease.renew()
            except Exception as exc:  # any failure means another holder may have it now
                self._lost = True
                log.warning("lease on %s could not be renewed: %s", self.table, exc)
                return

    def release(self) -> None:
        lease, self._lease = self._lease, None
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        if lease is None:
            return
        try:
            lease.release()
        except HttpResponseError as exc:  # expired and taken by someone else: nothing to release
            log.warning("lease on %s could not be released: %s", self.table, exc)

    @contextmanager
    def hold(self) -> Iterator[bool]:
        """``with lease.hold() as acquired:``; released on exit, whatever happens inside."""
        acquired = self.acquire()
        try:
            yield acquired
        finally:
            if acquired:
                self.release()
