"""An Event Hub body as text, by one rule in every domain: UTF-8, a leading BOM dropped, bounded in
size. What fails the rule is an :class:`InvalidBody`, kept for its dead letter in a form storage
can hold (bytes that are not UTF-8, and lone surrogates, as backslash escapes)."""

from __future__ import annotations

from dataclasses import dataclass

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class InvalidBody:
    """A body that cannot be an event; kept whole for the dead letter."""

    raw: str
    reason: str


def decode_body(body: bytes | str, *, max_bytes: int) -> str | InvalidBody:
    """The body as text, or why it cannot be one: not UTF-8, or over ``max_bytes`` as UTF-8."""
    if isinstance(body, str):
        text = body.removeprefix("\ufeff")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return InvalidBody(_escaped(text), f"not Unicode text (lone surrogate at character {exc.start})")
    else:
        data = body.removeprefix(BOM)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = data.decode("utf-8", errors="backslashreplace")
            return InvalidBody(raw, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})")
        size = len(data)
    if size > max_bytes:
        return InvalidBody(text, f"body of {size} bytes exceeds {max_bytes}")
    return text


def _escaped(text: str) -> str:
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")
