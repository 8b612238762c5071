#!/usr/bin/env bash
# Attribution benchmark (BENCHMARKS.md, "Exporter: pod attribution and workload signals"):
# CPU per collection cycle with 8 GPUs, 64 GPU processes and 32 vLLM pods (kubelet
# pod-resources and Kubernetes API stand-ins, 32 engine endpoints on loopback), against the
# same exporter with attribution off, and scrape latency of the larger exposition.
# SECONDS_PER_RUN (default 60) sets each measuring window, INTERVAL (default 1s) the
# collection interval, SCRAPE_SECONDS (default 10) the scrape-bench window.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gpuscale-exporter -p nvml-standin -p gpuscale-tests \
  --bin gpuscale-exporter --lib --bin attribution-bench --bin scrape-bench
TARGET=${CARGO_TARGET_DIR:-target}
exec "$TARGET/release/attribution-bench" --seconds "${SECONDS_PER_RUN:-60}" \
  --interval "${INTERVAL:-1s}" --scrape-seconds "${SCRAPE_SECONDS:-10}"
