#!/usr/bin/env bash
# The main job on the embedded local default: Azurite + local host + simulator, generated events.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/claimsflow run "${@:---generate=200}"
