#!/usr/bin/env bash
# Benchmarks: sample-data generation and each layer, at 1M and 10M events, and the
# independent DuckDB implementation of the same pipeline (tests/python/duckdb_pipeline.py)
# side by side, landing to Gold.
# Reports events/s, MB/s of uncompressed NDJSON and peak RSS for every step.
# Usage: scripts/bench.sh [EVENTS...]        (default: 1000000 10000000)
#   BENCH_DIR   where data and tables go (default: a temporary directory, removed after)
#   BENCH_DUCKDB=0   skip the DuckDB baseline
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)

cargo build --locked --workspace --all-targets >/dev/null
bin="$CARGO_TARGET_DIR/debug/medallion"
dir="${BENCH_DIR:-$(mktemp -d)}"
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$dir"' EXIT

# measure LABEL EVENTS BYTES CMD...: runs CMD under /usr/bin/time and prints one line.
measure() {
  local label="$1" events="$2" bytes="$3"; shift 3
  local t; t=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$t" "$@" >/dev/null
  read -r secs rss_kb <"$t"; rm -f "$t"
  awk -v l="$label" -v n="$events" -v b="$bytes" -v s="$secs" -v r="$rss_kb" 'BEGIN {
    mbs = b > 0 ? sprintf("%8.1f MB/s", b / 1e6 / s) : sprintf("%13s", "")
    printf "%-24s %10d events %8.2f s %10.0f events/s %s %6.0f MiB peak RSS\n",
      l, n, s, n / s, mbs, r / 1024 }'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%d)"
for n in "${sizes[@]}"; do
  run="$dir/$n"
  rm -rf "$run"; mkdir -p "$run"
  # 100 event files; the newest one (1% of the events) lands after the rest, for the
  # incremental runs.
  measure "generate" "$n" 0 "$bin" generate --events "$n" --events-per-file $(( (n + 99) / 100 )) \
    --seed 42 --out "$run/generated"
  newest=$(cd "$run/generated" && find events -type f | sort | tail -n 1)
  cp -al "$run/generated" "$run/landing"
  rm "$run/landing/$newest"
  raw=$(python3 - "$run/landing/events" <<'PY'
import gzip, os, sys
total = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        with open(p, 'rb') as fh:
            gz = fh.read(2) == b'\x1f\x8b'
        with (gzip.open if gz else open)(p, 'rb') as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
print(total)
PY
)
  first=$(( n - n / 100 ))
  measure "bronze, first 99%" "$first" "$raw" "$bin" run --layer bronze --root "$run/lake" --landing "$run/landing"
  measure "silver, first 99%" "$first" "$raw" "$bin" run --layer silver --root "$run/lake" --landing "$run/landing"
  measure "gold, first 99%" "$first" 0 "$bin" run --layer gold --root "$run/lake" --landing "$run/landing"
  mkdir -p "$(dirname "$run/landing/$newest")"
  ln "$run/generated/$newest" "$run/landing/$newest"
  # The newest 1% through every layer, as one scheduled run would do it.
  measure "pipeline, newest 1%" $(( n / 100 )) 0 "$bin" run --root "$run/lake" --landing "$run/landing"
  measure "silver, full refresh" "$n" 0 "$bin" run --layer silver --full-refresh --root "$run/lake" --landing "$run/landing"
  measure "gold, full refresh" "$n" 0 "$bin" run --layer gold --full-refresh --root "$run/lake" --landing "$run/landing"
  rm -rf "$run/lake"
  measure "pipeline, landing to gold" "$n" "$raw" "$bin" run --root "$run/lake" --landing "$run/landing"
  rm -rf "$run/lake"
  if [ "${BENCH_DUCKDB:-1}" != 0 ]; then
    setup_python
    measure "duckdb, landing to gold" "$n" "$raw" "$HOME/.cache/medallion/venv/bin/python" \
      "$REPO/tests/python/duckdb_pipeline.py" "$run/landing"
  fi
  rm -rf "$run"
done
