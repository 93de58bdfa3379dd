"""``claimsflow config validate``: would the app start with these settings, and what would it use?"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from claimsflow.ops.common import AsJson
from claimsflow.ops.render import emit_json, errors, table
from shared.config import ConfigError, Settings, setting_names
from shared.redact import REDACTED, redact_text

app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Check the app's settings before it starts."
)

UNRESOLVED = re.compile(r"\$\{[^}]*\}")
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|CONNECTION|AzureWebJobsStorage$)", re.IGNORECASE)
# Connections the triggers need; the settings object cannot require them (either form is valid).
REQUIRED_ONE_OF = (("EventHubConnection", "EventHubConnection__fullyQualifiedNamespace"),)


def mask(name: str, value: Any) -> Any:
    """Secrets masked: settings whose name says secret, and key material anywhere."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)
    if SECRET_NAME.search(name) and not name.endswith(
        ("ServiceUri", "__credential", "__clientId", "Namespace")
    ):
        masked = redact_text(text)
        return masked if masked != text else REDACTED
    return redact_text(text)


def problems(values: dict[str, str]) -> list[str]:
    found = [
        f"{name} has an unresolved reference" for name, value in values.items() if UNRESOLVED.search(value)
    ]
    for names in REQUIRED_ONE_OF:
        if not any(values.get(n, "").strip() for n in names):
            found.append(f"missing setting: {' or '.join(names)}")
    return found


_PYDANTIC_LINE = re.compile(r"^(?:Value error, )?(?P<reason>.*?)(?: \[type=.*)?$")


def reasons(error: str) -> list[str]:
    """The readable reasons in a settings error (pydantic's headers and links dropped), redacted."""
    found = []
    for line in error.splitlines():
        line = line.strip()
        if (
            not line
            or line.startswith(("For further information", "1 validation error"))
            or "validation errors" in line
        ):
            continue
        match = _PYDANTIC_LINE.match(line)
        found.append(redact_text(match.group("reason") if match else line))
    return found


def effective(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(by_alias=True)
    return {name: mask(name, value) for name, value in sorted(data.items())}


@app.command("validate")
def validate(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="A local.settings.json to check (its Values); default: this environment."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Check settings: fail on missing ones and unresolved ${VAR}.

    Shows the effective settings with secrets masked."""
    if file is not None:
        values = {k: str(v) for k, v in json.loads(file.read_text())["Values"].items()}
    else:
        names = setting_names() | {n for group in REQUIRED_ONE_OF for n in group}
        values = {k: v for k, v in os.environ.items() if k in names}
    found = problems(values)
    settings: Settings | None = None
    try:
        settings = Settings(**values)
    except (ConfigError, ValueError) as exc:
        found += [reason for reason in reasons(str(exc)) if reason not in found]
    shown = effective(settings) if settings else {}
    if as_json:
        emit_json({"valid": not found, "problems": found, "settings": shown})
    else:
        if shown:
            table("effective settings", ["setting", "value"], shown.items())
        for problem in found:
            errors().print(f"[red]{problem}[/]")
        if not found:
            typer.echo("settings are valid")
    if found:
        raise typer.Exit(2)
