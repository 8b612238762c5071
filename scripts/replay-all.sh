#!/usr/bin/env bash
# Replay every trace in ../shared/data/traces/ through `gpuscale-adapter replay` (issue 7):
# reactive vs forecast-driven scaling with the stock HPA algorithm and GPU node lead time,
# the forecast from the rules evaluated by promtool over the backfilled trace.
# Writes target/replay/<trace>.{txt,json,png} and prints the BENCHMARKS.md table.
#
# Environment: TRACES (directory, default ../shared/data/traces), RULES (rule directory,
# default rules/, else the test fixture copy), GPUSCALE_ADAPTER (binary, default
# target/release/gpuscale-adapter, built if missing), EXTRA (more replay flags for every trace).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TRACES=${TRACES:-$ROOT/../shared/data/traces}
OUT=$ROOT/target/replay
BIN=${GPUSCALE_ADAPTER:-$ROOT/target/release/gpuscale-adapter}
RULES=${RULES:-$ROOT/rules}
ls "$RULES"/*forecast*.rules.yml >/dev/null 2>&1 || { echo "replay-all: no forecast rules in $RULES" >&2; exit 1; }
PRICES=$ROOT/rules/prices.yaml
command -v jq >/dev/null || { echo "replay-all: jq is needed (apt-get install jq)" >&2; exit 1; }
command -v promtool >/dev/null || { echo "replay-all: promtool is needed (apt-get install prometheus)" >&2; exit 1; }
[ -d "$TRACES" ] || { echo "replay-all: no trace directory $TRACES" >&2; exit 1; }
if [ ! -x "$BIN" ]; then
  cargo build --release --locked -p gpuscale-adapter
fi
mkdir -p "$OUT"

# Per trace: demand units. The NAB values are rescaled so the peak is 80 load units (10
# replicas of capacity 10 at 100 %, 8 per replica at the HPA target); the Azure trace is
# requests in flight as it is. Traces are backfilled and their rules evaluated every 15 s
# (the replay's defaults, a common Prometheus interval): a coarser step delays every
# rule-group hop by up to one step and leaves the 1-minute trend window two samples (no
# noise estimate). The 7-month taxi trace at 15 s takes over an hour of promtool on 2 cores
# (one 2-hour block per level and 2 hours of data), so it runs at 60 s.
flags_for() {
  case "$1" in
    azure_*) echo "" ;;
    nab_nyc_taxi*) echo "--peak 80 --scrape-interval 60 --eval-interval 60" ;;
    nab_*) echo "--peak 80" ;;
  esac
}

summary=()
for trace in "$TRACES"/*.csv; do
  name=$(basename "$trace" .csv)
  # shellcheck disable=SC2046
  args=(--trace "$trace" --rules "$RULES" --prices "$PRICES" $(flags_for "$name") ${EXTRA:-})
  echo "replay-all: $name" >&2
  start=$(date +%s)
  "$BIN" replay "${args[@]}" --plot "$OUT/$name.png" --json-out "$OUT/$name.json" > "$OUT/$name.txt"
  echo "replay-all: $name done in $(( $(date +%s) - start )) s" >&2
  summary+=("$OUT/$name.json")
done

echo "| trace | policy | unmet-demand min | queue p95 | GPU-h | \$ | scale events | vs reactive-concurrency: unmet / GPU-h |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for f in "${summary[@]}"; do
  jq -r '
    .report as $r
    | ($r.outcomes[] | select(.policy == "reactive-concurrency")) as $base
    | $r.outcomes[]
    | [ $r.trace, .policy,
        (.unmet_demand_minutes * 10 | round / 10 | tostring),
        (.queue_p95 * 10 | round / 10 | tostring),
        (.gpu_hours * 10 | round / 10 | tostring),
        (.dollars | round | tostring),
        (.scale_events | tostring),
        (if .policy == "reactive-concurrency" then "baseline"
         else
           (if $base.unmet_demand_minutes > 0
            then ((1 - .unmet_demand_minutes / $base.unmet_demand_minutes) * -100 | round | tostring) + " %"
            else "n/a" end)
           + " / "
           + ((.gpu_hours / $base.gpu_hours - 1) * 1000 | round / 10 | tostring) + " %"
         end) ]
    | "| " + join(" | ") + " |"' "$f"
done
