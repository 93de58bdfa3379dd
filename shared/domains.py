"""The two source domains. Dead letters, metrics, plugins and instance ids all name them the same."""

from __future__ import annotations

from enum import StrEnum


class Domain(StrEnum):
    XACT = "xact"
    CLAIMX = "claimx"

    @classmethod
    def parse(cls, text: str) -> Domain:
        """``verisk`` is the replaced system's name for XACT; plugin configuration written for it
        keeps working (a compatibility alias, nothing else uses it)."""
        lowered = text.strip().lower()
        return cls.XACT if lowered == "verisk" else cls(lowered)
