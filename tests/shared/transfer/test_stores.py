"""Attachment stores: Blob on the session Azurite, DataLake on a loopback DFS fake.

Azurite has no DFS API, so :class:`FakeDfs` implements
just the REST calls :class:`DataLakeAttachmentStore` makes (create, append, flush, metadata,
properties, rename with destination conditions, delete, ranged read) with real semantics:
flushed data is durable, appends must be contiguous at flush, rename honours If-None-Match.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from azure.storage.filedatalake.aio import DataLakeServiceClient

from claimsflow.simulator import AttachmentSimulator, expected_bytes
from shared.config import Settings
from shared.errors import ClassifiedError, ErrorCategory
from shared.storage import EMULATOR_KEY, LakeLocation, StorageFactory
from shared.transfer.attachment import TransferRequest, transfer_attachment
from shared.transfer.http import create_session
from shared.transfer.stores import (
    BLOCK_ID_LENGTH,
    AttachmentStore,
    BlobAttachmentStore,
    DataLakeAttachmentStore,
    SourceVersion,
    parse_block_id,
    url_tag,
)
from shared.transfer.urls import UrlPolicy

S3 = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
MIB = 1024 * 1024
NOW = datetime(2026, 2, 14, 15, 30, tzinfo=UTC)
HTTP_DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
SOURCE = SourceVersion(url_tag("https://h/a.pdf"), '"etag-1"', "E")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- block ids ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_block_ids_are_fixed_length_and_round_trip() -> None:
    block_id = SOURCE.block_id(8 * MIB)
    assert len(block_id) == BLOCK_ID_LENGTH
    assert parse_block_id(block_id) == (8 * MIB, SOURCE)
    assert parse_block_id("x" * 64) is None


@pytest.mark.unit
def test_source_version_prefers_strong_etag_then_last_modified() -> None:
    tag = "0badcafe"
    assert SourceVersion.from_headers(tag, '"abc"', HTTP_DATE) == SourceVersion(tag, '"abc"', "E")
    assert SourceVersion.from_headers(tag, 'W/"weak"', HTTP_DATE) == SourceVersion(tag, HTTP_DATE, "L")
    assert SourceVersion.from_headers(tag, '"' + "x" * 60 + '"', HTTP_DATE).kind == "L"
    assert SourceVersion.from_headers(tag, '"a~b"', None) == SourceVersion(tag)
    assert not SourceVersion(tag).resumable
    assert url_tag("https://h/a.pdf?sig=1") == url_tag("https://h/a.pdf?sig=2")


# -- Blob on Azurite ---------------------------------------------------------------------------


@asynccontextmanager
async def blob_store(make_settings: Callable[..., Settings]) -> AsyncIterator[BlobAttachmentStore]:
    settings = make_settings()
    location = LakeLocation.parse(settings.xact_attachments_uri)
    factory = StorageFactory(settings)
    with factory.lake_blob_service(location) as service:
        service.create_container(location.container)
    store = BlobAttachmentStore.from_settings(settings, factory)
    try:
        yield store
    finally:
        await store.close()


@pytest.mark.azurite
async def test_blob_staged_prefix_is_contiguous_full_blocks_of_one_version(make_settings: Any) -> None:
    async with blob_store(make_settings) as store:
        bs = 1024
        other_version = SourceVersion(SOURCE.url_tag, '"etag-2"', "E")
        other_url = SourceVersion("ffffffff", '"etag-1"', "E")
        unvalidated = SourceVersion(SOURCE.url_tag)
        for offset in (0, bs, 3 * bs):  # gap at 2*bs
            await store.stage("a/f.pdf", source=SOURCE, offset=offset, data=b"a" * bs)
        await store.stage("a/f.pdf", source=other_version, offset=0, data=b"b" * bs)
        for offset in (0, bs, 2 * bs, 3 * bs):
            await store.stage("a/f.pdf", source=other_url, offset=offset, data=b"c" * bs)
            await store.stage("a/f.pdf", source=unvalidated, offset=offset, data=b"d" * bs)
        staged = await store.staged("a/f.pdf", url_tag=SOURCE.url_tag, block_size=bs)
        assert staged is not None
        assert (staged.source, staged.length, staged.offsets) == (SOURCE, 2 * bs, (0, bs))
        # A different block size does not count blocks of another size.
        assert await store.staged("a/f.pdf", url_tag=SOURCE.url_tag, block_size=2 * bs) is None
        assert await store.staged("a/missing.pdf", url_tag=SOURCE.url_tag, block_size=bs) is None
        assert await store.committed("a/f.pdf") is None


@pytest.mark.azurite
async def test_blob_commit_is_write_once(make_settings: Any) -> None:
    async with blob_store(make_settings) as store:
        first = await store.put(
            "a/f.pdf", b"one", source=SOURCE, sha256=sha(b"one"), content_type="application/pdf"
        )
        assert first.created and first.file.sha256 == sha(b"one")
        same = await store.put(
            "a/f.pdf", b"one", source=SOURCE, sha256=sha(b"one"), content_type="application/pdf"
        )
        assert not same.created
        with pytest.raises(ClassifiedError) as caught:
            await store.put(
                "a/f.pdf", b"two", source=SOURCE, sha256=sha(b"two"), content_type="application/pdf"
            )
        assert caught.value.failure.category is ErrorCategory.PERMANENT
        committed = await store.committed("a/f.pdf")
        assert committed is not None and committed.sha256 == sha(b"one") and committed.size == 3
        assert committed.content_type == "application/pdf"


@pytest.mark.azurite
async def test_blob_put_over_stale_staged_blocks(make_settings: Any) -> None:
    async with blob_store(make_settings) as store:
        await store.stage("a/f.pdf", source=SourceVersion("12345678", '"x"', "E"), offset=0, data=b"stale")
        result = await store.put(
            "a/f.pdf", b"fresh", source=SOURCE, sha256=sha(b"fresh"), content_type="text/plain"
        )
        assert result.created
        assert sha(b"fresh") == await store.read_sha256("a/f.pdf")


@pytest.mark.azurite
async def test_blob_unstamped_file_compares_by_source_version(make_settings: Any) -> None:
    async with blob_store(make_settings) as store:
        await store.stage("a/f.pdf", source=SOURCE, offset=0, data=b"data")
        result = await store.commit(
            "a/f.pdf", source=SOURCE, offsets=[0], size=4, sha256=None, content_type="application/pdf"
        )
        assert result.created and result.file.sha256 is None
        # A resumed writer of the same source version and size sees success...
        await store.stage("a/f.pdf", source=SOURCE, offset=0, data=b"data")
        again = await store.commit(
            "a/f.pdf", source=SOURCE, offsets=[0], size=4, sha256=None, content_type="x/y"
        )
        assert not again.created
        # ...another version is a conflict.
        other = SourceVersion(SOURCE.url_tag, '"etag-2"', "E")
        await store.stage("a/f.pdf", source=other, offset=0, data=b"DATA")
        with pytest.raises(ClassifiedError):
            await store.commit("a/f.pdf", source=other, offsets=[0], size=4, sha256=None, content_type="x/y")
        # Stamping the digest is conditional on the version that was read.
        digest = await store.read_sha256("a/f.pdf", etag=result.file.etag)
        await store.record_sha256("a/f.pdf", digest, etag=result.file.etag)
        committed = await store.committed("a/f.pdf")
        assert committed is not None and committed.sha256 == sha(b"data")


# -- DataLake on a loopback DFS fake -----------------------------------------------------------


@dataclass
class FakeFile:
    data: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    etag: str = '"0x1"'


@dataclass
class FakeDfs:
    """ADLS Gen2 path semantics for one account, in memory."""

    files: dict[str, FakeFile] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    port: int = 0
    _etags: Any = field(default_factory=lambda: itertools.count(2))

    def _headers(self, item: FakeFile) -> dict[str, str]:
        headers = {
            "ETag": item.etag,
            "Last-Modified": HTTP_DATE,
            "x-ms-request-id": "fake",
            "x-ms-version": "2025-01-05",
            "x-ms-resource-type": "file",
            "x-ms-blob-type": "BlockBlob",
            "Content-Type": item.content_type,
        }
        headers.update({f"x-ms-meta-{k}": v for k, v in item.metadata.items()})
        return headers

    def _touch(self, item: FakeFile) -> None:
        item.etag = f'"0x{next(self._etags)}"'

    @staticmethod
    def _error(status: int, code: str) -> web.Response:
        return web.Response(status=status, headers={"x-ms-error-code": code, "x-ms-request-id": "fake"})

    def _conditions_fail(self, request: web.Request, item: FakeFile | None) -> bool:
        if_match, if_none = request.headers.get("If-Match"), request.headers.get("If-None-Match")
        if if_none == "*" and item is not None:
            return True
        return bool(if_match) and (item is None or (if_match != "*" and if_match != item.etag))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.split("/", 2)[2]  # drop the account segment
        query = request.query
        self.calls.append((request.method, path, request.query_string))
        item = self.files.get(path)
        if request.method == "PUT" and query.get("resource") == "file":
            if self._conditions_fail(request, item):
                return self._error(409, "PathAlreadyExists")
            metadata = {}
            for pair in filter(None, request.headers.get("x-ms-properties", "").split(",")):
                key, _, value = pair.partition("=")
                metadata[key] = base64.b64decode(value).decode()
            self.files[path] = item = FakeFile(metadata=metadata)
            self._touch(item)
            return web.Response(status=201, headers=self._headers(item))
        if request.method == "PATCH" and query.get("action") == "append":
            if item is None:
                return self._error(404, "PathNotFound")
            item.pending[int(query["position"])] = await request.read()
            return web.Response(status=202, headers={"x-ms-request-id": "fake"})
        if request.method == "PATCH" and query.get("action") == "flush":
            if item is None:
                return self._error(404, "PathNotFound")
            target = int(query["position"])
            while len(item.data) < target and len(item.data) in item.pending:
                item.data += item.pending.pop(len(item.data))
            if len(item.data) != target:
                return self._error(400, "InvalidFlushPosition")
            if query.get("retainUncommittedData", "false") == "false":
                item.pending.clear()
            if "x-ms-content-type" in request.headers:
                item.content_type = request.headers["x-ms-content-type"]
            self._touch(item)
            return web.Response(status=200, headers=self._headers(item))
        if request.method == "PUT" and query.get("comp") == "metadata":
            if item is None:
                return self._error(404, "BlobNotFound")
            if self._conditions_fail(request, item):
                return self._error(412, "ConditionNotMet")
            item.metadata = {
                k[len("x-ms-meta-") :]: v
                for k, v in request.headers.items()
                if k.lower().startswith("x-ms-meta-")
            }
            self._touch(item)
            return web.Response(status=200, headers={"ETag": item.etag, "Last-Modified": HTTP_DATE})
        if request.method == "PUT" and "x-ms-rename-source" in request.headers:
            source = request.headers["x-ms-rename-source"].split("?", 1)[0].lstrip("/")
            moved = self.files.get(source)
            if moved is None:
                return self._error(404, "SourcePathNotFound")
            if self._conditions_fail(request, item):
                return self._error(412, "ConditionNotMet")
            self.files[path] = self.files.pop(source)
            return web.Response(status=201, headers={"ETag": moved.etag, "Last-Modified": HTTP_DATE})
        if request.method == "HEAD":
            if item is None:
                return self._error(404, "BlobNotFound")
            headers = self._headers(item)
            headers["Content-Length"] = str(len(item.data))
            return web.Response(status=200, headers=headers)
        if request.method == "GET":
            if item is None:
                return self._error(404, "BlobNotFound")
            if self._conditions_fail(request, item):
                return self._error(412, "ConditionNotMet")
            start, end = 0, len(item.data) - 1
            spec = request.headers.get("x-ms-range") or request.headers.get("Range")
            headers = self._headers(item)
            status = 200
            if spec:
                first, _, last = spec.split("=", 1)[1].partition("-")
                start, end = int(first), min(int(last) if last else end, len(item.data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(item.data)}"
                status = 206
            return web.Response(status=status, body=bytes(item.data[start : end + 1]), headers=headers)
        if request.method == "DELETE":
            if self.files.pop(path, None) is None:
                return self._error(404, "PathNotFound")
            return web.Response(status=200, headers={"x-ms-request-id": "fake"})
        return self._error(400, "UnsupportedByFake")

    def read(self, name: str) -> bytes | None:
        item = self.files.get(name)
        return bytes(item.data) if item is not None else None


@asynccontextmanager
async def fake_dfs() -> AsyncIterator[tuple[FakeDfs, DataLakeAttachmentStore]]:
    fake = FakeDfs()
    app = web.Application(client_max_size=64 * MIB)
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    service = DataLakeServiceClient(
        f"http://127.0.0.1:{fake.port}/devstoreaccount1",
        credential={"account_name": "devstoreaccount1", "account_key": EMULATOR_KEY},
    )
    store = DataLakeAttachmentStore(service.get_file_system_client("lake"), "Files/attachments")
    try:
        yield fake, store
    finally:
        await store.close()
        await service.close()
        await runner.cleanup()


@pytest.mark.unit
async def test_dfs_store_is_an_attachment_store() -> None:
    async with fake_dfs() as (_, store):
        assert isinstance(store, AttachmentStore)


@pytest.mark.unit
async def test_dfs_stage_commit_rename_and_write_once() -> None:
    async with fake_dfs() as (fake, store):
        for offset in (0, 3, 6):
            await store.stage("a/f.pdf", source=SOURCE, offset=offset, data=b"abc")
        staged = await store.staged("a/f.pdf", url_tag=SOURCE.url_tag, block_size=3)
        assert staged is not None and staged.length == 9 and staged.source == SOURCE
        result = await store.commit(
            "a/f.pdf",
            source=SOURCE,
            offsets=[0, 3, 6],
            size=9,
            sha256=sha(b"abc" * 3),
            content_type="application/pdf",
        )
        assert result.created
        assert fake.read("lake/Files/attachments/a/f.pdf") == b"abcabcabc"
        assert fake.read("lake/Files/attachments/a/f.pdf.partial") is None
        committed = await store.committed("a/f.pdf")
        assert committed is not None and committed.sha256 == sha(b"abc" * 3) and committed.size == 9
        assert committed.content_type == "application/pdf"
        assert await store.read_sha256("a/f.pdf") == sha(b"abc" * 3)

        same = await store.put(
            "a/f.pdf", b"abc" * 3, source=SOURCE, sha256=sha(b"abc" * 3), content_type="x/y"
        )
        assert not same.created
        with pytest.raises(ClassifiedError) as caught:
            await store.put("a/f.pdf", b"other", source=SOURCE, sha256=sha(b"other"), content_type="x/y")
        assert caught.value.failure.category is ErrorCategory.PERMANENT
        assert fake.read("lake/Files/attachments/a/f.pdf") == b"abcabcabc"
        assert fake.read("lake/Files/attachments/a/f.pdf.partial") is None  # the loser's partial is gone


@pytest.mark.unit
async def test_dfs_staged_ignores_other_sources() -> None:
    async with fake_dfs() as (_, store):
        await store.stage("a/f.pdf", source=SOURCE, offset=0, data=b"abc")
        assert await store.staged("a/f.pdf", url_tag="ffffffff", block_size=3) is None
        await store.stage("b/f.pdf", source=SourceVersion(SOURCE.url_tag), offset=0, data=b"abc")
        assert await store.staged("b/f.pdf", url_tag=SOURCE.url_tag, block_size=3) is None


@asynccontextmanager
async def dfs_transfer_env(
    make_settings: Callable[..., Settings], world: dict[str, Any]
) -> AsyncIterator[tuple[AttachmentSimulator, FakeDfs, Any]]:
    async with AttachmentSimulator(world) as sim, fake_dfs() as (fake, store):
        settings = make_settings(SIMULATION_MODE="true", SIMULATOR_URL=sim.url, TRANSFER_BLOCK_SIZE_MB=1)
        policy = UrlPolicy.from_settings(settings)
        async with create_session(settings, policy=policy) as session:

            async def run(url: str, path: str) -> Any:
                return await transfer_attachment(
                    TransferRequest(url, path),
                    session=session,
                    store=store,
                    policy=policy,
                    settings=settings,
                    now=NOW,
                )

            yield sim, fake, run


@pytest.mark.unit
async def test_dfs_transfer_resumes_and_is_byte_identical() -> None:
    def make_settings(**values: Any) -> Settings:
        return Settings(
            **{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ENVIRONMENT": "test", **values}
        )

    size = 5 * MIB + 77
    world = {"faults": [{"path_contains": "/dfs/", "cut_after": 3 * MIB + MIB // 2}]}
    async with dfs_transfer_env(make_settings, world) as (sim, fake, run):
        url = f"https://{S3}/dfs/video.mov?size={size}"
        with pytest.raises(ClassifiedError) as caught:
            await run(url, "p/video.mov")
        assert caught.value.failure.category is ErrorCategory.TRANSIENT
        result = await run(url, "p/video.mov")
        assert result.resumed_from in (MIB, 2 * MIB, 3 * MIB)  # the last flushed block before the cut
        assert sim.requests[1].range == f"bytes={result.resumed_from}-"
        assert sim.requests[1].bytes_sent == size - result.resumed_from == result.bytes_fetched
        expected = expected_bytes("/dfs/video.mov", size)
        assert fake.read("lake/Files/attachments/p/video.mov") == expected
        assert result.sha256 == sha(expected)
        again = await run(url, "p/video.mov")
        assert again.already_present and again.sha256 == sha(expected)
        small = await run(f"https://{S3}/dfs/small.pdf?size=100", "p/small.pdf")
        assert small.content_type == "application/pdf"
        assert fake.read("lake/Files/attachments/p/small.pdf") == expected_bytes("/dfs/small.pdf", 100)
