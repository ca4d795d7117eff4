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

# venv_from DIR REQUIREMENTS: a venv at DIR with exactly REQUIREMENTS installed, made again
# whenever the requirements file changes.
venv_from() {
  local venv="$1" req="$2" stamp="$1/.requirements.sha256" want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$stamp"
  fi
}

# The Python environment of the interoperability tests and the DuckDB baseline, installed
# into a project venv on first use (and again when the requirements change).
setup_python() {
  venv_from "$HOME/.cache/medallion/venv" "$REPO/tests/python/requirements.txt"
}

# Linters of the deployment files (checkov, hadolint) in a venv of their own: checkov brings
# a `hcl2` module of its own that must not meet python-hcl2 of the test venv.
setup_lint() {
  venv_from "$HOME/.cache/medallion/venv-lint" "$REPO/tests/deploy/requirements-lint.txt"
}

# Tools from Debian's packages, unpacked (not installed) into ~/.cache/medallion/tools: kubectl
# (kubernetes-client) renders the kustomize overlays for validation (`kubectl kustomize`,
# kustomize v2.0.3); prometheus-pushgateway receives the metrics `run --metrics-push` sends.
DEBIAN_TOOLS="$HOME/.cache/medallion/tools"
export MEDALLION_KUBECTL="$DEBIAN_TOOLS/kubernetes-client/usr/bin/kubectl"
export MEDALLION_PUSHGATEWAY="$DEBIAN_TOOLS/prometheus-pushgateway/usr/bin/prometheus-pushgateway"
setup_debian_tools() {
  local package
  for package in kubernetes-client prometheus-pushgateway; do
    local dir="$DEBIAN_TOOLS/$package"
    [ -d "$dir/usr/bin" ] && continue
    local tmp
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download "$package" >/dev/null 2>&1); then
      apt-get update -qq >/dev/null
      (cd "$tmp" && apt-get download "$package" >/dev/null)
    fi
    mkdir -p "$dir"
    dpkg -x "$tmp/$package"_*.deb "$dir"
    rm -rf "$tmp"
  done
  "$MEDALLION_KUBECTL" version --client 2>/dev/null | head -n 1
  "$MEDALLION_PUSHGATEWAY" --version 2>&1 | head -n 1
}
