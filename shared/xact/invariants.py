"""What the run invariants (``shared/invariants.py``) need to know of XACT: the attachments an event
names are the distinct files of its ``attachments`` list (a re-signed URL is the same file)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.ids import media_id


def expected_media(trace_id: str, orchestration_input: Mapping[str, Any]) -> set[str]:
    return {media_id(trace_id, url) for url in orchestration_input.get("attachments", [])}
