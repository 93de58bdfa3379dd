"""External linters over the IaC: checkov (Bicep + Terraform) and ``terraform fmt -check``.

checkov runs from its own venv in .tools/checkov (scripts/bootstrap.sh --checks; its pins clash with the
app's), created here too if a machine skipped the bootstrap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra import infra_iac as iac

pytestmark = pytest.mark.unit

CHECKOV_VENV = iac.REPO / ".tools" / "checkov"
CHECKOV_REQUIREMENTS = iac.REPO / "infra" / "checkov" / "requirements.txt"
SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def _checkov() -> Path:
    """The checkov executable, installed from the pinned requirements when missing or stale."""
    exe = CHECKOV_VENV / "bin" / "checkov"
    stamp = CHECKOV_VENV / ".requirements.txt"
    wanted = CHECKOV_REQUIREMENTS.read_text()
    if not exe.exists() or not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)], check=True)
        pip = [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(CHECKOV_REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    return exe


@pytest.fixture(scope="module")
def checkov_report() -> list[dict[str, Any]]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    run = subprocess.run(
        [
            str(_checkov()),
            "-d",
            "infra",
            "--framework",
            "bicep",
            "terraform",
            "--skip-download",
            "-o",
            "json",
        ],
        cwd=iac.REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert run.returncode in (0, 1), run.stderr[-2000:]
    report = json.loads(run.stdout)
    return report if isinstance(report, list) else [report]


def _summary(report: list[dict[str, Any]], check_type: str) -> dict[str, Any]:
    return next(r for r in report if r["check_type"] == check_type)


@pytest.mark.parametrize("check_type", ["bicep", "terraform"])
def test_checkov_finds_no_failures(checkov_report: list[dict[str, Any]], check_type: str) -> None:
    result = _summary(checkov_report, check_type)
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in result["results"]["failed_checks"]]
    assert failed == []
    assert result["summary"]["parsing_errors"] == 0
    assert result["summary"]["passed"] > 0, "checkov ran no check: is the runner still parsing the files?"


def test_every_checkov_skip_has_a_reason_and_is_used(checkov_report: list[dict[str, Any]]) -> None:
    """Skips are inline, justified, and removed when the check no longer fires."""
    declared: set[str] = set()
    for path in [*(iac.REPO / "infra").rglob("*.tf"), *(iac.REPO / "infra").rglob("*.bicep")]:
        for match in SKIP.finditer(path.read_text()):
            assert (match.group(2) or "").strip(), f"{path.name}: skip {match.group(1)} has no reason"
            declared.add(match.group(1))
    used = {c["check_id"] for r in checkov_report for c in r["results"].get("skipped_checks", [])}
    assert declared == used


def test_terraform_fmt_is_clean() -> None:
    terraform = shutil.which("terraform") or "/usr/local/bin/terraform"
    run = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(iac.REPO / iac.TF_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout
