# Shared settings of the project's scripts (sourced, not run).
# Builds go to one persistent target directory outside the clone, so that repeated runs
# (and fresh clones on the same machine) reuse compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medallion/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-1}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO

# step NAME CMD...: runs a step and prints how long it took.
step() {
  local name="$1"; shift
  local start=$SECONDS
  echo "==> $name"
  if "$@"; then
    echo "<== $name: ok in $((SECONDS - start))s"
  else
    local rc=$?
    echo "<== $name: FAILED (exit $rc) after $((SECONDS - start))s"
    return $rc
  fi
}
