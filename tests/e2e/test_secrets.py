"""No secret leaves the state account: a planted secret setting and a presigned signature, a run with
failures (retries, an exhausted source, a 404, a body that is not an event), and neither appears in
any log line, any metric, or any dead-letter field other than the replay task."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared import metrics
from tests.conftest import exported_points
from tests.e2e.harness import Pipeline, xact_body

pytestmark = pytest.mark.e2e

SECRET_KEY = "PlantedSharedAccessKey0123456789abcdef="
SIGNATURE = "f00dfeed" * 8
S3_HOST = "usw2-prod-xn-exportreceiver-publish.s3.us-west-2.amazonaws.com"


def signed(path: str) -> str:
    return (
        f"https://{S3_HOST}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20991231T000000Z"
        f"&X-Amz-Expires=604800&X-Amz-Credential=AKIAPLANTED%2F20991231&X-Amz-Signature={SIGNATURE}"
    )


async def test_no_secret_reaches_logs_metrics_dead_letters_or_tables(
    make_pipeline: Callable[..., Awaitable[Pipeline]], every_log_line: io.StringIO, otel_metrics: Any
) -> None:
    secret_connection = (
        f"Endpoint=sb://planted.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey={SECRET_KEY}"
    )
    pipeline = await make_pipeline(
        {
            "faults": [
                {"path_contains": "always-down", "statuses": [503], "repeat": True},
                {"path_contains": "gone", "statuses": [404], "repeat": True},
                {"path_contains": "flaky", "statuses": [503, 500], "repeat": False},
            ]
        },
        EventHubConnection=secret_connection,
    )
    assert pipeline.runtime.settings.eventhub_connection_string == secret_connection  # planted
    trace_id = str(uuid.uuid4())
    urls = [
        signed(f"/exports/A1B2C3/{name}") for name in ("always-down.pdf", "gone.pdf", "flaky.pdf", "fine.pdf")
    ]
    await pipeline.deliver([xact_body(trace_id, urls), "{not json " + SIGNATURE])
    await pipeline.settle()

    letters = pipeline.dead_letters()
    assert {(d.stage, d.reason.value) for d in letters} >= {
        ("xact_transfer", "exhausted"),
        ("xact_transfer", "permanent"),
    }
    assert any(
        SIGNATURE in json.dumps(d.payload) for d in letters if d.stage == "xact_transfer"
    )  # replay needs it

    logs = every_log_line.getvalue()
    assert "attachment transfer failed" in logs  # the failures were logged
    exported = json.dumps([(name, attrs, str(point)) for name, attrs, point in exported_points(otel_metrics)])
    in_process = json.dumps({**{k: str(v) for k, v in metrics.snapshot().items()}, **metrics.details()})
    letter_fields = json.dumps(
        [{k: v for k, v in vars_of(d).items() if k != "payload"} for d in letters], default=str
    )
    invalid_body = [d for d in letters if d.stage == "xact_ingest"]
    for place, text in {
        "logs": logs,
        "exported metrics": exported,
        "metrics in process": in_process,
        "dead-letter fields": letter_fields,
    }.items():
        assert SECRET_KEY not in text, f"the planted key is in the {place}"
        assert "AKIAPLANTED" not in text, f"the planted credential is in the {place}"
        assert SIGNATURE not in text, f"the signature is in the {place}"
    # the raw body of an invalid event is its own replay task: kept whole, in its payload only
    assert invalid_body and SIGNATURE in str(invalid_body[0].payload)


def vars_of(letter: Any) -> dict[str, Any]:
    return {name: getattr(letter, name) for name in letter.__dataclass_fields__}
