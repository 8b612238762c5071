#!/usr/bin/env bash
# Forecast sanity and accuracy on every trace in ../shared/data/traces (or $GPUSCALE_TRACES),
# its last 21 days at most:
# each trace is backfilled into a real Prometheus TSDB (promtool tsdb create-blocks-from
# openmetrics), the shipped forecast rules are evaluated over it (create-blocks-from rules),
# every forecast is checked finite and non-negative, and the forecast's error at its horizon is
# compared with the last value and plain predict_linear. Prints the BENCHMARKS.md table.
# GPUSCALE_FORECAST_CONFIG='forecast.trend_window=1h,...' tries other settings.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p gpuscale-tests --tests
cargo test -q -p gpuscale-tests --test forecast_sanity forecasts_on_full_traces -- --ignored --nocapture
