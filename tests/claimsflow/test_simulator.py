from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from claimsflow.simulator import AttachmentSimulator, expected_bytes, iter_content, load_world

pytestmark = pytest.mark.unit


def rule(path: str, size: int) -> bytes:
    """The content rule written out plainly."""
    digests = [hashlib.sha256(f"{path}:{i}".encode()).digest() for i in range((size + 31) // 32)]
    return b"".join(digests)[:size]


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 100, 4096, 300_001])
def test_expected_bytes_follow_the_rule(size: int) -> None:
    assert expected_bytes("/a/b.pdf", size) == rule("/a/b.pdf", size)


def test_content_is_generated_in_bounded_chunks() -> None:
    chunks = list(iter_content("/big.mp4", 5, 5 + 3 * 1024 * 1024))
    assert max(len(c) for c in chunks) <= 256 * 1024
    assert b"".join(chunks) == rule("/big.mp4", 5 + 3 * 1024 * 1024)[5:]


async def test_get_head_and_headers() -> None:
    async with AttachmentSimulator() as sim, aiohttp.ClientSession() as session:
        async with session.get(f"{sim.url}/exports/a/estimate.pdf") as response:
            body = await response.read()
            etag = response.headers["ETag"]
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/pdf"
            assert response.headers["Accept-Ranges"] == "bytes"
        assert body == rule("/exports/a/estimate.pdf", 4096)
        async with session.head(f"{sim.url}/exports/a/estimate.pdf") as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == "4096"
            assert response.headers["ETag"] == etag
            assert await response.read() == b""
        async with session.get(f"{sim.url}/m/clip.mov?size=10") as response:
            assert response.headers["Content-Type"] == "video/quicktime"
            assert await response.read() == rule("/m/clip.mov", 10)
        assert sim.bytes_served["/exports/a/estimate.pdf"] == 4096
        assert [r.method for r in sim.requests] == ["GET", "HEAD", "GET"]


async def test_ranges() -> None:
    full = rule("/r/a.pdf", 1000)
    async with AttachmentSimulator() as sim, aiohttp.ClientSession() as session:
        url = f"{sim.url}/r/a.pdf?size=1000"
        etag = (await session.head(url)).headers["ETag"]
        for header, status, expected, content_range in [
            ("bytes=100-199", 206, full[100:200], "bytes 100-199/1000"),
            ("bytes=900-", 206, full[900:], "bytes 900-999/1000"),
            ("bytes=-10", 206, full[-10:], "bytes 990-999/1000"),
            ("bytes=990-5000", 206, full[990:], "bytes 990-999/1000"),
        ]:
            async with session.get(url, headers={"Range": header, "If-Range": etag}) as response:
                assert response.status == status
                assert response.headers["Content-Range"] == content_range
                assert await response.read() == expected
        async with session.get(url, headers={"Range": "bytes=500-", "If-Range": '"stale"'}) as response:
            assert response.status == 200 and await response.read() == full
        async with session.get(url, headers={"Range": "bytes=1000-"}) as response:
            assert response.status == 416 and response.headers["Content-Range"] == "bytes */1000"


async def test_s3_expiry_uses_the_clock() -> None:
    clock = {"now": datetime(2026, 2, 14, 15, 5, tzinfo=UTC)}
    async with AttachmentSimulator(clock=lambda: clock["now"]) as sim, aiohttp.ClientSession() as session:
        url = f"{sim.url}/s3/a.pdf?X-Amz-Date=20260214T150000Z&x-amz-expires=600&X-Amz-Signature=s"
        assert (await session.get(url)).status == 200
        clock["now"] = datetime(2026, 2, 14, 15, 10, tzinfo=UTC)
        response = await session.get(url)
        assert response.status == 403 and "expired" in await response.text()
        assert (await session.get(f"{sim.url}/s3/a.pdf?X-Amz-Date=bad&X-Amz-Expires=1")).status == 400


async def test_status_faults_in_turn_then_normal_and_repeat() -> None:
    world = {
        "faults": [
            {"path_contains": "flaky", "statuses": [503, 500]},
            {"path_contains": "down", "statuses": [503], "repeat": True},
        ]
    }
    async with AttachmentSimulator(world) as sim, aiohttp.ClientSession() as session:
        assert [(await session.get(f"{sim.url}/x/flaky.pdf")).status for _ in range(4)] == [
            503,
            500,
            200,
            200,
        ]
        assert [(await session.get(f"{sim.url}/x/down.pdf")).status for _ in range(4)] == [503] * 4
        assert (await session.get(f"{sim.url}/x/other.pdf")).status == 200


async def test_redirect_and_cut_faults() -> None:
    world = {
        "faults": [
            {"path_contains": "/hop/", "redirect": "https://www.claimxperience.com/next.pdf", "status": 307},
            {"path_contains": "/cut/", "cut_after": 100_000},
        ]
    }
    async with AttachmentSimulator(world) as sim, aiohttp.ClientSession() as session:
        response = await session.get(f"{sim.url}/hop/a.pdf", allow_redirects=False)
        assert (
            response.status == 307
            and response.headers["Location"] == "https://www.claimxperience.com/next.pdf"
        )
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(f"{sim.url}/cut/a.pdf?size=1000000") as response:
                await response.read()
        assert sim.bytes_served["/cut/a.pdf"] == 100_000
        # The cut applies once by default; the next answer is whole.
        async with session.get(f"{sim.url}/cut/a.pdf?size=1000000") as response:
            assert await response.read() == expected_bytes("/cut/a.pdf", 1_000_000)
        assert sim.bytes_served["/cut/a.pdf"] == 1_100_000
        assert [r.status for r in sim.requests_for("/cut/")] == [200, 200]


async def test_large_body_is_cached_and_identical() -> None:
    size = 3 * 1024 * 1024 + 7
    async with AttachmentSimulator() as sim, aiohttp.ClientSession() as session:
        url = f"{sim.url}/big/a.mp4?size={size}"
        first = await (await session.get(url)).read()
        second = await (await session.get(url)).read()
        ranged = await (await session.get(url, headers={"Range": "bytes=1048576-"})).read()
    expected = expected_bytes("/big/a.mp4", size)
    assert first == second == expected
    assert ranged == expected[1048576:]


def test_load_world(tmp_path: Path) -> None:
    path = tmp_path / "world.json"
    path.write_text(json.dumps({"faults": [{"path_contains": "x", "statuses": [503]}]}))
    assert load_world(path)["faults"][0]["statuses"] == [503]
    assert load_world(None) == {}
    path.write_text("[]")
    with pytest.raises(ValueError):
        load_world(path)


async def test_cache_of_a_killed_simulator_is_removed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILLed run leaves its cache folder behind; the next simulator to start removes it."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from claimsflow.simulator import AttachmentSimulator\n"
            "async def main():\n"
            "    sim = AttachmentSimulator()\n"
            "    await sim.start()\n"
            "    print(sim._cache_dir, flush=True)\n"
            "    await asyncio.sleep(3600)\n"
            "asyncio.run(main())\n",
        ],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    orphan = Path(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert orphan.is_dir() and orphan.parent == tmp_path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    async with AttachmentSimulator() as sim:
        assert not orphan.exists()
        assert sim._cache_dir is not None and sim._cache_dir.is_dir()
        own = sim._cache_dir
    assert not own.exists()
