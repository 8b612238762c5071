#!/usr/bin/env bash
# The release build both container images run (exporter/Dockerfile, adapter/Dockerfile), and
# that `make test` runs too (scripts/check-images.sh), so the image build is exercised on
# machines without a container engine. Prints the paths of the built binaries.
#   scripts/build-release.sh [exporter|adapter|all] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
out=${2:-}
case $what in
  exporter) pkgs=(-p gpuscale-exporter -p nvml-standin); bins=(gpuscale-exporter) ;;
  adapter) pkgs=(-p gpuscale-adapter); bins=(gpuscale-adapter) ;;
  all) pkgs=(-p gpuscale-exporter -p gpuscale-adapter -p nvml-standin); bins=(gpuscale-exporter gpuscale-adapter) ;;
  *) echo "build-release: unknown target $what (exporter|adapter|all)" >&2; exit 2 ;;
esac
cargo build --release --locked "${pkgs[@]}"
target=${CARGO_TARGET_DIR:-target}
for b in "${bins[@]}"; do
  "$target/release/$b" --version >/dev/null
  if [[ -n $out ]]; then mkdir -p "$out"; install -m 0755 "$target/release/$b" "$out/$b"; echo "$out/$b"; else echo "$target/release/$b"; fi
done
