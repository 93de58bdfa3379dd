"""The ``claimx-backfill`` command records a request the poller then works through."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from claimsflow.cli import app
from shared.claimx.poller import CursorStore
from shared.config import Settings
from shared.storage import StorageFactory

pytestmark = pytest.mark.azurite


def test_backfill_request_is_stored_for_the_poller(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("AzureWebJobsStorage", settings.storage_connection_string or "")
    monkeypatch.setenv("TASKHUB_NAME", settings.taskhub_name)
    from shared.config import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(
        app, ["claimx-backfill", "--start", "2026-11-01T08:00:00", "--end", "2026-11-01T09:00:00"]
    )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    container = (
        StorageFactory(settings).blob_service().get_container_client(settings.state_container("pollers"))
    )
    store = CursorStore(container)
    [name] = store.backfills()
    assert name in result.output
    track, _ = store.load(name)
    assert track is not None and not track.done
    assert (track.start, track.end) == ("2026-11-01T08:00:00.0000000Z", "2026-11-01T09:00:00.0000000Z")

    reversed_range = CliRunner().invoke(
        app, ["claimx-backfill", "--start", "2026-11-02T00:00:00", "--end", "2026-11-01T00:00:00"]
    )
    assert reversed_range.exit_code != 0
