"""Transfers from the attachment simulator into the session Azurite, through the real stack."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import brotli
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from claimsflow.simulator import AttachmentSimulator, expected_bytes
from shared.config import Settings
from shared.errors import ClassifiedError, ErrorCategory
from shared.storage import LakeLocation, StorageFactory
from shared.transfer.attachment import TransferRequest, TransferResult, transfer_attachment
from shared.transfer.http import PinnedResolver, create_session
from shared.transfer.stores import BlobAttachmentStore, CommitResult, SourceVersion, url_tag
from shared.transfer.urls import UrlPolicy

pytestmark = pytest.mark.azurite

S3 = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
CLAIMX = "www.claimxperience.com"
MIB = 1024 * 1024
NOW = datetime(2026, 2, 14, 15, 30, tzinfo=UTC)


@dataclass
class Harness:
    sim: AttachmentSimulator
    settings: Settings
    store: BlobAttachmentStore
    policy: UrlPolicy
    session: aiohttp.ClientSession

    async def transfer(self, url: str, path: str, *, now: datetime = NOW) -> TransferResult:
        return await transfer_attachment(
            TransferRequest(url, path),
            session=self.session,
            store=self.store,
            policy=self.policy,
            settings=self.settings,
            now=now,
        )

    async def failure(self, url: str, path: str, *, now: datetime = NOW) -> ClassifiedError:
        with pytest.raises(ClassifiedError) as caught:
            await self.transfer(url, path, now=now)
        return caught.value

    async def read(self, path: str) -> bytes | None:
        blob = self.store._container.get_blob_client(self.store.name(path))
        if not await blob.exists():
            return None
        return bytes(await (await blob.download_blob()).readall())


def make_store(
    settings: Settings, store_class: type[BlobAttachmentStore] = BlobAttachmentStore
) -> BlobAttachmentStore:
    location = LakeLocation.parse(settings.xact_attachments_uri)
    factory = StorageFactory(settings)
    with factory.lake_blob_service(location) as service:
        if not service.get_container_client(location.container).exists():
            service.create_container(location.container)
    return store_class.from_settings(settings, factory)


@asynccontextmanager
async def harness(
    make_settings: Callable[..., Settings],
    world: dict[str, Any] | None = None,
    *,
    store_class: type[BlobAttachmentStore] = BlobAttachmentStore,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    async with AttachmentSimulator(world or {}) as sim:
        settings = make_settings(SIMULATION_MODE="true", SIMULATOR_URL=sim.url, **overrides)
        store = make_store(settings, store_class)
        policy = UrlPolicy.from_settings(settings)
        try:
            async with create_session(settings, policy=policy) as session:
                yield Harness(sim, settings, store, policy, session)
        finally:
            await store.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_small_transfer_is_byte_identical_and_second_is_already_present(make_settings: Any) -> None:
    async with harness(make_settings) as h:
        url = f"https://{S3}/exports/A1/estimate.pdf?size=5000&X-Amz-Signature=abc"
        first = await h.transfer(url, "documentsReceived/A1/t1/A1_estimate.pdf")
        expected = expected_bytes("/exports/A1/estimate.pdf", 5000)
        assert await h.read("documentsReceived/A1/t1/A1_estimate.pdf") == expected
        assert first == TransferResult(5000, "application/pdf", sha(expected), 0, False, 5000)
        props = await h.store._container.get_blob_client(
            h.store.name("documentsReceived/A1/t1/A1_estimate.pdf")
        ).get_blob_properties()

        second = await h.transfer(url, "documentsReceived/A1/t1/A1_estimate.pdf")
        assert second.already_present and second.sha256 == sha(expected) and second.bytes_fetched == 0
        assert len(h.sim.requests) == 1  # no second download
        again = await h.store._container.get_blob_client(
            h.store.name("documentsReceived/A1/t1/A1_estimate.pdf")
        ).get_blob_properties()
        assert again.etag == props.etag and again.last_modified == props.last_modified


async def test_multi_block_transfer_is_byte_identical(make_settings: Any) -> None:
    async with harness(make_settings, TRANSFER_BLOCK_SIZE_MB=1) as h:
        size = 3 * MIB + 12345
        result = await h.transfer(f"https://{CLAIMX}/media/video.mp4?size={size}", "p/media/video.mp4")
        expected = expected_bytes("/media/video.mp4", size)
        assert await h.read("p/media/video.mp4") == expected
        assert result.sha256 == sha(expected) and result.bytes_written == size
        assert result.content_type == "video/mp4"


@pytest.mark.parametrize("content_type", ["application/octet-stream", "binary/octet-stream"])
async def test_octet_stream_is_accepted(make_settings: Any, content_type: str) -> None:
    world = {"faults": [{"path_contains": "/generic", "content_type": content_type}]}
    async with harness(make_settings, world) as h:
        result = await h.transfer(f"https://{S3}/generic/report.docx?size=100", "x/report.docx")
        assert (
            result.content_type == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        )
        assert await h.read("x/report.docx") == expected_bytes("/generic/report.docx", 100)


async def test_mismatched_content_type_is_transient(make_settings: Any) -> None:
    world = {"faults": [{"path_contains": "/odd", "content_type": "text/html"}]}
    async with harness(make_settings, world) as h:
        error = await h.failure(f"https://{S3}/odd/a.pdf", "x/a.pdf")
        assert error.failure.category is ErrorCategory.TRANSIENT
        assert await h.read("x/a.pdf") is None


async def test_404_is_permanent_and_redacted(make_settings: Any) -> None:
    world = {"faults": [{"path_contains": "/gone", "statuses": [404], "repeat": True}]}
    async with harness(make_settings, world) as h:
        error = await h.failure(f"https://{S3}/gone/a.pdf?X-Amz-Signature=TOPSECRET", "x/a.pdf")
        assert error.failure.category is ErrorCategory.PERMANENT
        assert error.failure.http_status == 404
        assert "TOPSECRET" not in error.failure.message and "TOPSECRET" not in str(error)


async def test_503_is_transient_then_succeeds(make_settings: Any) -> None:
    world = {"faults": [{"path_contains": "/flaky", "statuses": [503, 503]}]}
    async with harness(make_settings, world) as h:
        url = f"https://{S3}/flaky/a.pdf?size=777"
        for _ in range(2):
            error = await h.failure(url, "x/a.pdf")
            assert error.failure.category is ErrorCategory.TRANSIENT and error.failure.http_status == 503
        result = await h.transfer(url, "x/a.pdf")
        assert not result.already_present
        assert await h.read("x/a.pdf") == expected_bytes("/flaky/a.pdf", 777)


async def test_zero_bytes_is_transient(make_settings: Any) -> None:
    async with harness(make_settings) as h:
        error = await h.failure(f"https://{S3}/empty/a.pdf?size=0", "x/a.pdf")
        assert error.failure.category is ErrorCategory.TRANSIENT
        assert "empty" in error.failure.message
        assert await h.read("x/a.pdf") is None


async def test_short_body_is_transient(make_settings: Any) -> None:
    world = {"faults": [{"path_contains": "/short", "cut_after": 1000}]}
    async with harness(make_settings, world) as h:
        error = await h.failure(f"https://{S3}/short/a.pdf?size=5000", "x/a.pdf")
        assert error.failure.category is ErrorCategory.TRANSIENT
        assert await h.read("x/a.pdf") is None


async def test_too_large_is_permanent(make_settings: Any) -> None:
    async with harness(make_settings, MAX_ATTACHMENT_MB=1) as h:
        error = await h.failure(f"https://{S3}/big/a.pdf?size={2 * MIB}", "x/a.pdf")
        assert error.failure.category is ErrorCategory.PERMANENT
        assert await h.read("x/a.pdf") is None


async def test_expired_s3_url_is_permanent_before_any_request(make_settings: Any) -> None:
    async with harness(make_settings) as h:
        url = f"https://{S3}/exp/a.pdf?X-Amz-Date=20260214T150000Z&X-Amz-Expires=600&X-Amz-Signature=s"
        error = await h.failure(url, "x/a.pdf", now=NOW)
        assert error.failure.category is ErrorCategory.PERMANENT
        assert "expired" in error.failure.message
        assert h.sim.requests == []
        # The same URL within its lifetime goes through (the simulator's own clock is real time,
        # so sign it now).
        fresh = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        ok = f"https://{S3}/exp/a.pdf?X-Amz-Date={fresh}&X-Amz-Expires=600&X-Amz-Signature=s"
        assert (await h.transfer(ok, "x/a.pdf", now=datetime.now(UTC))).bytes_written == 4096


async def test_expired_by_the_source_is_permanent(make_settings: Any) -> None:
    async with harness(make_settings) as h:
        # Our clock says valid, the source (S3 rules) says expired: 403 → PERMANENT after one request.
        url = f"https://{S3}/exp/a.pdf?X-Amz-Date=20200101T000000Z&X-Amz-Expires=60"
        error = await h.failure(url, "x/a.pdf", now=datetime(2020, 1, 1, tzinfo=UTC))
        assert error.failure.category is ErrorCategory.PERMANENT and error.failure.http_status == 403


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example.com/a.pdf", "allowlist"),
        (f"http://{S3}/a.pdf", "HTTPS"),
        ("https://169.254.169.254/latest/meta-data/a.pdf", "blocked"),
        (f"https://{S3}/exports/noextension", "extension"),
        (f"https://{S3}/exports/tool.exe", "extension"),
    ],
)
async def test_rejected_before_any_request(make_settings: Any, url: str, reason: str) -> None:
    async with harness(make_settings) as h:
        error = await h.failure(url, "x/a.pdf")
        assert error.failure.category is ErrorCategory.PERMANENT and reason in error.failure.message
        assert h.sim.requests == []


@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", f"http://{S3}/exports/a.pdf", "https://10.0.0.1/a.pdf"],
)
async def test_redirect_hop_rejected(make_settings: Any, location: str) -> None:
    world = {"faults": [{"path_contains": "/media/", "redirect": location}]}
    async with harness(make_settings, world) as h:
        error = await h.failure(f"https://{CLAIMX}/media/a.pdf", "x/a.pdf")
        assert error.failure.category is ErrorCategory.PERMANENT and "redirect hop" in error.failure.message
        assert [r.path for r in h.sim.requests] == ["/media/a.pdf"]


async def test_claimx_redirect_to_s3_is_followed(make_settings: Any) -> None:
    location = f"https://{S3}/store/a.jpg?size=3000&X-Amz-Date=21000101T000000Z&X-Amz-Expires=600"
    world = {"faults": [{"path_contains": "/service/", "redirect": location}]}
    async with harness(make_settings, world) as h:
        result = await h.transfer(
            f"https://{CLAIMX}/service/media/a.jpg?systemDate=1&expires=2", "p/media/a.jpg"
        )
        assert result.content_type == "image/jpeg"
        assert await h.read("p/media/a.jpg") == expected_bytes("/store/a.jpg", 3000)
        assert [(r.host, r.path) for r in h.sim.requests] == [
            (CLAIMX, "/service/media/a.jpg"),
            (S3, "/store/a.jpg"),
        ]


async def test_large_transfer_cut_in_the_middle_resumes_without_refetching(make_settings: Any) -> None:
    size = 40_000_000
    world = {"faults": [{"path_contains": "/large/", "cut_after": 20_000_000}]}
    async with harness(make_settings, world, TRANSFER_BLOCK_SIZE_MB=4) as h:
        url = f"https://{S3}/large/video.mp4?size={size}"
        error = await h.failure(url, "x/video.mp4")
        assert error.failure.category is ErrorCategory.TRANSIENT
        assert await h.read("x/video.mp4") is None
        assert h.sim.bytes_served["/large/video.mp4"] == 20_000_000

        result = await h.transfer(url, "x/video.mp4")
        # Resume point: the last full 4 MiB block staged before the cut. (aiohttp drops bytes it had
        # buffered but not yet handed out when a body breaks, so it can be a block or two early.)
        assert result.resumed_from % (4 * MIB) == 0
        assert 8 * MIB <= result.resumed_from <= 20_000_000
        first, second = h.sim.requests
        assert first.range is None
        assert second.range == f"bytes={result.resumed_from}-" and second.if_range is not None
        assert second.status == 206
        # The second request fetched only the rest: the first half was not fetched again.
        assert second.bytes_sent == size - result.resumed_from == result.bytes_fetched
        assert h.sim.bytes_served["/large/video.mp4"] == 20_000_000 + size - result.resumed_from

        expected = expected_bytes("/large/video.mp4", size)
        assert await h.read("x/video.mp4") == expected
        # The digest of a resumed transfer is read back after the commit and recorded.
        assert result.sha256 == sha(expected)
        committed = await h.store.committed("x/video.mp4")
        assert committed is not None and committed.sha256 == sha(expected) and committed.size == size


async def test_200_to_a_ranged_request_restarts_from_zero(make_settings: Any) -> None:
    size = 10 * MIB
    world = {"faults": [{"path_contains": "/norange/", "cut_after": 6 * MIB}]}
    async with harness(make_settings, world, TRANSFER_BLOCK_SIZE_MB=2) as h:
        url = f"https://{S3}/norange/a.pdf?size={size}"
        await h.failure(url, "x/a.pdf")
        h.sim.add_fault({"path_contains": "/norange/", "ignore_range": True})
        result = await h.transfer(url, "x/a.pdf")
        assert h.sim.requests[1].range is not None and h.sim.requests[1].status == 200
        assert result.resumed_from == 0 and result.bytes_fetched == size
        expected = expected_bytes("/norange/a.pdf", size)
        assert await h.read("x/a.pdf") == expected and result.sha256 == sha(expected)


async def test_changed_source_version_is_never_mixed(make_settings: Any) -> None:
    size = 10 * MIB
    world = {"faults": [{"path_contains": "/changing/", "cut_after": 6 * MIB}]}
    async with harness(make_settings, world, TRANSFER_BLOCK_SIZE_MB=2) as h:
        url = f"https://{S3}/changing/a.pdf?size={size}"
        await h.failure(url, "x/a.pdf")
        h.sim.add_fault({"path_contains": "/changing/", "etag": '"version-2"'})
        result = await h.transfer(url, "x/a.pdf")
        # If-Range did not match the new ETag: the source answered 200 and the transfer restarted.
        assert h.sim.requests[1].if_range != '"version-2"' and h.sim.requests[1].status == 200
        assert result.resumed_from == 0
        assert await h.read("x/a.pdf") == expected_bytes("/changing/a.pdf", size)


class RacingStore(BlobAttachmentStore):
    """A real Blob store whose commit loses a race: a competitor creates the file just before."""

    competitor: bytes = b""

    async def _compete(self, path: str) -> None:
        data, rival = self.competitor, SourceVersion("00000000", '"rival"', "E")
        await BlobAttachmentStore.stage(self, path, source=rival, offset=0, data=data)
        await BlobAttachmentStore.commit(
            self,
            path,
            source=rival,
            offsets=[0],
            size=len(data),
            sha256=sha(data),
            content_type="application/pdf",
        )

    async def commit(self, path: str, *, offsets: Sequence[int], **kwargs: Any) -> CommitResult:  # type: ignore[override]
        await self._compete(path)
        return await super().commit(path, offsets=offsets, **kwargs)

    async def put(self, path: str, data: bytes, **kwargs: Any) -> CommitResult:  # type: ignore[override]
        await self._compete(path)
        return await super().put(path, data, **kwargs)


@pytest.mark.parametrize("size", [5000, 5 * MIB])
async def test_commit_race_with_different_bytes_never_overwrites(make_settings: Any, size: int) -> None:
    async with harness(make_settings, store_class=RacingStore, TRANSFER_BLOCK_SIZE_MB=2) as h:
        assert isinstance(h.store, RacingStore)
        h.store.competitor = b"other bytes entirely"
        error = await h.failure(f"https://{S3}/race/a.pdf?size={size}", "x/a.pdf")
        assert error.failure.category is ErrorCategory.PERMANENT
        assert "not overwritten" in error.failure.message
        assert await h.read("x/a.pdf") == b"other bytes entirely"


@pytest.mark.parametrize("size", [5000, 5 * MIB])
async def test_commit_race_with_same_bytes_is_success(make_settings: Any, size: int) -> None:
    async with harness(make_settings, store_class=RacingStore, TRANSFER_BLOCK_SIZE_MB=2) as h:
        assert isinstance(h.store, RacingStore)
        expected = expected_bytes("/race/a.pdf", size)
        h.store.competitor = expected
        result = await h.transfer(f"https://{S3}/race/a.pdf?size={size}", "x/a.pdf")
        assert result.already_present and result.sha256 == sha(expected)
        assert await h.read("x/a.pdf") == expected


async def test_rewrite_of_existing_file_with_other_content_is_refused(make_settings: Any) -> None:
    """A file already at the path is reused only when it came from the same source. Another
    source's file is never replaced, and its size and digest are never reported for this one:
    the transfer downloads, finds other bytes at the path, and fails PERMANENT."""
    async with harness(make_settings) as h:
        first = await h.transfer(f"https://{S3}/one/a.pdf?size=100", "x/a.pdf")
        with pytest.raises(ClassifiedError) as caught:
            await h.transfer(f"https://{S3}/two/a.pdf?size=200", "x/a.pdf")
        assert caught.value.failure.category is ErrorCategory.PERMANENT
        assert "already exists with different content" in caught.value.failure.message
        assert await h.read("x/a.pdf") == expected_bytes("/one/a.pdf", 100)
        # the same source again is reused without a request
        again = await h.transfer(f"https://{S3}/one/a.pdf?size=100&X-Amz-Signature=new", "x/a.pdf")
        assert again.already_present and again.sha256 == first.sha256
        assert len(h.sim.requests) == 2


async def test_same_bytes_from_another_source_are_accepted_by_digest(make_settings: Any) -> None:
    async with harness(make_settings) as h:
        first = await h.transfer(f"https://{S3}/one/a.pdf?size=100", "x/a.pdf")
        # another URL (another source) whose answer holds the very same bytes
        h.sim.add_fault({"path_contains": "/copy/", "redirect": f"https://{S3}/one/a.pdf?size=100"})
        second = await h.transfer(f"https://{S3}/copy/a.pdf", "x/a.pdf")
        assert (second.sha256, second.bytes_written) == (first.sha256, 100)
        assert len(h.sim.requests) == 3  # downloaded and compared, not taken on trust


async def test_timeout_is_transient(make_settings: Any) -> None:
    async with harness(make_settings, TRANSFER_TIMEOUT_SECONDS=1) as h:
        # A source that accepts the connection and never answers.
        release = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await release.wait()
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            settings = h.settings.model_copy(update={"simulator_url": f"http://127.0.0.1:{port}"})
            async with create_session(settings, policy=h.policy) as session:
                with pytest.raises(ClassifiedError) as caught:
                    await transfer_attachment(
                        TransferRequest(f"https://{S3}/slow/a.pdf", "x/a.pdf"),
                        session=session,
                        store=h.store,
                        policy=h.policy,
                        settings=settings,
                        now=NOW,
                    )
            assert caught.value.failure.category is ErrorCategory.TRANSIENT
            assert caught.value.failure.message.startswith("transfer timed out: the total of 1 s ran out")
        finally:
            release.set()
            server.close()
            await server.wait_closed()


async def test_already_present_without_digest_gets_it_recorded(make_settings: Any) -> None:
    """A resumed commit that stopped before recording its sha256 is completed by the next call."""
    async with harness(make_settings) as h:
        data = expected_bytes("/late/a.pdf", 3000)
        source = SourceVersion(url_tag(f"https://{S3}/late/a.pdf"), '"v1"', "E")
        await h.store.stage("x/a.pdf", source=source, offset=0, data=data)
        await h.store.commit(
            "x/a.pdf", source=source, offsets=[0], size=3000, sha256=None, content_type="application/pdf"
        )
        result = await h.transfer(f"https://{S3}/late/a.pdf?size=3000", "x/a.pdf")
        assert result.already_present and result.sha256 == sha(data)
        committed = await h.store.committed("x/a.pdf")
        assert committed is not None and committed.sha256 == sha(data)
        assert h.sim.requests == []


def all_blobs(settings: Settings) -> set[tuple[str, str]]:
    location = LakeLocation.parse(settings.xact_attachments_uri)
    with StorageFactory(settings).lake_blob_service(location) as service:
        return {
            (container.name, blob.name)
            for container in service.list_containers()
            for blob in service.get_container_client(container.name).list_blobs()
        }


@pytest.mark.parametrize(
    "path",
    [
        "a/../../../../otherc/evil.pdf",
        "../evil.pdf",
        "a/./b.pdf",
        "a//b.pdf",
        "a\\..\\..\\evil.pdf",
        "a/b\x00.pdf",
        "..",
        "",
    ],
)
async def test_nothing_is_written_outside_the_attachments_root(make_settings: Any, path: str) -> None:
    """HTTP clients resolve ``..`` before sending a URL, so a blob name holding one would land in
    another folder or container: the store refuses such a path before any request."""
    async with harness(make_settings) as h:
        before = all_blobs(h.settings)
        failure = (await h.failure(f"https://{S3}/evil.pdf?size=100", path)).failure
        assert failure.category is ErrorCategory.PERMANENT
        assert "would leave the attachments root" in failure.message
        with pytest.raises(ClassifiedError):
            await h.store.put(
                path, b"x", source=SourceVersion("00000000"), sha256="0" * 64, content_type="application/pdf"
            )
        assert all_blobs(h.settings) == before
        assert h.sim.requests == []


# -- what a source's answer holds: encodings, error pages, bad dates, stalls ------------------------

PHOTO = expected_bytes("/exports/edge/photo.jpg", 300_000)


@asynccontextmanager
async def source(
    make_settings: Any, answer: Callable[[web.Request], Awaitable[web.StreamResponse]], **overrides: Any
) -> AsyncIterator[Harness]:
    """A harness whose attachment host is answered by ``answer`` (a loopback aiohttp app)."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with harness(make_settings, **overrides) as h:
            settings = h.settings.model_copy(update={"simulator_url": f"http://127.0.0.1:{port}"})
            async with create_session(settings, policy=h.policy, read_timeout=0.5) as session:
                yield Harness(h.sim, settings, h.store, h.policy, session)
    finally:
        await runner.cleanup()


def encoded(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "raw-deflate":
        squeezer = zlib.compressobj(wbits=-15)
        return squeezer.compress(data) + squeezer.flush()
    return brotli.compress(data)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "br"])
async def test_encoded_answers_are_stored_decoded_with_the_decoded_digest(
    make_settings: Any, coding: str
) -> None:
    body = encoded(coding, PHOTO)

    async def answer(request: web.Request) -> web.Response:
        header = "deflate" if coding == "raw-deflate" else coding
        return web.Response(body=body, headers={"Content-Encoding": header, "Content-Type": "image/jpeg"})

    async with source(make_settings, answer) as h:
        result = await h.transfer(f"https://{S3}/exports/edge/photo.jpg", "edge/photo.jpg")
        assert await h.read("edge/photo.jpg") == PHOTO
        assert (result.bytes_written, result.sha256) == (len(PHOTO), sha(PHOTO))


async def test_a_decompression_bomb_stops_at_the_size_limit(make_settings: Any) -> None:
    bomb = gzip.compress(b"\0" * (3 * MIB))  # about 3 KiB on the wire

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    async with source(make_settings, answer, MAX_ATTACHMENT_MB=2) as h:
        failure = (await h.failure(f"https://{S3}/bomb.jpg", "edge/bomb.jpg")).failure
        assert failure.category is ErrorCategory.PERMANENT and "limit" in failure.message
        assert await h.read("edge/bomb.jpg") is None


@pytest.mark.parametrize(
    ("headers", "body", "category", "words"),
    [
        ({"Content-Encoding": "compress"}, b"x" * 100, ErrorCategory.PERMANENT, "cannot be decoded"),
        ({"Content-Encoding": "zstd"}, b"x" * 100, ErrorCategory.PERMANENT, "cannot be decoded"),
        ({"Content-Encoding": "gzip"}, b"not gzip at all", ErrorCategory.TRANSIENT, "corrupt"),
        ({"Content-Encoding": "gzip"}, gzip.compress(PHOTO)[:5000], ErrorCategory.TRANSIENT, "ended before"),
        (
            {"Content-Type": "application/octet-stream"},
            b"<!DOCTYPE html><html><body>Sign in</body></html>",
            ErrorCategory.TRANSIENT,
            "an HTML page was served for a .pdf file",
        ),
        (
            {"Content-Type": "application/octet-stream"},
            b'\xef\xbb\xbf  <?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
            ErrorCategory.TRANSIENT,
            "an XML page was served for a .pdf file",
        ),
    ],
)
async def test_answers_that_are_not_the_file(
    make_settings: Any, headers: dict[str, str], body: bytes, category: ErrorCategory, words: str
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    async with source(make_settings, answer) as h:
        failure = (await h.failure(f"https://{S3}/exports/edge/report.pdf", "edge/report.pdf")).failure
        assert failure.category is category
        assert words in failure.message
        assert await h.read("edge/report.pdf") is None


async def test_an_html_file_may_be_html(make_settings: Any) -> None:
    page = b"<!DOCTYPE html><html><body>the report</body></html>"

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=page, headers={"Content-Type": "text/html"})

    async with source(make_settings, answer) as h:
        await h.transfer(f"https://{S3}/exports/edge/report.html", "edge/report.html")
        assert await h.read("edge/report.html") == page


@pytest.mark.parametrize(
    "query",
    [
        "X-Amz-Date=20260214T150000Z&X-Amz-Expires=999999999999999",
        "X-Amz-Date=99991231T235959Z&X-Amz-Expires=604800",
        "X-Amz-Date=20260214T150000Z&X-Amz-Expires=" + "9" * 5000,
    ],
)
async def test_overflowing_presigned_dates_are_permanent_before_any_request(
    make_settings: Any, query: str
) -> None:
    async with harness(make_settings) as h:
        url = f"https://{S3}/exports/a.pdf?X-Amz-Signature=SIG1&{query}"
        failure = (await h.failure(url, "x/a.pdf")).failure
        assert failure.category is ErrorCategory.PERMANENT
        assert failure.message.startswith("presigned URL never valid: X-Amz-Expires overflows the calendar")
        assert "SIG1" not in failure.message
        assert h.sim.requests == []


async def test_a_stalled_read_names_the_read_timeout(make_settings: Any) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/pdf", "Content-Length": "9000"})
        await response.prepare(request)
        await response.write(b"%PDF-1.7 " * 100)
        await asyncio.sleep(5)  # then nothing more
        return response

    async with source(make_settings, answer) as h:
        failure = (await h.failure(f"https://{S3}/exports/stall.pdf", "x/stall.pdf")).failure
        assert failure.category is ErrorCategory.TRANSIENT
        assert failure.message.startswith("reading timed out: no data for 0.5 s")


class TableDns(AbstractResolver):
    """A DNS that answers from a table: names that do not exist anywhere else."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        address = self.answers[host.rstrip(".")]
        return [{"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


async def test_resolved_addresses_are_checked_and_the_checked_one_is_connected_to(make_settings: Any) -> None:
    hits: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"%PDF-1.7 pinned", headers={"Content-Type": "application/pdf"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    dns = TableDns({"files.claims.example": "127.0.0.1", "public.claims.example": "203.0.114.9"})
    url = f"http://files.claims.example:{port}/a.pdf"
    try:
        # outside simulation mode an allowlisted name that resolves to loopback is refused
        settings = make_settings(ALLOWED_ATTACHMENT_HOSTS="files.claims.example")
        async with create_session(settings, dns=dns) as session:
            with pytest.raises(ClassifiedError) as caught:
                await session.get(url)
        failure = caught.value.failure
        assert failure.category is ErrorCategory.PERMANENT
        assert failure.message == "host 'files.claims.example' resolves to 127.0.0.1, not a public address"
        assert hits == []
        pinned = PinnedResolver(UrlPolicy.from_settings(settings), dns)
        assert [a["host"] for a in await pinned.resolve("public.claims.example")] == ["203.0.114.9"]
        # in simulation mode loopback is allowed: the request reaches the address the resolver
        # gave for a name no real DNS knows, so the connection went to the checked answer
        simulated = make_settings(SIMULATION_MODE="true", SIMULATOR_URL="http://127.0.0.1:9")
        async with create_session(simulated, dns=dns) as session, session.get(url) as response:
            assert await response.read() == b"%PDF-1.7 pinned"
        assert hits == ["/a.pdf"]
        assert dns.asked.count("files.claims.example") == 2
    finally:
        await runner.cleanup()


async def test_a_connection_never_accepted_names_the_connect_timeout(make_settings: Any) -> None:
    """A listener whose backlog is full never completes a handshake: connecting times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    try:
        async with harness(make_settings) as h:
            settings = h.settings.model_copy(update={"simulator_url": f"http://127.0.0.1:{port}"})
            async with create_session(settings, policy=h.policy, connect_timeout=0.5) as session:
                with pytest.raises(ClassifiedError) as caught:
                    await transfer_attachment(
                        TransferRequest(f"https://{S3}/exports/a.pdf", "x/a.pdf"),
                        session=session,
                        store=h.store,
                        policy=h.policy,
                        settings=settings,
                        now=NOW,
                    )
        assert caught.value.failure.category is ErrorCategory.TRANSIENT
        assert caught.value.failure.message.startswith("connecting timed out after 0.5 s")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
