"""Transfers from the attachment simulator into the session Azurite, through the real stack."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from claimsflow.simulator import AttachmentSimulator, expected_bytes
from shared.config import Settings
from shared.errors import ClassifiedError, ErrorCategory
from shared.storage import LakeLocation, StorageFactory
from shared.transfer.attachment import TransferRequest, TransferResult, transfer_attachment
from shared.transfer.http import create_session
from shared.transfer.stores import BlobAttachmentStore, CommitResult, SourceVersion
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
    """An existing file is reported, never replaced, even when the new source differs."""
    async with harness(make_settings) as h:
        await h.transfer(f"https://{S3}/one/a.pdf?size=100", "x/a.pdf")
        result = await h.transfer(f"https://{S3}/two/a.pdf?size=200", "x/a.pdf")
        assert result.already_present and result.bytes_written == 100
        assert await h.read("x/a.pdf") == expected_bytes("/one/a.pdf", 100)
        assert len(h.sim.requests) == 1


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
            assert "timed out" in caught.value.failure.message
        finally:
            release.set()
            server.close()
            await server.wait_closed()


async def test_already_present_without_digest_gets_it_recorded(make_settings: Any) -> None:
    """A resumed commit that stopped before recording its sha256 is completed by the next call."""
    async with harness(make_settings) as h:
        data = expected_bytes("/late/a.pdf", 3000)
        source = SourceVersion("12345678", '"v1"', "E")
        await h.store.stage("x/a.pdf", source=source, offset=0, data=data)
        await h.store.commit(
            "x/a.pdf", source=source, offsets=[0], size=3000, sha256=None, content_type="application/pdf"
        )
        result = await h.transfer(f"https://{S3}/late/a.pdf?size=3000", "x/a.pdf")
        assert result.already_present and result.sha256 == sha(data)
        committed = await h.store.committed("x/a.pdf")
        assert committed is not None and committed.sha256 == sha(data)
        assert h.sim.requests == []
