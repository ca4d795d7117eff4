#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, lints, and the whole test suite.
# Usage: scripts/test.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO"
total=$SECONDS

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy (all targets, warnings are errors)" \
  cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  step "tests (cargo nextest)" cargo nextest run --workspace --locked --no-fail-fast
else
  step "tests (cargo test)" cargo test --workspace --locked --no-fail-fast
fi
echo "all checks passed in $((SECONDS - total))s"
