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

# The Python environment of the interoperability tests and the DuckDB baseline, installed
# into a project venv on first use (and again when the requirements change).
setup_python() {
  local venv="$HOME/.cache/medallion/venv" req="$REPO/tests/python/requirements.txt"
  local stamp="$venv/.requirements.sha256" want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
  fi
}
