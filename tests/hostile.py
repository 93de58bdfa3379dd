"""Hostile input for the property tests, the fuzz harness and the end-to-end acceptance: the seven
lines of issue 9, and hypothesis strategies that make arbitrary JSON, Unicode and sizes shaped
like XACT events (so most examples get past the parser and exercise what comes after it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

S3_HOST = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"
SIGNATURE_NAMES = (
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "X-Goog-Credential",
    "Signature",
    "Policy",
    "Key-Pair-Id",
    "sig",
    "client_secret",
    "refresh_token",
    "id_token",
    "access_key",
    "password",
)


def body(trace_id: str, attachments: list[str], *, when: str = "2026-11-22T15:04:05Z", **data: Any) -> str:
    """One XACT Event Hub body, ``data`` as a JSON string, as XactAnalysis sends it."""
    payload = {"assignmentId": "A1B2C3", "attachments": attachments, **data}
    return json.dumps(
        {
            "type": "verisk.claims.property.xn.documentsReceived",
            "version": 1,
            "utcDateTime": when,
            "traceId": trace_id,
            "data": json.dumps(payload),
        }
    )


def issue_lines(url: Any, prefix: str = "hostile") -> dict[str, str | bytes]:
    """The seven hostile lines of issue 9, by class; ``url(path)`` makes a presigned source URL.
    The BOM line is bytes (a UTF-8 BOM before a valid body); the others are text."""
    return {
        "date in year 9999 with a -23:00 offset": body(
            f"{prefix}-date", [url("/h/date.pdf")], when="9999-12-31T23:00:00-23:00"
        ),
        "100,000 nested brackets": json.dumps(
            {
                "type": "verisk.claims.property.xn.documentsReceived",
                "utcDateTime": "2026-11-22T15:04:05Z",
                "traceId": f"{prefix}-deep",
                "data": "[" * 100_000,
            }
        ),
        "a 40,000-character author": body(f"{prefix}-author", [url("/h/author.pdf")], author="a" * 40_000),
        "a path-traversal traceId": body("../../../../../other/evil", [url("/h/evil.pdf")]),
        "two attachments named photo.jpg": body(
            f"{prefix}-photos", [url("/inspection/photo.jpg", size=3001), url("/claim/photo.jpg", size=3002)]
        ),
        "a UTF-8 BOM before a valid body": b"\xef\xbb\xbf"
        + body(f"{prefix}-bom", [url("/h/bom.pdf")]).encode(),
        "a malformed URL beside a good one": body(
            f"{prefix}-malformed", [f"https://[{S3_HOST}/broken.pdf", url("/h/good.pdf")]
        ),
    }


# -- strategies -----------------------------------------------------------------------------------

# Any code point, surrogates included: bodies given as text may hold what no UTF-8 can.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
unicode_text = st.text(max_size=40)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | unicode_text
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(unicode_text, children, max_size=4),
    max_leaves=20,
)
# Secret values: "Zq" keeps them from spelling a word that a document holds anyway ("assignment").
tokens = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=22
).map(lambda text: f"Zq{text}")
segments = (
    st.sampled_from(["..", ".", "", "a", "photo.jpg", "x/y", "%2e%2e", "\\", "\x00", "é", "😀"])
    | unicode_text
)


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A URL carrying secrets in the ways issue 9 lists: signature parameters after ``&``,
    ``&amp;`` or ``;``, in the fragment, and user info; returns it with its secret values."""
    secrets = draw(st.lists(tokens, min_size=1, max_size=4, unique=True))
    names = draw(st.lists(st.sampled_from(SIGNATURE_NAMES), min_size=len(secrets), max_size=len(secrets)))
    separator = draw(st.sampled_from(["&", "&amp;", ";"]))
    pairs = [f"{name}={secret}" for name, secret in zip(names, secrets, strict=True)]
    in_fragment = draw(st.booleans())
    query = separator.join(
        ["X-Amz-Date=20261122T150405Z", *pairs[: len(pairs) // 2 if in_fragment else None]]
    )
    fragment = "#" + "&".join(pairs[len(pairs) // 2 :]) if in_fragment else ""
    userinfo = ""
    if draw(st.booleans()):
        password = draw(tokens)
        secrets.append(password)
        userinfo = f"user:{password}@"
    path = "/".join(
        draw(st.lists(st.sampled_from(["a", "b", "photo.jpg", "est.pdf"]), min_size=1, max_size=3))
    )
    return f"https://{userinfo}{S3_HOST}/{path}?{query}{fragment}", secrets


# Text longer than a Table property holds (32,768 UTF-16 units), drawn by length (a short repr).
long_texts = st.integers(min_value=32_000, max_value=40_000).map(lambda n: "a" * n)
urls = st.one_of(
    st.builds(
        lambda path, name: f"https://{S3_HOST}/{path}/{name}", st.sampled_from(["a", "b/c", ""]), segments
    ),
    st.builds(lambda text: f"https://{S3_HOST}/{text}", any_text),
    st.text(max_size=60),
    st.from_regex(r"https?://[^\s]{0,40}", fullmatch=True),
    secret_urls().map(lambda pair: pair[0]),
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offsets,
) | st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)


@st.composite
def event_documents(draw: st.DrawFn) -> dict[str, Any]:
    """An XACT-shaped JSON object whose every field may be hostile."""
    data: dict[str, Any] = {
        "assignmentId": draw(st.none() | segments | unicode_text),
        "estimateVersion": draw(st.none() | segments | st.integers()),
        "attachments": draw(st.lists(urls, max_size=5) | json_values),
        "description": draw(unicode_text | st.text(max_size=2000)),
        "author": draw(st.none() | unicode_text | long_texts),
        "note": draw(st.none() | secret_urls().map(lambda pair: f"see {pair[0]}")),
    }
    data.update(draw(st.dictionaries(unicode_text, json_values, max_size=3)))
    document: dict[str, Any] = {
        "type": draw(
            st.sampled_from(["verisk.claims.property.xn.documentsReceived", "a.b./../x", ""]) | unicode_text
        ),
        "version": draw(st.none() | st.integers() | unicode_text),
        "utcDateTime": draw(moments | unicode_text),
        "traceId": draw(segments | st.uuids().map(str) | unicode_text),
        "data": json.dumps(data) if draw(st.booleans()) else data,
    }
    if draw(st.booleans()):
        document[draw(unicode_text)] = draw(json_values)
    return document


def encoded(document: Any, *, bom: bool = False) -> bytes:
    return (b"\xef\xbb\xbf" if bom else b"") + json.dumps(document).encode("utf-8", errors="surrogatepass")


bodies = st.one_of(
    event_documents().map(json.dumps),
    st.builds(encoded, event_documents(), bom=st.booleans()),
    json_values.map(lambda value: json.dumps(value)),
    any_text,
    st.binary(max_size=200),
)
