#!/usr/bin/env bash
# Sets up and runs every check and test: formatting, lints, and the whole test suite.
# Usage: scripts/test.sh
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO"
total=$SECONDS

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy (all targets and features, warnings are errors)" \
  cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  step "tests (cargo nextest)" cargo nextest run --workspace --locked --no-fail-fast
else
  step "tests (cargo test)" cargo test --workspace --locked --no-fail-fast
fi
# Interoperability: the tables read by independent readers (Python `deltalake`, and a
# pyarrow reader of the Delta log), installed into a project venv on first use.
step "python test environment" setup_python
# Deployment checks (tests/python/test_deploy.py): checkov and hadolint in their own venv;
# kubectl to render the kustomize overlays and a Pushgateway, from Debian's packages.
step "deployment linters (checkov, hadolint)" setup_lint
step "kubectl and Pushgateway (Debian packages)" setup_debian_tools
step "build medallion" cargo build --locked --workspace --all-targets
step "interoperability and deployment tests (pytest)" env \
  MEDALLION_BIN="$CARGO_TARGET_DIR/debug/medallion" \
  MEDALLION_LINT_VENV="$HOME/.cache/medallion/venv-lint" \
  "$HOME/.cache/medallion/venv/bin/python" -m pytest -q -p no:cacheprovider "$REPO/tests/python"
echo "all checks passed in $((SECONDS - total))s"
