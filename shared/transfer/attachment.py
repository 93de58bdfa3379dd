"""Attachment transfer: validated source URL → bounded-memory stream → write-once lake file.

Order (cheap, request-free rejections first): URL policy, S3 presigned expiry, extension,
already-committed check, then the download. Progress is staged in blocks of
``TRANSFER_BLOCK_SIZE_MB``; a retry resumes after the staged prefix of the same source version
with ``Range`` + ``If-Range`` and never fetches that prefix again.

SHA-256: computed while streaming when the transfer starts at byte 0. A resumed transfer
cannot hash the prefix (uncommitted blocks cannot be read, and fetching it again is what
resuming avoids), so after its commit the file is read back from the store once and the digest
recorded then. Until it is recorded the file's identity for a commit race is size + source
version (URL + ETag/Last-Modified). Resumes are rare (a failed large transfer), so the
read-back is the cheap price for a true digest on every file.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import aiohttp
from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError

from shared.errors import ClassifiedError, ErrorCategory, Failure, classify_http_status
from shared.redact import redact_url
from shared.transfer.encodings import SNIFF_BYTES, Decoder, check_not_markup, decoder_for
from shared.transfer.filetypes import check_content_type, require_allowed_extension, stored_content_type
from shared.transfer.http import get_following_redirects
from shared.transfer.presigned import PresignedKind, parse_presigned
from shared.transfer.stores import SourceVersion, url_tag

if TYPE_CHECKING:
    from datetime import datetime

    from shared.config import Settings
    from shared.transfer.stores import AttachmentStore, CommitResult, Staged
    from shared.transfer.urls import UrlPolicy

MIB = 1024 * 1024
IN_FLIGHT_BLOCKS = 2
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class AttachmentStatus(StrEnum):
    """How an attachment ended: the ``status`` of its row in an attachments table."""

    UPLOADED = "uploaded"
    REJECTED = "rejected"  # refused before any request: URL policy or file extension
    FAILED_PERMANENT = "failed_permanent"  # a permanent error (404, expired presigned URL, ...)
    EXHAUSTED = "exhausted"  # still failing after the last retry
    RECOVERED = "recovered"  # failed, then uploaded when its dead letter was replayed (history)


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """``blob_path`` is relative to the attachments root (``XACT_ATTACHMENTS_URI``)."""

    url: str
    blob_path: str


@dataclass(frozen=True, slots=True)
class TransferResult:
    """``bytes_written`` is the size of the file now at the path; ``bytes_fetched`` what this call read."""

    bytes_written: int
    content_type: str | None
    sha256: str | None
    resumed_from: int
    already_present: bool
    bytes_fetched: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Digest:
    """SHA-256 fed block by block, in order, in a worker thread (hashlib releases the GIL), so
    hashing overlaps with reading the next block instead of stalling the event loop."""

    THREAD_MIN = 1024 * 1024

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._last: asyncio.Future[None] | None = None

    async def feed(self, data: bytes) -> None:
        if self._last is not None:
            await self._last
            self._last = None
        if len(data) < self.THREAD_MIN:
            self._hash.update(data)
        else:
            self._last = asyncio.ensure_future(asyncio.to_thread(self._hash.update, data))

    async def hexdigest(self) -> str:
        if self._last is not None:
            await self._last
            self._last = None
        return self._hash.hexdigest()


class _Restart(Exception):
    """The ranged answer cannot continue the staged prefix; fetch from byte 0."""


def _fail(category: ErrorCategory, message: str, status: int | None = None) -> ClassifiedError:
    return ClassifiedError(Failure.of(category, message, status))


def _retrieve(tasks: set[asyncio.Task[None]]) -> list[BaseException]:
    """Exceptions of finished tasks (retrieving them keeps asyncio from reporting them as lost)."""
    return [exc for task in tasks if not task.cancelled() and (exc := task.exception()) is not None]


def _raise_first(tasks: set[asyncio.Task[None]]) -> None:
    errors = _retrieve(tasks)
    if errors:
        raise errors[0]


def check_not_expired(url: str, now: datetime) -> None:
    """An expired S3 presigned URL is PERMANENT (XACT cannot refresh it), and so is any presigned
    URL whose date or lifetime cannot be a valid window; decided without a request."""
    info = parse_presigned(url)
    if info is None:
        return
    if info.out_of_range is not None:
        raise _fail(
            ErrorCategory.PERMANENT, f"presigned URL never valid: {info.out_of_range}: {redact_url(url)}"
        )
    if info.kind is PresignedKind.S3 and info.is_expired(now):
        raise _fail(ErrorCategory.PERMANENT, f"presigned URL expired at {info.expires_at}: {redact_url(url)}")


async def transfer_attachment(
    request: TransferRequest,
    *,
    session: aiohttp.ClientSession,
    store: AttachmentStore,
    policy: UrlPolicy,
    settings: Settings,
    now: datetime,
    extension: str | None = None,
) -> TransferResult:
    """Copy ``request.url`` to ``request.blob_path`` once; raises :class:`ClassifiedError` on failure.

    ``extension`` is the file's allowed extension when the caller found it elsewhere than in the
    URL (a ClaimX media name); by default it comes from the URL and must be allowed."""
    policy.check(request.url)
    check_not_expired(request.url, now)
    extension = extension or require_allowed_extension(request.url)
    job = _Transfer(request, session, store, policy, settings, now, extension)
    deadline = asyncio.timeout(settings.transfer_timeout_seconds)
    try:
        async with deadline:
            return await job.run()
    except ClassifiedError:
        raise
    except TimeoutError as exc:
        which = _which_timeout(exc, deadline.expired(), session.timeout, settings.transfer_timeout_seconds)
        raise _fail(ErrorCategory.TRANSIENT, f"{which}: {redact_url(request.url)}") from None
    except (aiohttp.ClientError, ServiceRequestError, ServiceResponseError, ConnectionError) as exc:
        raise _fail(
            ErrorCategory.TRANSIENT, f"{type(exc).__name__}: {exc}; source {redact_url(request.url)}"
        ) from None
    except AzureError as exc:
        raise ClassifiedError(Failure.from_exception(exc)) from None


def _which_timeout(
    exc: BaseException, total_expired: bool, timeouts: aiohttp.ClientTimeout, total: float
) -> str:
    """Name the timeout that fired: connecting, waiting for data, or the whole transfer."""
    if total_expired:
        return f"transfer timed out: the total of {total:g} s ran out"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connecting timed out after {timeouts.sock_connect or timeouts.connect or 0:g} s"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"reading timed out: no data for {timeouts.sock_read or 0:g} s"
    return f"timed out ({type(exc).__name__})"


class _Transfer:
    def __init__(
        self,
        request: TransferRequest,
        session: aiohttp.ClientSession,
        store: AttachmentStore,
        policy: UrlPolicy,
        settings: Settings,
        now: datetime,
        extension: str,
    ) -> None:
        self.request = request
        self.path = request.blob_path
        self.session = session
        self.store = store
        self.policy = policy
        self.now = now
        self.extension = extension
        self.block_size = settings.transfer_block_size_mb * MIB
        self.max_bytes = settings.max_attachment_mb * MIB
        self.url_tag = url_tag(request.url)
        self.fetched = 0

    async def run(self) -> TransferResult:
        existing = await self.store.committed(self.path)
        if existing is not None and existing.url_tag == self.url_tag:
            # Committed earlier from this very source (its URL tag is on the file): reuse it.
            digest = existing.sha256
            if digest is None:
                # A resumed attempt committed it and stopped before recording its digest.
                digest = await self.store.read_sha256(self.path, etag=existing.etag)
                await self.store.record_sha256(self.path, digest, etag=existing.etag)
            return TransferResult(existing.size, existing.content_type, digest, 0, True)
        # Nothing there, or a file from another source: download. The write-once commit then
        # either creates the file or finds that one and accepts it only if it holds the same bytes
        # (same SHA-256), so another file's bytes or digest are never recorded for this one.
        staged = await self.store.staged(self.path, url_tag=self.url_tag, block_size=self.block_size)
        if staged is not None:
            try:
                return await self._attempt(staged)
            except _Restart:
                pass
        return await self._attempt(None)

    def _check_hop(self, url: str) -> None:
        check_not_expired(url, self.now)

    async def _attempt(self, staged: Staged | None) -> TransferResult:
        headers = {"Accept-Encoding": "identity"}
        if staged is not None:
            headers["Range"] = f"bytes={staged.length}-"
            headers["If-Range"] = staged.source.validator
        async with get_following_redirects(
            self.session, self.request.url, policy=self.policy, headers=headers, check_hop=self._check_hop
        ) as fetched:
            response = fetched.response
            status = response.status
            if staged is not None and status == 416:
                raise _Restart
            if staged is not None and status == 206:
                start, total = self._content_range(response.headers.get("Content-Range"))
                if start != staged.length:
                    raise _Restart
            elif status == 200:
                start, total, staged = 0, response.content_length, None
            else:
                category = classify_http_status(status) if status != 206 else ErrorCategory.TRANSIENT
                raise _fail(category, f"HTTP {status} from {redact_url(fetched.url)}", status)
            decoder = decoder_for(response.headers.get("Content-Encoding"))
            if decoder is None:
                source = SourceVersion.from_headers(
                    self.url_tag, response.headers.get("ETag"), response.headers.get("Last-Modified")
                )
            elif staged is not None:
                raise _Restart  # a range of encoded bytes cannot continue a decoded prefix
            else:
                source = SourceVersion(self.url_tag)  # a decoded file is never resumed
            if staged is not None and source != staged.source:
                raise _Restart
            content_type = response.headers.get("Content-Type")
            check_content_type(content_type, self.extension)
            if total is not None and total > self.max_bytes:
                raise _fail(
                    ErrorCategory.PERMANENT, f"file of {total} bytes exceeds the {self.max_bytes}-byte limit"
                )
            if total == 0:
                raise _fail(ErrorCategory.TRANSIENT, f"empty body from {redact_url(fetched.url)}")
            stored_type = stored_content_type(content_type, self.extension)
            return await self._stream(response, source, staged, start, total, stored_type, decoder)

    @staticmethod
    def _content_range(value: str | None) -> tuple[int, int | None]:
        match = _CONTENT_RANGE.match((value or "").strip())
        if match is None:
            raise _Restart
        total = None if match[3] == "*" else int(match[3])
        return int(match[1]), total

    async def _stream(
        self,
        response: aiohttp.ClientResponse,
        source: SourceVersion,
        staged: Staged | None,
        start: int,
        total: int | None,
        content_type: str,
        decoder: Decoder | None,
    ) -> TransferResult:
        """Stream the answer into the store from ``start``; ``total`` is the answer's length on
        the wire (encoded, if ``decoder``), the file is what the decoder makes of it."""
        hasher = _Digest() if start == 0 else None
        offsets: list[int] = list(staged.offsets) if staged is not None else []
        pending: set[asyncio.Task[None]] = set()
        buffer = bytearray()
        offset = start  # where the bytes in ``buffer`` begin
        received = 0  # bytes of the answer (encoded, if it is)
        written = start  # bytes of the file

        first = True

        async def submit(block_offset: int, data: bytes) -> None:
            nonlocal pending, first
            offsets.append(block_offset)
            if first:
                # The first piece lands before others fly (a DFS partial file must exist first).
                first = False
                await self.store.stage(self.path, source=source, offset=block_offset, data=data)
                return
            while len(pending) >= IN_FLIGHT_BLOCKS:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                _raise_first(done)
            pending.add(
                asyncio.create_task(
                    self.store.stage(self.path, source=source, offset=block_offset, data=data)
                )
            )

        sniffed = start > 0  # a resumed file's head was looked at when it was first staged

        async def take(piece: bytes) -> None:
            """One decoded piece of the file: into the buffer, out in blocks."""
            nonlocal written, offset, sniffed
            written += len(piece)
            if written > self.max_bytes:
                raise _fail(ErrorCategory.PERMANENT, f"file exceeds the {self.max_bytes}-byte limit")
            buffer.extend(piece)
            if not sniffed and len(buffer) >= SNIFF_BYTES:
                check_not_markup(bytes(buffer[:SNIFF_BYTES]), self.extension)
                sniffed = True
            while len(buffer) >= self.block_size:
                with memoryview(buffer) as view:
                    block = bytes(view[: self.block_size])
                del buffer[: self.block_size]
                if hasher is not None:
                    await hasher.feed(block)
                await submit(offset, block)
                offset += self.block_size

        try:
            async for chunk in response.content.iter_chunked(1024 * 1024):
                received += len(chunk)
                self.fetched += len(chunk)
                for piece in decoder.feed(chunk) if decoder is not None else (chunk,):
                    await take(piece)
            if decoder is not None:
                for piece in decoder.finish():
                    await take(piece)
            if total is not None and start + received != total:
                got = start + received
                raise _fail(ErrorCategory.TRANSIENT, f"length mismatch: received {got} of {total} bytes")
            if written == 0:
                raise _fail(ErrorCategory.TRANSIENT, f"empty body from {redact_url(self.request.url)}")
            if not sniffed:
                check_not_markup(bytes(buffer), self.extension)
            tail = bytes(buffer)
            buffer.clear()
            sha256 = None
            if hasher is not None:
                await hasher.feed(tail)
                sha256 = await hasher.hexdigest()
            if not offsets and sha256 is not None:
                # Everything fits in one block: one conditional Put Blob, nothing staged.
                result = await self.store.put(
                    self.path, tail, source=source, sha256=sha256, content_type=content_type
                )
                return self._result(result, start)
            if tail:
                await submit(offset, tail)
            if pending:
                done, pending = await asyncio.wait(pending)
                _raise_first(done)
        except BaseException:
            # Let staged blocks land, so the next attempt resumes from as far as possible.
            if pending:
                done, still = await asyncio.wait(pending, timeout=60)
                for task in still:
                    task.cancel()
                _retrieve(done)
            raise
        result = await self.store.commit(
            self.path, source=source, offsets=offsets, size=written, sha256=sha256, content_type=content_type
        )
        if result.created and sha256 is None:
            digest = await self.store.read_sha256(self.path, etag=result.file.etag)
            await self.store.record_sha256(self.path, digest, etag=result.file.etag)
            return TransferResult(written, content_type, digest, start, False, self.fetched)
        return self._result(result, start)

    def _result(self, result: CommitResult, start: int) -> TransferResult:
        file = result.file
        return TransferResult(
            file.size, file.content_type, file.sha256, start, not result.created, self.fetched
        )
