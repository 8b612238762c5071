#!/usr/bin/env bash
# Exporter benchmarks (BENCHMARKS.md): scrape latency and throughput on loopback for 8 GPUs,
# collection-cycle cost, RSS and CPU at a 1 s interval; the same for a minimal Python
# pynvml + prometheus_client exporter over the same NVML stand-in, in the same run.
# STEADY_SECONDS (default 60) sets the steady-state window, LOAD_SECONDS (default 10) the
# scrape-load window.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench
BIN=$ROOT/target/release
STEADY=${STEADY_SECONDS:-60}
LOAD=${LOAD_SECONDS:-10}
mkdir -p "$OUT/lib"
python3 -c 'import pynvml' 2>/dev/null || python3 -m pip install -q nvidia-ml-py >/dev/null
[[ -x $BIN/scrape-bench ]] || cargo build --release -p gpuscale-tests --bin scrape-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TRACE=$ROOT/../shared/data/traces/azure_llm_conv_2023.csv
if [[ -f $TRACE ]]; then
  python3 scripts/trace-to-scenario.py "$TRACE" "$OUT/scenario-8gpu.json" --gpus 8 2>/dev/null
else
  python3 - "$OUT/scenario-8gpu.json" <<'PY'
import json, sys
gpus = [{"uuid": f"GPU-bench{i:04d}-0000-4000-8000-{i:012d}", "name": "NVIDIA H100 80GB HBM3",
         "memory_total_bytes": 85899345920, "utilization_gpu_percent": 50 + i} for i in range(8)]
json.dump({"gpus": gpus}, open(sys.argv[1], "w"))
PY
fi
export GPUSCALE_NVML_SCENARIO=$OUT/scenario-8gpu.json
ln -sf "$BIN/libnvidia_ml.so" "$OUT/lib/libnvidia-ml.so.1"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

measure() { # name pid port cycle_metric
  local name=$1 pid=$2 port=$3 metric=$4
  sleep 3
  echo "== $name: scrape load, 1 connection, ${LOAD}s"
  "$BIN/scrape-bench" "127.0.0.1:$port" /metrics --connections 1 --seconds "$LOAD"
  echo "== $name: scrape load, 4 connections, ${LOAD}s"
  "$BIN/scrape-bench" "127.0.0.1:$port" /metrics --connections 4 --seconds "$LOAD"
  sleep 2
  echo "== $name: steady state, ${STEADY}s at a 1 s collection interval, scraped every 1 s"
  local hz t0 t1 samples=()
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "$pid")
  local start=$SECONDS
  while (( SECONDS - start < STEADY )); do
    v=$(curl -s "http://127.0.0.1:$port/metrics" | awk -v m="$metric" '$1 ~ "^"m {print $2; exit}')
    [[ -n $v ]] && samples+=("$v")
    sleep 1
  done
  t1=$(cpu_ticks "$pid")
  python3 - "$name" "$hz" "$t0" "$t1" "$STEADY" "$(rss_kib "$pid")" "$(hwm_kib "$pid")" "${samples[@]}" <<'PY'
import sys, statistics
name, hz, t0, t1, secs, rss, hwm = sys.argv[1:8]
cyc = sorted(float(x) * 1000 for x in sys.argv[8:])
cpu = (int(t1) - int(t0)) / int(hz) / float(secs) * 100
p = lambda q: cyc[min(len(cyc) - 1, int(q * len(cyc)))] if cyc else float("nan")
print(f"{name}: cpu_percent_of_one_core={cpu:.2f} rss_mib={int(rss)/1024:.1f} peak_rss_mib={int(hwm)/1024:.1f} "
      f"collection_cycle_ms_mean={statistics.mean(cyc) if cyc else float('nan'):.3f} collection_cycle_ms_p99={p(0.99):.3f} (n={len(cyc)})")
PY
}

P1=$(free_port)
"$BIN/gpuscale-exporter" --nvml-library "$BIN/libnvidia_ml.so" --listen-address "127.0.0.1:$P1" \
  --collect-interval 1s --node-name bench >"$OUT/exporter.log" 2>&1 &
pids+=($!)
measure gpuscale-exporter "${pids[-1]}" "$P1" gpuscale_exporter_collection_duration_seconds

P2=$(free_port)
LD_LIBRARY_PATH=$OUT/lib python3 scripts/bench/pynvml_exporter.py "$P2" >"$OUT/baseline.log" 2>&1 &
pids+=($!)
measure python-pynvml-baseline "${pids[-1]}" "$P2" baseline_collection_duration_seconds
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
