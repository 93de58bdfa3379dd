"""Spreading keys over Azure Table partitions (one partition serves about 2,000 entities/s), and
making any key a legal RowKey. Used by the dedup latch, staging and dead letters alike."""

from __future__ import annotations

import hashlib

MAX_ROW_KEY = 255
_FORBIDDEN = frozenset("/\\#?%") | {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


def shard_of(key: str, shards: int) -> int:
    """Stable across processes and Python versions (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


def partition_key(prefix: str, shard: int) -> str:
    return f"{prefix}:{shard:03d}"


def safe_row_key(key: str) -> str:
    """A RowKey for ``key``: forbidden characters percent-escaped (injective, since ``%`` is
    escaped too), or ``%H<sha256>`` for long keys (an escaped key never contains ``%H``)."""
    escaped = "".join(f"%{ord(ch):02X}" if ch in _FORBIDDEN else ch for ch in key)
    if len(escaped) <= MAX_ROW_KEY:
        return escaped
    return "%H" + hashlib.sha256(key.encode()).hexdigest()
