#!/usr/bin/env bash
# The test command (README "Testing"): set-up, then every test, then one total line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all 2>&1 | tee "$log" || status=$?
# Every test binary prints its own "test result:" line; add them up.
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed;?$/) p += $i
         if ($(i+1) ~ /^failed;?$/) f += $i
       }
     }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
