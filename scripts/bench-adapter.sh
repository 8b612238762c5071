#!/usr/bin/env bash
# Adapter benchmarks (BENCHMARKS.md): latency and throughput over HTTPS at several
# concurrencies against a real Prometheus (cache hits, and every request reaching Prometheus),
# the raw Prometheus query for comparison, RSS with 1,000 configured metrics, and freshness
# (utilization step in the NVML stand-in → changed adapter answer).
# Needs wrk (apt-get install wrk). LOAD_SECONDS (default 10), FRESHNESS_STEPS (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/target/release
OUT=$ROOT/target/bench-adapter
LOAD=${LOAD_SECONDS:-10}
STEPS=${FRESHNESS_STEPS:-20}
mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "bench-adapter: wrk is needed (apt-get install wrk)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# Exporter with 8 GPUs; Prometheus scraping it every 1 s and evaluating a rule every 1 s.
python3 - "$OUT/scenario.json" 20 <<'PY'
import json, sys
gpus = [{"uuid": f"GPU-bench{i:04d}-0000-4000-8000-{i:012d}", "name": "NVIDIA H100 80GB HBM3",
         "utilization_gpu_percent": int(sys.argv[2])} for i in range(8)]
json.dump({"gpus": gpus}, open(sys.argv[1] + ".tmp", "w"))
PY
mv "$OUT/scenario.json.tmp" "$OUT/scenario.json"
EP=$(free_port); PP=$(free_port)
GPUSCALE_NVML_SCENARIO=$OUT/scenario.json "$BIN/gpuscale-exporter" --nvml-library "$BIN/libnvidia_ml.so" \
  --listen-address "127.0.0.1:$EP" --collect-interval 1s --node-name bench >"$OUT/exporter.log" 2>&1 &
pids+=($!)
cat >"$OUT/rules.yml" <<'YAML'
groups:
  - name: bench
    interval: 1s
    rules:
      - record: cluster:gpu_utilization:avg
        expr: avg(gpu_utilization_ratio)
YAML
cat >"$OUT/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ['$OUT/rules.yml']
scrape_configs:
  - job_name: exporter
    honor_labels: true
    static_configs: [{targets: ['127.0.0.1:$EP']}]
YAML
rm -rf "$OUT/tsdb"
prometheus --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$OUT/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$OUT/prometheus.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  [[ $(curl -s "http://127.0.0.1:$PP/api/v1/query?query=cluster:gpu_utilization:avg" | grep -c '"value"') -gt 0 ]] && break
  sleep 0.3
done

scripts/adapter-tls.sh "$OUT/tls" 2>/dev/null
start_adapter() { # config ttl -> sets AP (port) and APID
  local cfg=$1
  AP=$(free_port)
  "$BIN/gpuscale-adapter" serve --config "$cfg" --listen-address "127.0.0.1:$AP" \
    --metrics-address "127.0.0.1:$(free_port)" --tls-cert-file "$OUT/tls/tls.crt" \
    --tls-private-key-file "$OUT/tls/tls.key" --allow-anonymous --log warn >"$OUT/adapter.log" 2>&1 &
  APID=$!
  pids+=($APID)
  for _ in $(seq 1 50); do curl -sf --cacert "$OUT/tls/ca.crt" "https://127.0.0.1:$AP/readyz" >/dev/null && return; sleep 0.1; done
  echo "adapter did not start: $(cat "$OUT/adapter.log")" >&2; exit 1
}
config() { # ttl file
  cat >"$2" <<YAML
prometheus: {url: "http://127.0.0.1:$PP", timeout: 5s}
cache: {ttl: $1}
metrics:
  - {name: gpu_utilization, query: "cluster:gpu_utilization:avg", namespaced: false}
YAML
}
wrk_line() { # label url conns
  local out
  out=$(wrk -t "$(( $3 < 2 ? 1 : 2 ))" -c "$3" -d "${LOAD}s" --latency "$2" 2>&1)
  python3 - "$1" "$3" <<PY
import re, sys
text = """$out"""
def lat(p):
    m = re.search(r"^\s+" + re.escape(p) + r"%\s+([\d.]+)(us|ms|s)", text, re.M)
    if not m: return "?"
    v, u = float(m.group(1)), m.group(2)
    return f"{v * {'us': 1, 'ms': 1000, 's': 1e6}[u]:.0f}"
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(f"{sys.argv[1]}: connections={sys.argv[2]} rps={float(rps.group(1)) if rps else 0:.0f} p50_us={lat('50')} p90_us={lat('90')} p99_us={lat('99')} non2xx={non2xx.group(1) if non2xx else 0}")
PY
}

URLPATH=/apis/external.metrics.k8s.io/v1beta1/namespaces/default/gpu_utilization
echo "== raw Prometheus instant query (HTTP, the floor)"
for c in 1 16; do wrk_line prometheus-raw "http://127.0.0.1:$PP/api/v1/query?query=cluster:gpu_utilization:avg" $c; done

config 0 "$OUT/nocache.yaml"; start_adapter "$OUT/nocache.yaml"
echo "== adapter, cache off (every request reaches Prometheus; concurrent identical ones coalesce)"
for c in 1 16 64; do wrk_line adapter-no-cache "https://127.0.0.1:$AP$URLPATH" $c; done
kill "$APID"; wait "$APID" 2>/dev/null || true

config 60s "$OUT/cache.yaml"; start_adapter "$OUT/cache.yaml"
echo "== adapter, cache hits (ttl 60 s)"
for c in 1 16 64 256; do wrk_line adapter-cache-hit "https://127.0.0.1:$AP$URLPATH" $c; done
kill "$APID"; wait "$APID" 2>/dev/null || true

echo "== adapter RSS with 1,000 configured metrics, each queried once"
python3 - "$OUT/thousand.yaml" "$PP" <<'PY'
import sys
out = [f'prometheus: {{url: "http://127.0.0.1:{sys.argv[2]}"}}', "cache: {ttl: 1s}", "metrics:"]
for i in range(1000):
    out.append(f'  - {{name: metric_{i:04d}, query: "avg(gpu_utilization_ratio{{gpu!=\\"{i}\\"}}) * {i}", namespaced: false}}')
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
start_adapter "$OUT/thousand.yaml"
for i in $(seq 0 999); do printf 'url = "https://127.0.0.1:%s/apis/external.metrics.k8s.io/v1beta1/namespaces/default/metric_%04d"\noutput = "/dev/null"\n' "$AP" "$i"; done >"$OUT/urls.txt"
curl -s --cacert "$OUT/tls/ca.crt" --parallel --parallel-max 8 -K "$OUT/urls.txt" 2>/dev/null || true
echo "adapter-1000-metrics: rss_mib=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' /proc/$APID/status) peak_rss_mib=$(awk '/^VmHWM/ {printf "%.1f", $2/1024}' /proc/$APID/status)"
kill "$APID"; wait "$APID" 2>/dev/null || true

echo "== freshness: utilization step in the scenario -> changed adapter answer (1 s scrape, 1 s rule, cache 500 ms: the shipped default)"
config 500ms "$OUT/fresh.yaml"; start_adapter "$OUT/fresh.yaml"
python3 - "$OUT/scenario.json" "$AP" "$OUT/tls/ca.crt" "$STEPS" <<'PY'
import json, os, ssl, sys, time, urllib.request
scenario, port, ca, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
url = f"https://127.0.0.1:{port}/apis/external.metrics.k8s.io/v1beta1/namespaces/default/gpu_utilization"
def value():
    with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
        return json.load(r)["items"][0]["value"]
def write(u):
    gpus = [{"uuid": f"GPU-bench{i:04d}-0000-4000-8000-{i:012d}", "name": "NVIDIA H100 80GB HBM3",
             "utilization_gpu_percent": u} for i in range(8)]
    json.dump({"gpus": gpus}, open(scenario + ".tmp", "w")); os.replace(scenario + ".tmp", scenario)
delays = []
level = 20
for step in range(steps):
    time.sleep(1.3)  # let the previous level settle and desynchronise from the scrape phase
    level = 80 if level == 20 else 20
    expect = f"{level * 10}m"
    t0 = time.monotonic(); write(level)
    while value() != expect:
        if time.monotonic() - t0 > 15: raise SystemExit(f"no change after 15 s at step {step}")
        time.sleep(0.02)
    delays.append(time.monotonic() - t0)
delays.sort()
q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
print(f"freshness: steps={len(delays)} p50_s={q(0.5):.2f} p95_s={q(0.95):.2f} max_s={delays[-1]:.2f}")
PY
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
