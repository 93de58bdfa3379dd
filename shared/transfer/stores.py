"""Where attachment files land: a resumable, write-once store with a Blob and a DataLake backend.

Protocol in short: bytes of one source version are *staged* at offsets (durable, invisible),
then *committed* once, conditionally (if-none-match ``*``), so a finished file is never
rewritten. A commit that finds the file already there compares what the existing file
recorded (sha256, else size + source version): same → success, different → PERMANENT conflict.

Blob (default; Azurite, ADLS Gen2, OneLake blob endpoint): staged blocks whose ids carry the
offset, a tag of the source URL and the source's validator (ETag or Last-Modified), so a retry
finds the contiguous prefix of the same source version and can send ``If-Range``.
DataLake (DFS): append + flush to ``<path>.partial`` (flushed data is durable), rename to the
final path with a destination if-none-match condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, ContentSettings
from azure.storage.filedatalake import ContentSettings as DataLakeContentSettings

from shared.errors import ClassifiedError, ErrorCategory, Failure
from shared.redact import strip_query

if TYPE_CHECKING:
    from collections.abc import Sequence

    from azure.storage.blob.aio import BlobServiceClient, ContainerClient
    from azure.storage.filedatalake.aio import FileSystemClient

    from shared.config import Settings
    from shared.storage import StorageFactory

META_SHA256 = "claimsflow_sha256"
META_SIZE = "claimsflow_size"
META_SOURCE = "claimsflow_source"
META_URL_TAG = "claimsflow_url"
BLOCK_ID_LENGTH = 64
_VALIDATOR_MAX = BLOCK_ID_LENGTH - 12 - 8 - 1
_PAD = "~"
_BLOCK_ID = re.compile(r"^(?P<offset>[0-9a-f]{12})(?P<tag>[0-9a-f]{8})(?P<kind>[ELN])(?P<validator>[^~]*)~*$")
PARTIAL_SUFFIX = ".partial"
_BROKEN = -1
READ_CHUNK = 4 * 1024 * 1024


def checked_path(path: str) -> str:
    """``path`` relative to the store's root, refused (PERMANENT) if it could name anything outside
    it: an empty, ``.`` or ``..`` segment, a backslash or a control character. HTTP clients resolve
    ``..`` in a URL before sending it, so such a name would write into another folder or container."""
    stripped = path.strip("/")
    segments = stripped.split("/")
    if (
        not stripped
        or any(segment in ("", ".", "..") for segment in segments)
        or "\\" in stripped
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in stripped)
    ):
        raise ClassifiedError(
            Failure.of(
                ErrorCategory.PERMANENT, f"attachment path {path[:120]!r} would leave the attachments root"
            )
        )
    return stripped


def url_tag(url: str) -> str:
    """8 hex chars naming the source (URL without query: presigned signatures rotate, the file does not)."""
    return hashlib.sha256(strip_query(url).encode()).hexdigest()[:8]


def usable_validator(value: str | None) -> bool:
    return (
        bool(value)
        and len(value or "") <= _VALIDATOR_MAX
        and all(32 <= ord(c) < 127 and c != _PAD for c in value or "")
    )


@dataclass(frozen=True, slots=True)
class SourceVersion:
    """Which source bytes staged data belongs to: URL tag + strong validator (``""`` = none)."""

    url_tag: str
    validator: str = ""
    kind: str = "N"

    @classmethod
    def from_headers(cls, tag: str, etag: str | None, last_modified: str | None) -> SourceVersion:
        """Prefer a strong ETag, else Last-Modified; both usable in ``If-Range``."""
        if etag and not etag.startswith("W/") and usable_validator(etag):
            return cls(tag, etag, "E")
        if usable_validator(last_modified):
            return cls(tag, last_modified or "", "L")
        return cls(tag)

    @property
    def resumable(self) -> bool:
        """Staged data of a source without a validator cannot be proven current, so it is not reused."""
        return bool(self.validator)

    @property
    def version_tag(self) -> str:
        return hashlib.sha256(f"{self.url_tag}|{self.kind}|{self.validator}".encode()).hexdigest()[:16]

    def block_id(self, offset: int) -> str:
        return f"{offset:012x}{self.url_tag}{self.kind}{self.validator}".ljust(BLOCK_ID_LENGTH, _PAD)


def parse_block_id(block_id: str) -> tuple[int, SourceVersion] | None:
    match = _BLOCK_ID.match(block_id)
    if match is None or len(block_id) != BLOCK_ID_LENGTH:
        return None
    version = SourceVersion(match["tag"], match["validator"], match["kind"])
    return int(match["offset"], 16), version


@dataclass(frozen=True, slots=True)
class CommittedFile:
    """A finished file and what it recorded about itself (``sha256`` may be unknown;
    ``url_tag`` names the source URL it came from, :func:`url_tag`)."""

    size: int
    sha256: str | None
    content_type: str | None
    source: str | None
    etag: str | None = None
    url_tag: str | None = None


@dataclass(frozen=True, slots=True)
class Staged:
    """Durably staged bytes ``[0, length)`` of ``source``; ``offsets`` start each staged piece."""

    source: SourceVersion
    length: int
    offsets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CommitResult:
    created: bool
    file: CommittedFile


@runtime_checkable
class AttachmentStore(Protocol):
    """Write-once, resumable attachment files under one root (paths are relative to it)."""

    async def committed(self, path: str) -> CommittedFile | None:
        """The finished file at ``path``, or ``None``."""
        ...

    async def staged(self, path: str, *, url_tag: str, block_size: int) -> Staged | None:
        """The longest resumable staged prefix for a source with this URL tag, or ``None``."""
        ...

    async def stage(self, path: str, *, source: SourceVersion, offset: int, data: bytes) -> None:
        """Durably stage ``data`` at ``offset``; calls for one path arrive in offset order."""
        ...

    async def commit(
        self,
        path: str,
        *,
        source: SourceVersion,
        offsets: Sequence[int],
        size: int,
        sha256: str | None,
        content_type: str,
    ) -> CommitResult:
        """Make the staged ``[0, size)`` the file at ``path`` unless a file is there already."""
        ...

    async def put(
        self, path: str, data: bytes, *, source: SourceVersion, sha256: str, content_type: str
    ) -> CommitResult:
        """Create the file at ``path`` in one request (small files), write-once like ``commit``."""
        ...

    async def read_sha256(self, path: str, *, etag: str | None = None) -> str:
        """SHA-256 of the committed file, read back (used after a resumed transfer)."""
        ...

    async def record_sha256(self, path: str, sha256: str, *, etag: str | None) -> None:
        """Record ``sha256`` on the file, only if it is still version ``etag`` (any version when ``None``)."""
        ...

    async def close(self) -> None: ...


def _metadata(size: int, sha256: str | None, source: SourceVersion) -> dict[str, str]:
    return {
        META_SHA256: sha256 or "",
        META_SIZE: str(size),
        META_SOURCE: source.version_tag,
        META_URL_TAG: source.url_tag,
    }


def _committed_from(
    size: int, metadata: dict[str, str] | None, content_type: str | None, etag: str | None
) -> CommittedFile:
    meta = {k.lower(): v for k, v in (metadata or {}).items()}
    return CommittedFile(
        size=size,
        sha256=meta.get(META_SHA256) or None,
        content_type=content_type,
        source=meta.get(META_SOURCE) or None,
        etag=etag,
        url_tag=meta.get(META_URL_TAG) or None,
    )


def resolve_conflict(
    path: str, existing: CommittedFile | None, *, size: int, sha256: str | None, source: SourceVersion
) -> CommitResult:
    """A conditional create found a file: success when it holds the same bytes, else PERMANENT.

    Same bytes means equal recorded sha256; when either side's digest is unknown (a resumed
    transfer not yet stamped) it means the same size and source version (URL + validator).
    """
    if existing is None:
        raise ClassifiedError(
            Failure.of(ErrorCategory.TRANSIENT, f"commit of {path} conflicted with a vanishing file")
        )
    if sha256 and existing.sha256:
        same = sha256 == existing.sha256
    else:
        same = existing.size == size and existing.source == source.version_tag and source.resumable
    if not same:
        raise ClassifiedError(
            Failure.of(
                ErrorCategory.PERMANENT,
                f"{path} already exists with different content (size {existing.size}); not overwritten",
            )
        )
    return CommitResult(False, existing)


async def _sha256_stream(chunks: object) -> str:
    digest = hashlib.sha256()
    async for chunk in chunks:  # type: ignore[attr-defined]
        digest.update(chunk)
    return digest.hexdigest()


# -- Blob ---------------------------------------------------------------------------------------


class BlobAttachmentStore:
    """Blob API store: staged blocks, Put Block List with if-none-match ``*``."""

    def __init__(
        self, container: ContainerClient, prefix: str = "", *, owner: BlobServiceClient | None = None
    ) -> None:
        self._container = container
        self._prefix = prefix.strip("/")
        self._owner = owner

    @classmethod
    def from_settings(
        cls, settings: Settings, factory: StorageFactory, uri: str | None = None
    ) -> BlobAttachmentStore:
        """The store for ``uri`` (default ``XACT_ATTACHMENTS_URI``)."""
        from shared.storage import LakeLocation

        location = LakeLocation.parse(uri or settings.xact_attachments_uri)
        service = factory.async_lake_blob_service(location)
        return cls(service.get_container_client(location.container), location.path, owner=service)

    def name(self, path: str) -> str:
        path = checked_path(path)
        return f"{self._prefix}/{path}" if self._prefix else path

    async def committed(self, path: str) -> CommittedFile | None:
        try:
            props = await self._container.get_blob_client(self.name(path)).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return _committed_from(props.size, props.metadata, props.content_settings.content_type, props.etag)

    async def staged(self, path: str, *, url_tag: str, block_size: int) -> Staged | None:
        try:
            _, uncommitted = await self._container.get_blob_client(self.name(path)).get_block_list(
                "uncommitted"
            )
        except ResourceNotFoundError:
            return None
        by_version: dict[SourceVersion, dict[int, int]] = {}
        for block in uncommitted:
            parsed = parse_block_id(str(block.id))
            if parsed is None or parsed[1].url_tag != url_tag or not parsed[1].resumable:
                continue
            by_version.setdefault(parsed[1], {})[parsed[0]] = int(block.size)
        best: Staged | None = None
        for version, sizes in by_version.items():
            offset, offsets = 0, []
            # Only full blocks count: a short block is a tail whose commit did not happen.
            while sizes.get(offset) == block_size:
                offsets.append(offset)
                offset += block_size
            if offset and (best is None or offset > best.length):
                best = Staged(version, offset, tuple(offsets))
        return best

    async def stage(self, path: str, *, source: SourceVersion, offset: int, data: bytes) -> None:
        blob = self._container.get_blob_client(self.name(path))
        await blob.stage_block(source.block_id(offset), data, length=len(data))

    async def commit(
        self,
        path: str,
        *,
        source: SourceVersion,
        offsets: Sequence[int],
        size: int,
        sha256: str | None,
        content_type: str,
    ) -> CommitResult:
        blob = self._container.get_blob_client(self.name(path))
        try:
            answer = await blob.commit_block_list(
                [BlobBlock(source.block_id(offset)) for offset in offsets],
                content_settings=ContentSettings(content_type=content_type),
                metadata=_metadata(size, sha256, source),
                match_condition=MatchConditions.IfMissing,
            )
        except (ResourceExistsError, ResourceModifiedError):
            return resolve_conflict(path, await self.committed(path), size=size, sha256=sha256, source=source)
        etag = str(answer.get("etag") or "") or None
        return CommitResult(True, CommittedFile(size, sha256, content_type, source.version_tag, etag))

    async def put(
        self, path: str, data: bytes, *, source: SourceVersion, sha256: str, content_type: str
    ) -> CommitResult:
        blob = self._container.get_blob_client(self.name(path))
        try:
            answer = await blob.upload_blob(
                data,
                length=len(data),
                overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
                metadata=_metadata(len(data), sha256, source),
                max_concurrency=1,
            )
        except (ResourceExistsError, ResourceModifiedError):
            existing = await self.committed(path)
            if existing is None:
                # Uncommitted blocks of another attempt make Put Blob's if-none-match fail on
                # some services (Azurite) although no file exists; Put Block List does not.
                await self.stage(path, source=source, offset=0, data=data)
                return await self.commit(
                    path,
                    source=source,
                    offsets=(0,),
                    size=len(data),
                    sha256=sha256,
                    content_type=content_type,
                )
            return resolve_conflict(path, existing, size=len(data), sha256=sha256, source=source)
        etag = str(answer.get("etag") or "") or None
        return CommitResult(True, CommittedFile(len(data), sha256, content_type, source.version_tag, etag))

    async def read_sha256(self, path: str, *, etag: str | None = None) -> str:
        blob = self._container.get_blob_client(self.name(path))
        downloader = await blob.download_blob(
            max_concurrency=1, etag=etag or "*", match_condition=MatchConditions.IfNotModified
        )
        return await _sha256_stream(downloader.chunks())

    async def record_sha256(self, path: str, sha256: str, *, etag: str | None) -> None:
        blob = self._container.get_blob_client(self.name(path))
        props = await blob.get_blob_properties()
        metadata = dict(props.metadata or {})
        metadata[META_SHA256] = sha256
        await blob.set_blob_metadata(
            metadata, etag=etag or "*", match_condition=MatchConditions.IfNotModified
        )

    async def close(self) -> None:
        if self._owner is not None:
            await self._owner.close()
        else:
            await self._container.close()


# -- DataLake (DFS) -----------------------------------------------------------------------------


class DataLakeAttachmentStore:
    """DFS store: append + flush to ``<path>.partial`` (durable progress), rename when complete.

    The partial file records its source version in metadata; a retry resumes from its length
    only when the version matches. Appends may be in flight together, flushes go in order.
    """

    def __init__(self, file_system: FileSystemClient, prefix: str = "") -> None:
        self._fs = file_system
        self._prefix = prefix.strip("/")
        self._flushed: dict[str, int] = {}
        self._order = asyncio.Condition()

    @classmethod
    def from_settings(
        cls, settings: Settings, factory: StorageFactory, uri: str | None = None
    ) -> DataLakeAttachmentStore:
        """The store for ``uri`` (default ``XACT_ATTACHMENTS_URI``)."""
        from azure.storage.filedatalake.aio import DataLakeServiceClient

        from shared.storage import LakeLocation

        location = LakeLocation.parse(uri or settings.xact_attachments_uri)
        if factory.emulator_blob_base is not None:
            raise ClassifiedError(
                Failure.of(ErrorCategory.PERMANENT, "Azurite has no DFS API; use ATTACHMENT_API=blob")
            )
        service = DataLakeServiceClient(location.dfs_account_url, credential=factory.async_credential)
        return cls(service.get_file_system_client(location.container), location.path)

    def name(self, path: str) -> str:
        path = checked_path(path)
        return f"{self._prefix}/{path}" if self._prefix else path

    def _partial(self, path: str) -> str:
        return self.name(path) + PARTIAL_SUFFIX

    async def committed(self, path: str) -> CommittedFile | None:
        try:
            props = await self._fs.get_file_client(self.name(path)).get_file_properties()
        except ResourceNotFoundError:
            return None
        return _committed_from(props.size, props.metadata, props.content_settings.content_type, props.etag)

    async def staged(self, path: str, *, url_tag: str, block_size: int) -> Staged | None:
        try:
            props = await self._fs.get_file_client(self._partial(path)).get_file_properties()
        except ResourceNotFoundError:
            return None
        meta = {k.lower(): v for k, v in (props.metadata or {}).items()}
        version = SourceVersion(
            url_tag, meta.get("claimsflow_validator", ""), meta.get("claimsflow_kind", "N")
        )
        if meta.get("claimsflow_url_tag") != url_tag or not version.resumable or props.size <= 0:
            return None
        self._flushed[path] = int(props.size)
        return Staged(version, int(props.size), (0,))

    async def stage(self, path: str, *, source: SourceVersion, offset: int, data: bytes) -> None:
        partial = self._fs.get_file_client(self._partial(path))
        try:
            if offset == 0:
                await partial.create_file(
                    metadata={
                        "claimsflow_url_tag": source.url_tag,
                        "claimsflow_validator": source.validator,
                        "claimsflow_kind": source.kind,
                    }
                )
                async with self._order:
                    self._flushed[path] = 0
            await partial.append_data(data, offset=offset, length=len(data))
            async with self._order:
                await self._order.wait_for(lambda: self._flushed.get(path) in (offset, _BROKEN))
                if self._flushed.get(path) == _BROKEN:
                    raise ClassifiedError(
                        Failure.of(ErrorCategory.TRANSIENT, f"an earlier append to {path} failed")
                    )
            # Keep appends of later offsets that arrived early; they are flushed in their turn.
            await partial.flush_data(offset + len(data), retain_uncommitted_data=True)
        except BaseException:
            async with self._order:
                self._flushed[path] = _BROKEN
                self._order.notify_all()
            raise
        async with self._order:
            self._flushed[path] = offset + len(data)
            self._order.notify_all()

    async def commit(
        self,
        path: str,
        *,
        source: SourceVersion,
        offsets: Sequence[int],
        size: int,
        sha256: str | None,
        content_type: str,
    ) -> CommitResult:
        partial = self._fs.get_file_client(self._partial(path))
        await partial.flush_data(size, content_settings=DataLakeContentSettings(content_type=content_type))
        await partial.set_metadata(_metadata(size, sha256, source))
        target = f"{self._fs.file_system_name}/{self.name(path)}"
        try:
            renamed = await partial.rename_file(target, match_condition=MatchConditions.IfMissing)
        except HttpResponseError as exc:  # ResourceExistsError / ResourceModifiedError included
            if exc.status_code not in (409, 412):
                raise
            try:
                return resolve_conflict(
                    path, await self.committed(path), size=size, sha256=sha256, source=source
                )
            finally:
                await self._discard(path)
        self._flushed.pop(path, None)
        props = await renamed.get_file_properties()
        return CommitResult(True, CommittedFile(size, sha256, content_type, source.version_tag, props.etag))

    async def put(
        self, path: str, data: bytes, *, source: SourceVersion, sha256: str, content_type: str
    ) -> CommitResult:
        await self.stage(path, source=source, offset=0, data=data)
        return await self.commit(
            path, source=source, offsets=(0,), size=len(data), sha256=sha256, content_type=content_type
        )

    async def _discard(self, path: str) -> None:
        self._flushed.pop(path, None)
        with contextlib.suppress(ResourceNotFoundError):
            await self._fs.get_file_client(self._partial(path)).delete_file()

    async def read_sha256(self, path: str, *, etag: str | None = None) -> str:
        client = self._fs.get_file_client(self.name(path))
        downloader = await client.download_file(
            max_concurrency=1, etag=etag or "*", match_condition=MatchConditions.IfNotModified
        )
        return await _sha256_stream(downloader.chunks())

    async def record_sha256(self, path: str, sha256: str, *, etag: str | None) -> None:
        client = self._fs.get_file_client(self.name(path))
        props = await client.get_file_properties()
        metadata = dict(props.metadata or {})
        metadata[META_SHA256] = sha256
        await client.set_metadata(metadata, etag=etag or "*", match_condition=MatchConditions.IfNotModified)

    async def close(self) -> None:
        await self._fs.close()


def open_attachment_store(
    settings: Settings, factory: StorageFactory, uri: str | None = None
) -> AttachmentStore:
    """The store ``ATTACHMENT_API`` selects (blob by default) for ``uri`` (default
    ``XACT_ATTACHMENTS_URI``)."""
    from shared.config import AttachmentApi

    if settings.attachment_api is AttachmentApi.DFS:
        return DataLakeAttachmentStore.from_settings(settings, factory, uri)
    return BlobAttachmentStore.from_settings(settings, factory, uri)
