"""A short run of every fuzz target in the default test command (the long run is scripts/fuzz.sh):
atheris drives each target from the issue's hostile lines for a few thousand inputs, and a
finding (an invariant of issue 9 broken) fails the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from claimsflow.azurite import REPO_ROOT

pytestmark = pytest.mark.unit

RUNS = 3000
TARGETS = ("body", "event", "url", "source")  # imported here, targets.py would instrument shared/


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz",
            target,
            f"-runs={RUNS}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {RUNS} runs" in result.stderr
    assert not list(tmp_path.glob("crash-*"))
    assert any(corpus.iterdir())  # seeded and grown
