"""Secrets never reach logs, errors or dead letters: presigned signatures and keys are masked."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"

SENSITIVE_QUERY_KEYS = frozenset(
    {
        "sig",
        "signature",
        "sign",
        "se",
        "sv",
        "st",
        "sp",
        "sr",
        "spr",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "token",
        "access_token",
        "code",
        "key",
        "apikey",
        "api_key",
        "secret",
        "password",
        "auth",
    }
)

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_KEY_VALUE = re.compile(
    r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|client_secret|password|Authorization)"
    r"(\s*[=:]\s*)(Basic\s+|Bearer\s+)?[^;\s,'\"]+"
)


def redact_url(url: str) -> str:
    """The URL with sensitive query values and user info masked; unparseable input is masked whole."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    if not parts.query:
        return urlunsplit(parts._replace(netloc=netloc))
    pairs = [
        (k, REDACTED if k.lower() in SENSITIVE_QUERY_KEYS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(pairs, safe=":/")))


def strip_query(url: str) -> str:
    """The URL without query or fragment: the stable identity of a presigned file."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def redact_text(text: str) -> str:
    """Free text (error messages) with every URL redacted and key=value secrets masked."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
