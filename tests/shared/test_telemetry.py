"""Log context on every record, JSON lines that are redacted, orchestrator logging that is replay-safe,
and nothing in the app that configures an exporter a second time."""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.telemetry import ReplaySafeLogger, install_log_context, json_log_handler, log_context

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def capture(name: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(name)
    logger.handlers = [json_log_handler(logging.INFO, stream)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_context_and_extras_redacted() -> None:
    logger, stream = capture("claimsflow.test.json")
    with log_context(domain="xact", stage="xact_transfer", trace_id="t-1"):
        with log_context(instance_id="xact-1"):
            logger.info(
                "moved %s",
                "https://h/f.pdf?X-Amz-Signature=SECRETSIG",
                extra={"url": "https://h/?sig=XYZSIG"},
            )
        logger.info("outer", extra={"trace_id": "explicit"})
    logger.info("outside")
    first, second, third = lines(stream)
    assert first["domain"] == "xact" and first["stage"] == "xact_transfer"
    assert first["trace_id"] == "t-1" and first["instance_id"] == "xact-1"
    assert "SECRETSIG" not in json.dumps(first) and "XYZSIG" not in json.dumps(first)
    assert second["trace_id"] == "explicit" and "instance_id" not in second
    assert "trace_id" not in third and third["message"] == "outside"


def test_install_log_context_adds_the_filter_once_to_root_handlers() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        install_log_context()
        install_log_context()
        assert len(handler.filters) == 1
    finally:
        root.removeHandler(handler)


@dataclass
class OrchestrationState:
    """What the logger reads of an orchestration context."""

    instance_id: str
    is_replaying: bool


def test_orchestrator_logs_only_when_not_replaying() -> None:
    logger, stream = capture("claimsflow.test.replay")
    context = OrchestrationState("xact-9", is_replaying=True)
    safe = ReplaySafeLogger(logger, context)
    safe.info("scheduled")
    context.is_replaying = False
    safe.info("scheduled")
    [line] = lines(stream)
    assert line["instance_id"] == "xact-9"


def test_the_app_never_configures_an_exporter_itself() -> None:
    """The Python worker does it (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY); a second call would
    send every record twice."""
    sources = [*ROOT.glob("shared/**/*.py"), *ROOT.glob("functions/*.py"), ROOT / "function_app.py"]
    calls = [p for p in sources if re.search(r"configure_azure_monitor\s*\(", p.read_text())]
    assert calls == []
    pinned = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^azure-monitor-opentelemetry==\d", pinned, re.MULTILINE)


@pytest.mark.parametrize("path", ["infra/app/api.bicep", "infra/terraform/app.tf"])
def test_the_deployment_lets_the_worker_export_telemetry(path: str) -> None:
    text = (ROOT / path).read_text()
    assert re.search(r"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY\W+=?\s*'?\"?true", text)
    assert json.loads((ROOT / "host.json").read_text())["telemetryMode"] == "OpenTelemetry"
