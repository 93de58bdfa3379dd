#!/usr/bin/env bash
# The crash campaign's full form: `claimsflow run` in a child process SIGKILLed at every named point
# (its 1st, 2nd, ... pass) and at seeded random instants, each run then resumed with the same command
# and compared with an uninterrupted run. Prints kill points x seeds survived; exit 1 if any failed.
#   scripts/crash-campaign.sh [--seeds 3] [--events 60] [--kills-per-run 3]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m tests.crash.campaign "$@"
