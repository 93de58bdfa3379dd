"""Stand-ins for shared mechanisms that are still being built: starting an orchestration
idempotently, and a size check of a row before it is staged.

ClaimX reaches them only through this module, so each can be replaced by the shared mechanism
in one place once it exists.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from shared.errors import ClassifiedError, ErrorCategory, Failure

# An Azure Table entity holds at most 1 MiB; strings count two bytes a character (UTF-16). A row
# must leave room for the staging bookkeeping properties, so the cap is below the service limit.
MAX_STAGED_ROW_BYTES = 900_000


class Starter(Protocol):
    async def start_once(
        self, orchestrator: str, instance_id: str, payload: dict[str, Any], *, rerun_finished: bool = False
    ) -> bool: ...


async def start_idempotently(
    starter: Starter,
    orchestrator: str,
    instance_id: str,
    payload: dict[str, Any],
    *,
    rerun_finished: bool,
    exists: Callable[[str], Awaitable[bool]] | None = None,
) -> bool:
    """Start the instance once. A start that fails because a concurrent delivery started the same
    instance first (a 409 from the check-then-start race) is success, not a batch failure."""
    try:
        return await starter.start_once(orchestrator, instance_id, payload, rerun_finished=rerun_finished)
    except Exception as exc:
        if exists is None or "already exists" not in str(exc).lower():
            raise
        if await exists(instance_id):
            return False
        raise


def check_row_size(table: str, row: Mapping[str, Any]) -> None:
    """A row too big for one staging entity is PERMANENT for the work that produced it."""
    size = sum(2 * len(str(key)) + 2 * len(_text(value)) for key, value in row.items() if value is not None)
    if size > MAX_STAGED_ROW_BYTES:
        raise ClassifiedError(
            Failure.of(
                ErrorCategory.PERMANENT,
                f"{table} row of about {size} bytes exceeds the {MAX_STAGED_ROW_BYTES}-byte staging limit",
            )
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
