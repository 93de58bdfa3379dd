"""A loopback server that plays the allowlisted attachment hosts in simulation mode.

Content rule (anyone can predict the bytes): for URL path P the body is the concatenation of
``sha256(f"{P}:{i}".encode()).digest()`` for i = 0, 1, 2, … cut to ``size`` bytes (``size`` query
parameter, default 4096). Bodies are generated lazily; big ones are cached on disk after the first
complete answer (never held whole in memory). HEAD, Range / If-Range, ETag and S3-style expiry
(``X-Amz-Date`` + ``X-Amz-Expires`` → 403 once expired) behave like S3.

ClaimX requests (the API, media links on the ClaimX web hosts, Eventhouse queries) are answered
by :mod:`claimsflow.claimx_simulator` from the world's ``claimx`` and ``eventhouse`` sections.

Faults come from a "world" dict, first matching entry wins (``path_contains`` is matched against
the URL path)::

    {"faults": [
      {"path_contains": "flaky", "statuses": [503, 503], "repeat": false},
      {"path_contains": "big", "cut_after": 20971520},            # drop the connection after N body bytes
      {"path_contains": "hop", "redirect": "https://host/x.pdf", "status": 302},
      {"path_contains": "norange", "ignore_range": true},        # answer 200 to ranged requests
      {"path_contains": "odd", "content_type": "text/html"},
      {"path_contains": "changed", "etag": "\\"v2\\""}
    ]}

``statuses`` are answered in turn (forever when ``repeat``), then the normal answer. The other
faults apply ``times`` times (default: once for ``cut_after``, always for the rest; ``repeat``
means always).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from claimsflow.claimx_simulator import ClaimXSimulator
from shared.transfer.filetypes import extension_of, natural_content_type

DEFAULT_SIZE = 4096
DIGEST = 32
CHUNK_DIGESTS = 8192  # 256 KiB per generated chunk
CACHE_MIN_SIZE = 1024 * 1024
CACHE_PREFIX = "attachment-sim-"
LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


def iter_content(path: str, start: int, end: int) -> Iterator[bytes]:
    """Body bytes ``[start, end)`` of path ``path``, in chunks of at most 256 KiB."""
    prefix = f"{path}:".encode()
    index = start // DIGEST
    skip = start % DIGEST
    position = start
    while position < end:
        count = min(CHUNK_DIGESTS, (end - position + skip + DIGEST - 1) // DIGEST)
        sha = hashlib.sha256
        chunk = b"".join([sha(prefix + b"%d" % i).digest() for i in range(index, index + count)])
        chunk = chunk[skip : skip + (end - position)]
        yield chunk
        position += len(chunk)
        index += count
        skip = 0


def expected_bytes(path: str, size: int = DEFAULT_SIZE) -> bytes:
    """The whole body the simulator serves for ``path`` and ``size`` (tests compare against it)."""
    return b"".join(iter_content(path, 0, size))


def etag_for(path: str, size: int) -> str:
    return '"' + hashlib.sha256(f"{path}|{size}".encode()).hexdigest()[:32] + '"'


@dataclass
class RequestRecord:
    method: str
    host: str
    path: str
    query: str
    range: str | None
    if_range: str | None
    authorization: str | None = None
    status: int = 0
    bytes_sent: int = 0


@dataclass
class _Fault:
    spec: dict[str, Any]
    used: int = 0

    def matches(self, path: str) -> bool:
        return str(self.spec.get("path_contains", "")) in path

    @property
    def statuses(self) -> list[int]:
        return [int(s) for s in self.spec.get("statuses", [])]

    def take_status(self) -> int | None:
        statuses = self.statuses
        if not statuses:
            return None
        if self.spec.get("repeat"):
            status = statuses[self.used % len(statuses)]
        elif self.used < len(statuses):
            status = statuses[self.used]
        else:
            return None
        self.used += 1
        return status

    def take(self, default_times: int | None) -> bool:
        """Whether a non-status fault applies now (and count it)."""
        times = None if self.spec.get("repeat") else self.spec.get("times", default_times)
        if times is not None and self.used >= int(times):
            return False
        self.used += 1
        return True


def _fresh_cache_dir() -> Path:
    """A cache folder named after this process, after removing those of processes that are gone.

    A SIGKILLed run cannot clean up after itself, so the next simulator does it instead.
    """
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{CACHE_PREFIX}*-*"):
        owner = folder.name[len(CACHE_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _process_alive(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{CACHE_PREFIX}{os.getpid()}-"))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        pass
    return True


@dataclass
class AttachmentSimulator:
    """``async with AttachmentSimulator(world) as sim:`` then fetch ``sim.url + path``."""

    world: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    requests: list[RequestRecord] = field(default_factory=list)
    bytes_served: Counter[str] = field(default_factory=Counter)
    fault_usage: list[int] = field(default_factory=list)
    on_faults_used: Callable[[list[int]], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        """``fault_usage`` restores how often each fault was used (the world does not restart
        when a run's process dies); ``on_faults_used`` is told before an answer that used one
        leaves, so a run can keep the counts where a resumed run finds them."""
        self._faults = [_Fault(dict(spec)) for spec in self.world.get("faults", [])]
        for fault, used in zip(self._faults, self.fault_usage, strict=False):
            fault.used = used
        self.claimx = ClaimXSimulator(self.world, clock=lambda: self.clock())
        self._runner: web.AppRunner | None = None
        self._cache_dir: Path | None = None
        self._cache: dict[tuple[str, int], Path] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> AttachmentSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._cache_dir = _fresh_cache_dir()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- counters for tests -------------------------------------------------------------------
    expected_bytes = staticmethod(expected_bytes)

    def requests_for(self, path_contains: str) -> list[RequestRecord]:
        return [r for r in self.requests if path_contains in r.path]

    def add_fault(self, spec: dict[str, Any]) -> None:
        self._faults.append(_Fault(dict(spec)))

    # -- serving ------------------------------------------------------------------------------
    def _fault(self, path: str, key: str) -> _Fault | None:
        for fault in self._faults:
            if key in fault.spec and fault.matches(path):
                return fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        record = RequestRecord(
            request.method,
            request.headers.get("Host", ""),
            path,
            request.rel_url.raw_query_string,
            request.headers.get("Range"),
            request.headers.get("If-Range"),
            request.headers.get("Authorization"),
        )
        self.requests.append(record)
        used = self.faults_used()
        try:
            response = await self._answer(request, path, record)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        finally:
            if self.on_faults_used is not None and self.faults_used() != used:
                await self.on_faults_used(self.faults_used())
        record.status = response.status
        return response

    def faults_used(self) -> list[int]:
        """How often each fault of the world was used, in world order."""
        return [fault.used for fault in self._faults]

    async def _answer(self, request: web.Request, path: str, record: RequestRecord) -> web.StreamResponse:
        fault = self._fault(path, "statuses")
        status = fault.take_status() if fault else None
        if status is not None:
            return web.Response(status=status, text=f"injected {status}")
        fault = self._fault(path, "redirect")
        if fault is not None and fault.take(None):
            return web.Response(
                status=int(fault.spec.get("status", 302)), headers={"Location": str(fault.spec["redirect"])}
            )
        claimx = await self.claimx.answer(request, path)
        if claimx is not None:
            return claimx
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405)
        expired = self._s3_expiry(request)
        if expired is not None:
            return expired
        try:
            size = int(request.query.get("size", DEFAULT_SIZE))
        except ValueError:
            return web.Response(status=400, text="bad size")
        if size < 0:
            return web.Response(status=400, text="bad size")

        etag_fault = self._fault(path, "etag")
        etag = str(etag_fault.spec["etag"]) if etag_fault and etag_fault.take(None) else etag_for(path, size)
        type_fault = self._fault(path, "content_type")
        content_type = (
            str(type_fault.spec["content_type"])
            if type_fault and type_fault.take(None)
            else natural_content_type(extension_of(path))
        )
        headers = {
            "ETag": etag,
            "Last-Modified": LAST_MODIFIED,
            "Accept-Ranges": "bytes",
            "Content-Type": content_type,
        }
        start, end, status = 0, size, 200
        range_header = request.headers.get("Range")
        ignore = self._fault(path, "ignore_range")
        if range_header and not (ignore and ignore.take(None)):
            if_range = request.headers.get("If-Range")
            if if_range is None or if_range in (etag, LAST_MODIFIED):
                parsed = _parse_range(range_header, size)
                if parsed is None:
                    headers["Content-Range"] = f"bytes */{size}"
                    return web.Response(status=416, headers=headers)
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start
        await response.prepare(request)
        record.status = status
        if request.method == "HEAD":
            return response
        cut = self._fault(path, "cut_after")
        limit = int(cut.spec["cut_after"]) if cut and cut.take(1) else None
        sent = 0
        async for chunk in self._body(path, size, start, end, complete=(status == 200 and limit is None)):
            if limit is not None and sent + len(chunk) >= limit:
                chunk = chunk[: limit - sent]
                await response.write(chunk)
                sent += len(chunk)
                self._count(record, path, len(chunk))
                # Graceful close (FIN after the buffered bytes): the client gets exactly ``limit``
                # bytes, then a short body. aiohttp treats the cancellation as a quiet disconnect.
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError
            await response.write(chunk)
            sent += len(chunk)
            self._count(record, path, len(chunk))
        await response.write_eof()
        return response

    def _count(self, record: RequestRecord, path: str, sent: int) -> None:
        record.bytes_sent += sent
        self.bytes_served[path] += sent

    async def _body(
        self, path: str, size: int, start: int, end: int, *, complete: bool
    ) -> AsyncIterator[bytes]:
        cached = self._cache.get((path, size))
        if cached is not None:
            with cached.open("rb") as reader:
                reader.seek(start)
                remaining = end - start
                while remaining > 0:
                    chunk = reader.read(min(remaining, 1024 * 1024))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    yield chunk
            return
        cache_file = None
        if complete and size >= CACHE_MIN_SIZE and self._cache_dir is not None:
            cache_file = self._cache_dir / hashlib.sha256(f"{path}|{size}".encode()).hexdigest()
        partial = cache_file.with_suffix(".part") if cache_file else None
        writer = partial.open("wb") if partial else None
        try:
            for chunk in iter_content(path, start, end):
                if writer is not None:
                    writer.write(chunk)
                yield chunk
                await asyncio.sleep(0)
        except BaseException:
            if writer is not None and partial is not None:
                writer.close()
                partial.unlink(missing_ok=True)
            raise
        if writer is not None and cache_file is not None and partial is not None:
            writer.close()
            partial.replace(cache_file)
            self._cache[(path, size)] = cache_file

    def _s3_expiry(self, request: web.Request) -> web.Response | None:
        query = {k.lower(): v for k, v in request.query.items()}
        if "x-amz-date" not in query and "x-amz-expires" not in query:
            return None
        try:
            signed = datetime.strptime(query["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            expires = timedelta(seconds=int(query["x-amz-expires"]))
        except (KeyError, ValueError):
            return web.Response(
                status=400,
                content_type="application/xml",
                text="<Error><Code>AuthorizationQueryParametersError</Code></Error>",
            )
        if self.clock() >= signed + expires:
            return web.Response(
                status=403,
                content_type="application/xml",
                text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            )
        return None


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → half-open ``[start, end)``; ``None`` = unsatisfiable."""
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            count = int(last)
            return (max(0, size - count), size) if count > 0 and size > 0 else None
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return None
    return start, min(end, size)


def load_world(path: str | Path | None) -> dict[str, Any]:
    """The world JSON of ``claimsflow run --world``; no file → no faults."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError("a world file holds a JSON object")
    return data


async def _serve(port: int, world: dict[str, Any]) -> None:
    async with AttachmentSimulator(world, port=port) as sim:
        print(sim.url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m claimsflow.simulator [--port N] [--world PATH]``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--world")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, load_world(args.world)))


if __name__ == "__main__":
    main()
