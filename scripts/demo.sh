#!/usr/bin/env bash
# The main job on a fresh Debian machine (as root): set-up, build, then `tracenat demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
exec target/release/tracenat demo "$@"
