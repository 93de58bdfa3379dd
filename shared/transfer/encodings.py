"""What a source's answer holds besides the file (docs/architecture.md, section 7): a
``Content-Encoding`` to undo, and error pages served in place of a binary file.

The lake keeps the file itself: gzip, deflate and br answers are decoded while streaming, in pieces
of bounded size (a small answer may expand enormously), and the digest is the decoded bytes'. An
encoding we cannot undo is PERMANENT (asking again changes nothing); a compressed stream that is
corrupt or cut short is TRANSIENT, like any other broken download.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

from shared.errors import ClassifiedError, ErrorCategory, Failure

DECODED_PIECE = 1024 * 1024  # the most one step of decoding may produce
SNIFF_BYTES = 512
# Extensions whose files are never markup: an HTML or XML answer for one is an error page.
BINARY_EXTENSIONS = frozenset(
    {"pdf", "xls", "xlsx", "doc", "docx", "esx", "jpg", "jpeg", "png", "gif", "bmp", "tiff", "tif", "webp"}
    | {"mov", "mp4"}
)
_MARKUP_STARTS = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<error", b"<!--", b"<title")


class Decoder(Protocol):
    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``data``, each at most :data:`DECODED_PIECE` bytes."""
        ...

    def finish(self) -> Iterator[bytes]:
        """What is left once the answer ended; raises TRANSIENT if the stream was cut short."""
        ...


def _broken(coding: str, detail: str) -> ClassifiedError:
    return ClassifiedError(Failure.of(ErrorCategory.TRANSIENT, f"{coding} answer {detail}"))


class _ZlibDecoder:
    """gzip (members one after another) and deflate (zlib-wrapped, or raw as some servers send)."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._wbits = 31 if coding == "gzip" else 15
        self._engine = zlib.decompressobj(self._wbits)
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            yield from self._drain(data)
        except zlib.error as exc:
            if self._coding != "deflate" or self._started:
                raise _broken(self._coding, f"is corrupt: {exc}") from None
            self._wbits = -15  # a raw deflate stream, without the zlib wrapper
            self._engine = zlib.decompressobj(self._wbits)
            yield from self._drain(data)

    def _drain(self, data: bytes) -> Iterator[bytes]:
        while data:
            piece = self._engine.decompress(data, DECODED_PIECE)
            if piece:
                self._started = True
                yield piece
            data = self._engine.unconsumed_tail
            if not data and self._engine.eof and self._engine.unused_data:
                if self._coding != "gzip":
                    raise _broken(self._coding, "has data after its end")
                data = self._engine.unused_data  # the next gzip member
                self._engine = zlib.decompressobj(self._wbits)

    def finish(self) -> Iterator[bytes]:
        try:
            tail = self._engine.flush()
        except zlib.error as exc:
            raise _broken(self._coding, f"is corrupt: {exc}") from None
        if tail:
            yield tail
        if not self._engine.eof:
            raise _broken(self._coding, "ended before its compressed stream did")


class _BrotliDecoder:
    def __init__(self) -> None:
        self._engine = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._engine.process(data, output_buffer_limit=DECODED_PIECE)
            if piece:
                yield piece
            while not self._engine.can_accept_more_data():
                piece = self._engine.process(b"", output_buffer_limit=DECODED_PIECE)
                if not piece:
                    break
                yield piece
        except brotli.error as exc:
            raise _broken("br", f"is corrupt: {exc}") from None

    def finish(self) -> Iterator[bytes]:
        if not self._engine.is_finished():
            raise _broken("br", "ended before its compressed stream did")
        return iter(())


def decoder_for(content_encoding: str | None) -> Decoder | None:
    """The decoder an answer's ``Content-Encoding`` needs (``None``: the bytes are the file)."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) == 1:
        coding = {"x-gzip": "gzip"}.get(codings[0], codings[0])
        if coding in ("gzip", "deflate"):
            return _ZlibDecoder(coding)
        if coding == "br":
            return _BrotliDecoder()
    raise ClassifiedError(
        Failure.of(ErrorCategory.PERMANENT, f"Content-Encoding {content_encoding!r} cannot be decoded")
    )


def check_not_markup(head: bytes, extension: str) -> None:
    """An HTML or XML page where a binary file was expected is an error page (a login, a gateway
    error, S3's XML ``<Error>``): TRANSIENT, the next attempt may get the file."""
    if extension not in BINARY_EXTENSIONS:
        return
    start = head[:SNIFF_BYTES].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if start.startswith(_MARKUP_STARTS):
        kind = "XML" if start.startswith(b"<?xml") or start.startswith(b"<error") else "HTML"
        raise ClassifiedError(
            Failure.of(ErrorCategory.TRANSIENT, f"an {kind} page was served for a .{extension} file")
        )
