#!/usr/bin/env bash
# The fuzz harness: every target of tests/fuzz/targets.py for SECONDS each (default 300), on a
# corpus kept in .fuzz/corpus/<target> (it grows from run to run); prints executions, corpus size
# and findings per target. A finding is a file in .fuzz/findings: run it again with
#   .venv/bin/python -m tests.fuzz TARGET .fuzz/findings/FILE
# Usage: scripts/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
seconds="${1:-300}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(body event url source)
mkdir -p .fuzz/logs .fuzz/findings
status=0
printf '%-8s %12s %10s %8s %9s\n' target executions exec/s corpus findings
for target in "${targets[@]}"; do
  log=".fuzz/logs/$target.log"
  before=$(find .fuzz/findings -name "$target-*" | wc -l)
  if ! .venv/bin/python -m tests.fuzz "$target" -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    status=1
  fi
  runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  corpus=$(find ".fuzz/corpus/$target" -type f | wc -l)
  after=$(find .fuzz/findings -name "$target-*" | wc -l)
  printf '%-8s %12s %10s %8s %9s\n' "$target" "${runs:-0}" "${rate:-0}" "$corpus" "$((after - before))"
done
exit "$status"
