#!/usr/bin/env bash
# Crash soak: kills `medallion run` at random moments (SIGKILL), re-runs it, and checks that
# every Gold table then equals a clean run's, row for row. Local filesystem by default; set
# SOAK_ROOT=s3://bucket/prefix and SOAK_LANDING=s3://bucket/landing/ (with AWS_* set) to soak
# against an object store.
# Usage: scripts/soak.sh [ROUNDS]      (default 200)
#   EVENTS=N     sample events (default 20000)
set -euo pipefail
source "$(dirname "$0")/env.sh"
rounds="${1:-200}"
events="${EVENTS:-20000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --locked --workspace --bin medallion --manifest-path "$REPO/Cargo.toml" >/dev/null
bin="$CARGO_TARGET_DIR/debug/medallion"
cd "$REPO"
landing="${SOAK_LANDING:-$work/landing}"
if [ -z "${SOAK_LANDING:-}" ]; then
  "$bin" generate --events "$events" --events-per-file $(( (events + 7) / 8 )) --seed 77 --out "$landing" >/dev/null
fi

# Every Gold table as sorted CSV, floats printed to 9 significant digits.
gold() {
  local root="$1" t
  for t in campaign_daily channel_cac attribution channel_daily; do
    "$bin" --root "$root" --landing "$landing" query --format csv \
      "SELECT * FROM gold.$t" | python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
def fmt(v):
    try:
        return v if v.lstrip("-").isdigit() else format(float(v), ".9g")
    except ValueError:
        return v
print("\n".join(sorted(",".join(fmt(v) for v in r) for r in rows[1:])))'
  done
}

clean="$work/clean"
"$bin" --root "$clean" --landing "$landing" run >/dev/null 2>&1
start=$(date +%s.%N)
"$bin" --root "$work/timed" --landing "$landing" run >/dev/null 2>&1
# Kills land anywhere from the start to a little past the end of a run's length.
length=$(python3 -c "print(round(1.1 * ($(date +%s.%N) - $start), 2))")
expected="$(gold "$clean")"
echo "soak: $rounds rounds, a clean run takes about ${length}s"
failures=0
for i in $(seq 1 "$rounds"); do
  root="${SOAK_ROOT:+$SOAK_ROOT/round-$i}"
  root="${root:-$work/round-$i}"
  "$bin" --root "$root" --landing "$landing" run >/dev/null 2>&1 &
  pid=$!
  # A random moment within the run's length.
  sleep "$(python3 -c "import random; print(random.uniform(0, $length))")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if ! "$bin" --root "$root" --landing "$landing" run >/dev/null 2>"$work/rerun.log"; then
    echo "round $i: the re-run failed:"; tail -3 "$work/rerun.log"; failures=$((failures + 1)); continue
  fi
  if [ "$(gold "$root")" != "$expected" ]; then
    echo "round $i: Gold differs from a clean run"; failures=$((failures + 1))
  fi
  [ -z "${SOAK_ROOT:-}" ] && rm -rf "$root"
  (( i % 10 == 0 )) && echo "round $i: ok so far ($failures failures)"
done
echo "soak: $rounds rounds, $failures failures"
[ "$failures" -eq 0 ]
