"""Presigned URL expiry: S3 (``X-Amz-Date`` + ``X-Amz-Expires``) and ClaimX
(``systemDate`` + ``expires``, both milliseconds).

An expired S3 URL cannot be refreshed (XACT), so the transfer rejects it before any request, as
it does a URL whose date or lifetime cannot be a valid window (overflowing, negative).
Parameter names are matched case-insensitively; a URL with neither pair is not presigned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

_OVERFLOW = "X-Amz-Expires overflows the calendar"


class PresignedKind(StrEnum):
    S3 = "s3"
    CLAIMX = "claimx"


@dataclass(frozen=True, slots=True)
class PresignedUrl:
    """Signing time and expiry of a presigned URL; unparseable values leave them ``None``.
    ``out_of_range`` says why the URL can never be valid: its date or lifetime overflows the
    calendar, or its lifetime is negative."""

    kind: PresignedKind
    signed_at: datetime | None
    expires_at: datetime | None
    parse_error: str | None = None
    out_of_range: str | None = None

    @property
    def ttl(self) -> timedelta | None:
        if self.signed_at is None or self.expires_at is None:
            return None
        return self.expires_at - self.signed_at

    def is_expired(self, now: datetime) -> bool:
        """True when ``now`` is at or past the expiry; unknown expiry is never expired."""
        return self.expires_at is not None and _aware(now) >= self.expires_at

    def expires_within(self, seconds: float, now: datetime) -> bool:
        """True when the URL expires before ``now + seconds`` (e.g. within a transfer's timeout)."""
        return self.expires_at is not None and _aware(now) + timedelta(seconds=seconds) >= self.expires_at


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_presigned(url: str) -> PresignedUrl | None:
    """The presigned information in ``url``, or ``None`` when it carries no expiry parameters."""
    try:
        query = {k.lower(): v for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    except ValueError:
        return None
    if "x-amz-date" in query or "x-amz-expires" in query:
        return _parse_s3(query.get("x-amz-date"), query.get("x-amz-expires"))
    if "systemdate" in query or ("expires" in query and "claimxperience.com" in url.lower()):
        return _parse_claimx(query.get("systemdate"), query.get("expires"))
    return None


def _parse_s3(date: str | None, expires: str | None) -> PresignedUrl:
    if not date or not expires:
        return PresignedUrl(PresignedKind.S3, None, None, "missing X-Amz-Date or X-Amz-Expires")
    try:
        signed = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return PresignedUrl(PresignedKind.S3, None, None, "unparseable X-Amz-Date or X-Amz-Expires")
    try:
        seconds = int(expires)
    except ValueError:
        if expires.strip().lstrip("+-").isdigit():  # more digits than any integer Python parses
            return PresignedUrl(PresignedKind.S3, signed, None, out_of_range=_OVERFLOW)
        return PresignedUrl(PresignedKind.S3, None, None, "unparseable X-Amz-Date or X-Amz-Expires")
    return _window(PresignedKind.S3, signed, lambda: timedelta(seconds=seconds), "X-Amz-Expires")


def _parse_claimx(system_date: str | None, expires: str | None) -> PresignedUrl:
    if not system_date or not expires:
        return PresignedUrl(PresignedKind.CLAIMX, None, None, "missing systemDate or expires")
    try:
        millis = int(system_date)
        ttl_ms = int(expires)
    except ValueError:
        return PresignedUrl(PresignedKind.CLAIMX, None, None, "unparseable systemDate or expires")
    try:
        signed = datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return PresignedUrl(PresignedKind.CLAIMX, None, None, out_of_range="systemDate is out of range")
    return _window(PresignedKind.CLAIMX, signed, lambda: timedelta(milliseconds=ttl_ms), "expires")


def _window(
    kind: PresignedKind, signed: datetime, lifetime: Callable[[], timedelta], name: str
) -> PresignedUrl:
    """``signed`` plus the lifetime, or why that cannot be a valid window."""
    try:
        span = lifetime()
        expires_at = signed + span
    except OverflowError:
        return PresignedUrl(kind, signed, None, out_of_range=f"{name} overflows the calendar")
    if span < timedelta(0):
        return PresignedUrl(kind, signed, None, out_of_range=f"{name} is negative")
    return PresignedUrl(kind, signed, expires_at)
