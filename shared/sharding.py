"""Spreading keys over Azure Table partitions (one partition serves about 2,000 entities/s)."""

from __future__ import annotations

import hashlib
import re

_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f%]")
MAX_KEY_CHARS = 512


def shard_of(key: str, shards: int) -> int:
    """A stable shard number for ``key`` (the same in every process and Python version)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def partition_key(prefix: str, key: str, shards: int) -> str:
    return f"{prefix}-{shard_of(key, shards):03d}"


def table_safe_key(key: str) -> str:
    """A RowKey for ``key``: forbidden characters percent-escaped, very long keys hashed."""
    escaped = _FORBIDDEN.sub(lambda m: f"%{ord(m.group(0)):02X}", key)
    if len(escaped) <= MAX_KEY_CHARS:
        return escaped
    return "h-" + hashlib.sha256(key.encode("utf-8")).hexdigest()
