#!/usr/bin/env bash
# Builds the engine, writes sample landing data and runs the marketing pipeline into a
# local directory (the embedded default: no server needed): Bronze, Silver and Gold.
# Usage: scripts/quickstart.sh [WORKDIR]    (default: ./demo)
#   EVENTS=N      number of sample event lines (default 1000000)
#   MEDALLION_BIN a prebuilt binary to use instead of building one
set -euo pipefail
source "$(dirname "$0")/env.sh"
workdir="${1:-demo}"
events="${EVENTS:-1000000}"

if [ -z "${MEDALLION_BIN:-}" ]; then
  step "build medallion" cargo build --locked --workspace --all-targets --manifest-path "$REPO/Cargo.toml"
  MEDALLION_BIN="$CARGO_TARGET_DIR/debug/medallion"
fi
mkdir -p "$workdir"
workdir="$(cd "$workdir" && pwd)"
cp "$REPO/layers.yaml" "$workdir/layers.yaml"
cd "$workdir"
export MEDALLION_ROOT="$workdir/lakehouse" MEDALLION_LANDING="$workdir/landing"

step "generate $events sample events into $MEDALLION_LANDING" \
  "$MEDALLION_BIN" generate --events "$events" --seed 42 --out "$MEDALLION_LANDING" >"$workdir/generate-report.json"
step "validate layers.yaml" "$MEDALLION_BIN" validate
step "plan" "$MEDALLION_BIN" plan
step "run the Bronze layer" "$MEDALLION_BIN" run --layer bronze
step "run the Silver layer" "$MEDALLION_BIN" run --layer silver
step "run the Gold layer" "$MEDALLION_BIN" run --layer gold
step "return on ad spend per channel (gold.campaign_daily joined to silver.campaigns)" \
  "$MEDALLION_BIN" query "SELECT c.channel, round(sum(d.spend_usd), 2) AS spend_usd,
       round(sum(d.revenue_usd), 2) AS revenue_usd,
       round(sum(d.revenue_usd) / nullif(sum(d.spend_usd), 0), 2) AS roas
     FROM gold.campaign_daily d JOIN silver.campaigns c ON d.campaign_id = c.campaign_id
     GROUP BY c.channel ORDER BY spend_usd DESC"
echo
echo "Sample data: $MEDALLION_LANDING (report: $workdir/generate-report.json)"
echo "Lakehouse:   $MEDALLION_ROOT"
