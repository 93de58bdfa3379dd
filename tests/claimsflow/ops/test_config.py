"""`claimsflow config validate`: missing settings and unresolved references fail; secrets are masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claimsflow.cli import app

pytestmark = pytest.mark.unit
SAMPLE = Path(__file__).resolve().parents[3] / "local.settings.sample.json"


def validate(path: Path) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["config", "validate", "--file", str(path), "--json"])
    return result.exit_code, json.loads(result.stdout)


def write(tmp_path: Path, values: dict[str, str]) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": values}))
    return path


def test_the_sample_settings_are_valid_and_shown_masked() -> None:
    code, answer = validate(SAMPLE)
    assert (code, answer["valid"], answer["problems"]) == (0, True, [])
    settings = answer["settings"]
    assert isinstance(settings, dict)
    assert settings["TASKHUB_NAME"] == "claimsflow"
    text = json.dumps(settings)
    assert "SAS_KEY_VALUE" not in text  # the sample's Event Hubs key
    assert "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq" not in text  # Azurite's key


def test_missing_settings_fail(tmp_path: Path) -> None:
    code, answer = validate(write(tmp_path, {"TASKHUB_NAME": "hub1"}))
    assert code == 2 and answer["valid"] is False
    problems = " | ".join(answer["problems"])  # type: ignore[arg-type]
    assert "state storage is not configured" in problems
    assert "missing setting: EventHubConnection" in problems


def test_unresolved_references_fail_and_keys_never_show(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0LWtleQ==",
            "EventHubConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
            "LAKE_TABLES_URI": "${LAKE_URI}",
        },
    )
    code, answer = validate(path)
    assert code == 2
    assert "LAKE_TABLES_URI has an unresolved reference" in answer["problems"]  # type: ignore[operator]
    assert "c2VjcmV0LWtleQ" not in json.dumps(answer)
    assert not any("errors.pydantic.dev" in p for p in answer["problems"])  # type: ignore[union-attr]
