#!/usr/bin/env bash
# Installs what claimsflow needs on a fresh machine: a Python venv in .venv (runtime + dev
# requirements, the project itself with its `claimsflow` command) and Azurite from npm in .tools/;
# with --checks also the tools of the offline infrastructure checks (checkov, the Kusto language
# service), which only the tests use. Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says what it starts (on stderr), so a fresh clone is not silent for minutes.
step() { echo "bootstrap: $*" >&2; }

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  step "creating the Python environment in .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt requirements-dev.txt requirements-infra.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  step "installing the Python packages (about two minutes on a fresh clone)"
  .venv/bin/python -m pip install --quiet --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --quiet -r requirements-dev.txt
  .venv/bin/python -m pip install --quiet --quiet --no-deps -e .
  echo "$want" > "$stamp"
  step "Python packages ready"
fi

if [ ! -x .tools/node_modules/.bin/azurite ]; then
  step "installing Azurite (the storage emulator) from npm into .tools"
  mkdir -p .tools
  (cd .tools && npm install --silent --no-audit --no-fund --no-save azurite@3.35.0 >/dev/null)
fi

if [ "${1:-}" != "--checks" ]; then
  exit 0
fi

# checkov for the offline IaC checks (tests/infra), in its own venv: its pins clash with the app's.
if ! cmp -s infra/checkov/requirements.txt .tools/checkov/.requirements.txt 2>/dev/null; then
  step "installing checkov (offline infrastructure checks) into .tools/checkov"
  "$PYTHON" -m venv .tools/checkov && .tools/checkov/bin/python -m pip install --quiet --quiet -r infra/checkov/requirements.txt && cp infra/checkov/requirements.txt .tools/checkov/.requirements.txt
fi

# The Kusto language service for the offline KQL checks of the alert and workbook queries
# (tests/infra), from infra/kql/package.json; the stamp is written only once the install worked.
if ! cmp -s infra/kql/package.json .tools/kql/.installed 2>/dev/null; then
  step "installing the Kusto language service (offline KQL checks) into .tools/kql"
  mkdir -p .tools/kql && cp infra/kql/package.json .tools/kql/package.json
  (cd .tools/kql && npm install --silent --no-audit --no-fund --no-package-lock >/dev/null)
  cp infra/kql/package.json .tools/kql/.installed
fi
