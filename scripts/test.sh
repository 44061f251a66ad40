#!/usr/bin/env bash
# The test command (README "Testing"): set-up, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --all 2>&1
