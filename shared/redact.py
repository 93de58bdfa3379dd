"""Secrets never reach a Delta table, a log, an error or a dead-letter message (docs/architecture.md,
section 4): presigned signatures, SAS tokens, keys, passwords and user info are replaced by
``REDACTED``, and nothing else about the text changes.

URLs are taken apart by hand rather than with ``urllib``: re-encoding a query would alter the parts
we keep, ``parse_qsl`` knows neither ``&amp;`` nor ``;`` separators, and ``urlsplit`` raises on
malformed input. Every pattern here runs in linear time, because the text may be hostile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "REDACTED"

# Names whose values are secrets wherever they appear: free text (``password=...``, dict reprs),
# JSON members, log extras, and URL parameters (compared lower-case).
SECRET_FIELDS = frozenset(
    {
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "signature",
        "sig",
        "client_secret",
        "secret",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "accesskey",
        "accountkey",
        "sharedaccesskey",
        "sharedaccesssignature",
        "password",
        "passwd",
        "pwd",
        "credential",
        "authorization",
    }
)
# URL query and fragment parameters add the names that are secrets only there: the rest of an Azure
# SAS (validity and user-delegation key fields), CloudFront's Policy and Key-Pair-Id, OAuth codes.
SECRET_PARAMETERS = SECRET_FIELDS | frozenset(
    {"se", "st", "sv", "sp", "sr", "spr", "skoid", "sktid", "skt", "ske", "sks", "skv"}
    | {"policy", "key-pair-id", "sign", "code", "key", "auth"}
    # ClaimX signs a link with ``sign`` over ``systemDate`` (when it was signed: part of the
    # signature, and a time of our request, not of the file)
    | {"systemdate"}
)
_TEXT_NAMES = "|".join(
    re.escape(name) for name in sorted(SECRET_FIELDS - {"authorization"}, key=len, reverse=True)
)
_NAME_START = r"(?<![A-Za-z0-9_-])"
_WHOLE_URL = re.compile(r"\s*[a-zA-Z][a-zA-Z0-9+.-]{0,30}://")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s'\"<>`]+")
_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization)(['\"]?[ \t]*[:=][ \t]*)(?:(['\"])[^'\"\r\n]*|[^'\"\r\n]*)"
)
_KEY_VALUE = re.compile(
    rf"(?i){_NAME_START}({_TEXT_NAMES})(['\"]?[ \t]*[:=][ \t]*)(?:(['\"])[^'\"\r\n]*|[^\s'\",;&}}\])]*)"
)
# A query parameter anywhere in text (a URL the URL pattern could not take whole, broken by a space
# or a control character): any secret parameter name right after ?, &, ; or #.
_QUERY_PAIR = re.compile(
    rf"(?i)(?<=[?&;#])({'|'.join(re.escape(n) for n in sorted(SECRET_PARAMETERS, key=len, reverse=True))})"
    r"=[^&;#\s'\"<>]*"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(Bearer|SharedKey|SharedKeyLite|AWS4-HMAC-SHA256)([ \t]+)[^\s'\",}\]]+")
_QUERY_SEPARATOR = re.compile(r"(&amp;|&|;)")
_NAME_BREAK = re.compile(r"[?#]")
# Every pattern above needs one of these: a text without any has nothing to redact (the fast path
# for the many short values of a row).
_MAY_HOLD_SECRET = re.compile(r"(?i)[:=]|bearer|sharedkey|aws4-hmac")
_MAX_JSON_DEPTH = 64
_STORAGE_SCHEMES = frozenset({"abfs", "abfss", "wasb", "wasbs"})


def _redact_pairs(text: str) -> str:
    """``k=v`` pairs separated by ``&``, ``&amp;`` or ``;``: secret values replaced, all else kept."""
    parts = _QUERY_SEPARATOR.split(text)
    for index in range(0, len(parts), 2):
        pair = parts[index]
        name, equals, value = pair.partition("=")
        if not equals:
            continue
        # The name is what follows the last ? or # (a query inside a fragment: "#/cb?token=...").
        plain = _NAME_BREAK.split(unquote_plus(name))[-1].strip().lower()
        if plain in SECRET_PARAMETERS or (value and _nested_secret(value)):
            parts[index] = f"{name}={REDACTED}"
    return "".join(parts)


def _nested_secret(value: str) -> bool:
    """A percent-encoded value that itself carries a secret (a URL in a ``redirect`` parameter)."""
    decoded = unquote_plus(value)
    return ("=" in decoded or "@" in decoded) and redact_text(decoded) != decoded


def redact_url(url: str) -> str:
    """The URL with user info and the values of secret query and fragment parameters replaced."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    authority_end = len(url)
    for mark in "/?#":
        found = url.find(mark, start)
        if found >= 0:
            authority_end = min(authority_end, found)
    head, rest = url[:start], url[start:]
    authority, rest = rest[: authority_end - start], rest[authority_end - start :]
    if scheme_end >= 0 and "@" in authority and not _names_a_container(url[:scheme_end], authority):
        authority = f"{REDACTED}@{authority.rsplit('@', 1)[1]}"
    before_fragment, hash_mark, fragment = rest.partition("#")
    path, question, query = before_fragment.partition("?")
    if query:
        query = _redact_pairs(query)
    if fragment and "=" in fragment:
        fragment = _redact_pairs(fragment)
    return f"{head}{authority}{path}{question}{query}{hash_mark}{fragment}"


def _names_a_container(scheme: str, authority: str) -> bool:
    """``abfss://container@account...``: in the storage schemes the part before ``@`` is a container
    or workspace name, not a credential (one holding ``:`` could be a password, and is masked)."""
    return scheme.lower() in _STORAGE_SCHEMES and ":" not in authority.rsplit("@", 1)[0]


def _split_identity(url: str) -> tuple[str, str, str]:
    """``(scheme://, authority, path)`` of a URL, without query and fragment; never raises."""
    without = url.split("#", 1)[0].split("?", 1)[0]
    scheme_end = without.find("://")
    if scheme_end < 0:
        return "", "", without
    head = without[: scheme_end + 3]
    rest = without[scheme_end + 3 :]
    authority, slash, path = rest.partition("/")
    return head, authority, slash + path


def strip_query(url: str) -> str:
    """The URL without query or fragment: the stable identity of a presigned file (media ids)."""
    head, authority, path = _split_identity(url)
    return f"{head}{authority}{path}"


def public_url(url: str) -> str:
    """What a Delta table may keep of an attachment URL: no query, fragment or user info."""
    head, authority, path = _split_identity(url)
    return f"{head}{authority.rsplit('@', 1)[-1]}{path}"


def redact_text(text: str) -> str:
    """Free text (messages, tracebacks, dict reprs): URLs redacted, ``Authorization`` values and
    ``name=value`` / ``'name': 'value'`` secrets replaced, bearer and shared-key tokens masked."""
    if not _MAY_HOLD_SECRET.search(text):
        return text
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text)
    text = _QUERY_PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _SCHEME_TOKEN.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_value(value: Any) -> Any:
    """A structured value (log extras): strings redacted, members with secret names replaced,
    containers walked; any other object becomes its redacted text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if _is_secret_name(key) else redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(item) for item in value]
    return redact_text(str(value))


def _is_secret_name(key: Any) -> bool:
    return isinstance(key, str) and key.strip().lower() in SECRET_FIELDS


def redact_json_text(raw: str) -> str:
    """A JSON document (``xact_events.raw_json``) with every secret in it replaced, including those in
    strings that hold JSON themselves (XACT's ``data``). Unchanged when it holds none; otherwise
    serialised again (compact, same values) with the secrets replaced."""
    try:
        document = json.loads(raw)
        redacted, changed = _redact_json(document, 0)
    except (ValueError, RecursionError):
        return redact_text(raw)
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")) if changed else raw


def _redact_json(value: Any, depth: int) -> tuple[Any, bool]:
    if depth > _MAX_JSON_DEPTH:
        raise RecursionError("JSON nested too deeply to redact")
    if isinstance(value, str):
        return _redact_json_string(value, depth)
    if isinstance(value, list):
        items = [_redact_json(item, depth + 1) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            new_key = redact_text(key)
            if _is_secret_name(key) and isinstance(item, (str, int, float)) and item != REDACTED:
                new_item, item_changed = REDACTED, True
            else:
                new_item, item_changed = _redact_json(item, depth + 1)
            changed = changed or item_changed or new_key != key
            result[new_key] = new_item
        return result, changed
    return value, False


def _redact_json_string(text: str, depth: int) -> tuple[str, bool]:
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            inner, changed = _redact_json(json.loads(text), depth + 1)
        except ValueError:
            pass
        else:
            if not changed:
                return text, False
            return json.dumps(inner, ensure_ascii=False, separators=(",", ":")), True
    # A URL as a whole value: its query ends only where the string does.
    redacted = redact_text(redact_url(text) if _WHOLE_URL.match(text) else text)
    return redacted, redacted != text
