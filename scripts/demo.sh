#!/usr/bin/env bash
# `make demo`: the exporter on a simulated 4-GPU node (NVML stand-in) whose load follows a
# real LLM trace, a real local Prometheus scraping it every second, and a live view of what
# Prometheus stores. DEMO_DURATION=N stops after N seconds; otherwise Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
BIN=$ROOT/target/release
mkdir -p "$DEMO"
rm -rf "$DEMO/prometheus-data"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EXPORTER_PORT=${EXPORTER_PORT:-$(free_port)}
PROM_PORT=${PROM_PORT:-$(free_port)}

TRACE=${DEMO_TRACE:-$ROOT/../shared/data/traces/azure_llm_conv_2023.csv}
if [[ -f $TRACE ]]; then
  python3 scripts/trace-to-scenario.py "$TRACE" "$DEMO/scenario.json" --gpus 4 --speedup 6
  echo "demo: GPU load follows $(basename "$TRACE") (6x faster than real time)"
else
  echo "demo: trace $TRACE not found; the stand-in's default 4-GPU node (smooth synthetic load) is used"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

scenario_env=()
[[ -f $DEMO/scenario.json && -f $TRACE ]] && scenario_env=(GPUSCALE_NVML_SCENARIO="$DEMO/scenario.json")
env "${scenario_env[@]}" "$BIN/gpuscale-exporter" \
  --nvml-library "$BIN/libnvidia_ml.so" --node-name demo-node \
  --listen-address "127.0.0.1:$EXPORTER_PORT" --collect-interval 1s >"$DEMO/exporter.log" 2>&1 &
pids+=($!)

cat >"$DEMO/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: gpuscale-exporter
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$EXPORTER_PORT']
YAML
prometheus --config.file="$DEMO/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$DEMO/prometheus.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$EXPORTER_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "demo: exporter  http://127.0.0.1:$EXPORTER_PORT/metrics   (log: .demo/exporter.log)"
echo "demo: prometheus http://127.0.0.1:$PROM_PORT              (log: .demo/prometheus.log)"

query() {
  curl -sf --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" || echo '{}'
}

show() {
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
util, mem, power, up = (json.loads(a or "{}") for a in sys.argv[1:5])
def by_gpu(d):
    return {r["metric"].get("gpu"): float(r["value"][1]) for r in d.get("data", {}).get("result", [])}
u, m, p = by_gpu(util), by_gpu(mem), by_gpu(power)
nvml = [r["value"][1] for r in up.get("data", {}).get("result", [])]
line = " | ".join(f"gpu{g}: util {u[g]*100:5.1f}% mem {m.get(g,0)/2**30:5.1f} GiB {p.get(g,0):5.0f} W" for g in sorted(u))
print(f"nvml_up={','.join(nvml) or '?'}  {line or 'waiting for the first scrape...'}")
PY
}

start=$(date +%s)
while :; do
  show "$(query gpu_utilization_ratio)" "$(query gpu_memory_used_bytes)" "$(query gpu_power_usage_watts)" "$(query gpuscale_exporter_nvml_up)"
  if [[ -n ${DEMO_DURATION:-} ]] && (( $(date +%s) - start >= DEMO_DURATION )); then
    echo "demo: DEMO_DURATION=${DEMO_DURATION}s reached, stopping"
    break
  fi
  sleep 2
done
