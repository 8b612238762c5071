#!/usr/bin/env bash
# Renders and checks the kustomize manifests (needs kubectl and PyYAML).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kubectl >/dev/null 2>&1; then
  echo "gpuscale: kubectl is needed for the manifest checks (install kubectl; not Debian's kubernetes-client)" >&2
  exit 1
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml >/dev/null 2>&1 \
  || { echo "gpuscale: install PyYAML (pip install pyyaml) for the manifest checks" >&2; exit 1; }
python3 tests/check_manifests.py
