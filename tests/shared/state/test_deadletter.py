from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from claimsflow.azurite import Azurite
from shared.state.deadletter import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetterReason,
    DeadLetterStatus,
    DeadLetterStore,
    raw_body_id,
)

pytestmark = pytest.mark.azurite


@pytest.fixture
def store(azurite: Azurite, unique: Callable[[str], str]) -> DeadLetterStore:
    table = TableClient.from_connection_string(azurite.connection_string, unique("dl"))
    table.create_table()
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        unique("dl-")
    )
    return DeadLetterStore(table, container, shards=4)


def letter(letter_id: str, payload: dict[str, object] | str, error: str = "boom") -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        domain="xact",
        stage="xact_transfer",
        reason=DeadLetterReason.EXHAUSTED,
        category="transient",
        error=error,
        retry_count=4,
        payload=payload,
        trace_id="t-1",
        media_id="m-1",
    )


def test_record_is_idempotent_by_id(store: DeadLetterStore) -> None:
    assert store.record(letter("xact_transfer:m-1", {"media_id": "m-1"}))
    assert not store.record(letter("xact_transfer:m-1", {"media_id": "m-1"}))
    letters = store.list()
    assert [dl.id for dl in letters] == ["xact_transfer:m-1"]
    assert letters[0].payload == {"media_id": "m-1"}
    assert letters[0].retry_count == 4
    assert letters[0].status is DeadLetterStatus.OPEN


def test_errors_are_redacted_and_capped(store: DeadLetterStore) -> None:
    url = "https://h.example.com/a.pdf?X-Amz-Signature=SECRETSIG&X-Amz-Credential=AKIA"
    store.record(letter("x:1", {}, error=f"GET {url} failed " + "x" * 1000))
    stored = store.get("x:1")
    assert stored is not None
    assert "SECRETSIG" not in stored.error and "AKIA" not in stored.error
    assert len(stored.error) == 500


def test_large_raw_body_goes_to_a_blob(store: DeadLetterStore) -> None:
    raw = "{" + "x" * 100_000
    letter_id = raw_body_id("xact_ingest", raw)
    assert store.record(letter(letter_id, raw))
    stored = store.get(letter_id)
    assert stored is not None and stored.payload == raw


def test_status_changes_and_filtering(store: DeadLetterStore) -> None:
    store.record(letter("a", {}))
    store.record(letter("b", {}))
    store.set_status("a", DeadLetterStatus.RESOLVED)
    assert [dl.id for dl in store.list(status=DeadLetterStatus.OPEN)] == ["b"]
    assert [dl.id for dl in store.list(status=DeadLetterStatus.RESOLVED)] == ["a"]


def test_filters_by_every_field_and_time(store: DeadLetterStore) -> None:
    store.record(letter("a", {}))
    store.record(replace(letter("b", {}), stage="xact_enrich", reason=DeadLetterReason.PERMANENT))
    store.record(replace(letter("c", {}), domain="claimx", created_at=datetime(2026, 1, 1, tzinfo=UTC)))

    def ids(**where: object) -> list[str]:
        return sorted(dl.id for dl in store.iter(DeadLetterFilter(**where)))  # type: ignore[arg-type]

    assert ids() == ["a", "b", "c"]
    assert ids(domain="xact") == ["a", "b"]
    assert ids(stage="xact_enrich") == ["b"]
    assert ids(reason="exhausted", domain="xact") == ["a"]
    assert ids(since=datetime(2026, 6, 1, tzinfo=UTC)) == ["a", "b"]
    assert ids(until=datetime(2026, 6, 1, tzinfo=UTC)) == ["c"]
    assert ids(status="replayed") == []


def test_delete_removes_the_record_and_its_payload_blob(store: DeadLetterStore) -> None:
    raw = "{" + "y" * 50_000
    letter_id = raw_body_id("xact_ingest", raw)
    store.record(letter(letter_id, raw))
    assert len(list(store._container.list_blobs())) == 1
    assert store.delete(letter_id)
    assert store.get(letter_id) is None
    assert list(store._container.list_blobs()) == []
    assert not store.delete(letter_id)


def test_only_the_replay_it_belongs_to_reopens_a_record(store: DeadLetterStore) -> None:
    store.record(letter("r", {}))
    assert not store.record(letter("r", {}, error="again"), replay_generation=1)  # still open
    store.set_status("r", DeadLetterStatus.REPLAYED, replays=1, replay_instance_id="i:replay1")
    assert not store.record(letter("r", {}, error="late original"))  # not a replay
    assert not store.record(letter("r", {}, error="older replay"), replay_generation=2)
    assert store.record(letter("r", {}, error="replay failed"), replay_generation=1)
    reopened = store.get("r")
    assert reopened is not None
    assert (reopened.status, reopened.error, reopened.replays) == (DeadLetterStatus.OPEN, "replay failed", 1)
    assert not store.record(letter("r", {}, error="twice"), replay_generation=1)
