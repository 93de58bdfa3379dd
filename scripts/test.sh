#!/usr/bin/env bash
# The test command: installs what is missing, then runs every test tier that can run here
# (unit, azurite, e2e), lint and type checks. Azurite is started by the test session itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --checks
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
