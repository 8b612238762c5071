#!/usr/bin/env bash
# `make demo`: the exporter on a simulated 4-GPU node (NVML stand-in) whose load follows a
# real LLM trace, a real local Prometheus scraping it every second, the adapter serving
# external.metrics.k8s.io from it, what `kubectl get --raw` and `explain` say, and a live view.
# DEMO_DURATION=N stops after N seconds; otherwise Ctrl-C.
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
ADAPTER_PORT=${ADAPTER_PORT:-$(free_port)}

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
echo "demo: exporter   http://127.0.0.1:$EXPORTER_PORT/metrics   (log: .demo/exporter.log)"
echo "demo: prometheus http://127.0.0.1:$PROM_PORT              (log: .demo/prometheus.log)"

query() {
  curl -sf --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" || echo '{}'
}

# The adapter, over HTTPS with a demo CA. Locally there is no kube-apiserver to ask for
# TokenReview/SubjectAccessReview, so it runs with --allow-anonymous (it says so loudly in its
# log); kubectl authenticates with a client certificate only so that it does not prompt.
scripts/adapter-tls.sh "$DEMO/tls" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=demo-user" \
  -keyout "$DEMO/tls/client.key" -out "$DEMO/tls/client.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >"$DEMO/tls/client.ext"
openssl x509 -req -in "$DEMO/tls/client.csr" -CA "$DEMO/tls/ca.crt" -CAkey "$DEMO/tls/ca.key" \
  -CAcreateserial -days 30 -extfile "$DEMO/tls/client.ext" -out "$DEMO/tls/client.crt" 2>/dev/null
cat >"$DEMO/adapter.yaml" <<YAML
prometheus:
  url: http://127.0.0.1:$PROM_PORT
cache:
  ttl: 500ms
metrics:
  - name: cluster-gpu-utilization
    description: Average GPU utilization (0..1) of the selected GPUs.
    query: avg(gpu_utilization_ratio)
    namespaced: false
  - name: cluster-gpu-memory-used-ratio
    query: sum(gpu_memory_used_bytes) / sum(gpu_memory_total_bytes)
    namespaced: false
YAML
"$BIN/gpuscale-adapter" serve --config "$DEMO/adapter.yaml" --listen-address "127.0.0.1:$ADAPTER_PORT" \
  --metrics-address "127.0.0.1:$(free_port)" --tls-cert-file "$DEMO/tls/tls.crt" \
  --tls-private-key-file "$DEMO/tls/tls.key" --allow-anonymous >"$DEMO/adapter.log" 2>&1 &
pids+=($!)
cat >"$DEMO/kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: gpuscale-demo
  cluster:
    server: https://127.0.0.1:$ADAPTER_PORT
    certificate-authority: $DEMO/tls/ca.crt
users:
- name: demo
  user:
    client-certificate: $DEMO/tls/client.crt
    client-key: $DEMO/tls/client.key
contexts:
- name: demo
  context: {cluster: gpuscale-demo, user: demo}
current-context: demo
YAML
for _ in $(seq 1 50); do
  curl -sf --cacert "$DEMO/tls/ca.crt" "https://127.0.0.1:$ADAPTER_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "demo: adapter    https://127.0.0.1:$ADAPTER_PORT                (log: .demo/adapter.log, kubeconfig: .demo/kubeconfig)"
for _ in $(seq 1 60); do
  [[ $(query 'avg(gpu_utilization_ratio{node="demo-node"})' | grep -c '"value"') -gt 0 ]] && break
  sleep 0.5
done
METRIC_PATH=/apis/external.metrics.k8s.io/v1beta1/namespaces/default/cluster-gpu-utilization
echo
echo "demo: what a stock HPA reads ->  kubectl --kubeconfig .demo/kubeconfig get --raw $METRIC_PATH"
if command -v kubectl >/dev/null 2>&1; then
  kubectl --kubeconfig "$DEMO/kubeconfig" get --raw "$METRIC_PATH" | python3 -m json.tool || true
else
  curl -s --cacert "$DEMO/tls/ca.crt" "https://127.0.0.1:$ADAPTER_PORT$METRIC_PATH" | python3 -m json.tool || true
fi
echo
echo "demo: gpuscale-adapter explain examples/hpa-cluster-gpu-utilization.yaml --current-replicas 2"
"$BIN/gpuscale-adapter" explain examples/hpa-cluster-gpu-utilization.yaml --config "$DEMO/adapter.yaml" --current-replicas 2 || true
echo


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
  hpa=$(curl -s --cacert "$DEMO/tls/ca.crt" "https://127.0.0.1:$ADAPTER_PORT$METRIC_PATH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["value"])' 2>/dev/null || echo "?")
  echo "           HPA reads cluster-gpu-utilization = $hpa"
  if [[ -n ${DEMO_DURATION:-} ]] && (( $(date +%s) - start >= DEMO_DURATION )); then
    echo "demo: DEMO_DURATION=${DEMO_DURATION}s reached, stopping"
    break
  fi
  sleep 2
done
