#!/usr/bin/env bash
# The test command: installs the test peers, then runs every test of the
# workspace (unit, spool, and integration tests against the real binary,
# Postfix's smtp-sink and dkimpy).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
cargo build --workspace --locked --bins
cargo test --workspace --locked -- "$@"
