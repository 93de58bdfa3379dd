from __future__ import annotations

from collections.abc import Callable

import pytest
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient

from claimsflow.azurite import Azurite
from shared.state.deadletter import (
    DeadLetter,
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
