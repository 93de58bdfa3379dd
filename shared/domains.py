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

    @classmethod
    def of_name(cls, name: str) -> Domain:
        """The domain of a function, stage or table name: each starts with its domain
        (``xact_transfer``, ``claimx_projects``)."""
        return cls(name.split("_", 1)[0])
