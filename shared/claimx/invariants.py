"""What the run invariants (``shared/invariants.py``) need to know of ClaimX: a file-added event
names one media file; the other event types name none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.claimx.events import PROJECT_FILE_ADDED


def expected_media(trace_id: str, orchestration_input: Mapping[str, Any]) -> set[str]:
    media = orchestration_input.get("media_id")
    return {str(media)} if orchestration_input.get("event_type") == PROJECT_FILE_ADDED and media else set()
