#!/usr/bin/env bash
# What CI can check of the container images without a container engine: each Dockerfile
# builds through scripts/build-release.sh (the same command run here), the runtime stage runs
# as non-root with the binary as entrypoint, and the build script works on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
for f in exporter/Dockerfile adapter/Dockerfile; do
  name=$(basename "$(dirname "$f")")
  grep -q "RUN scripts/build-release.sh $name /out" "$f" || { echo "FAIL $f: does not build with scripts/build-release.sh $name"; fail=1; }
  grep -q '^USER 65534:65534' "$f" || { echo "FAIL $f: runtime is not non-root"; fail=1; }
  grep -q "ENTRYPOINT \[\"/usr/local/bin/gpuscale-$name\"\]" "$f" || { echo "FAIL $f: entrypoint"; fail=1; }
  [[ $(grep -c '^FROM ' "$f") -eq 2 ]] || { echo "FAIL $f: expected a two-stage build"; fail=1; }
done
out=$(mktemp -d)
scripts/build-release.sh all "$out" >/dev/null
for b in gpuscale-exporter gpuscale-adapter; do
  "$out/$b" --version | grep -q "$b" || { echo "FAIL $b --version"; fail=1; }
done
rm -rf "$out"
if ((fail)); then echo "images: checks failed"; exit 1; fi
echo "images: 2 Dockerfiles checked, release build ok"
