"""The embedded local defaults: the ``Values`` of ``local.settings.sample.json``.

``claimsflow run`` and the end-to-end tests start from exactly what a developer's ``func start``
would read, so the local runs exercise the same settings (including the ``%NAME%`` binding
references the host resolves) as the sample file documents.
"""

from __future__ import annotations

import json
from pathlib import Path

from claimsflow.azurite import REPO_ROOT

SAMPLE_FILE = REPO_ROOT / "local.settings.sample.json"


def sample_values(path: Path = SAMPLE_FILE) -> dict[str, str]:
    values = json.loads(path.read_text(encoding="utf-8"))["Values"]
    return {key: str(value) for key, value in values.items()}
