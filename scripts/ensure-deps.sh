#!/usr/bin/env bash
# Installs what `make test` and `make demo` need and the machine lacks: Prometheus, promtool
# and Alertmanager (Debian packages) and Python's prometheus_client (second-opinion parser,
# benchmark baseline). Stops with one clear line when it cannot.
set -euo pipefail

missing_apt=()
command -v prometheus >/dev/null 2>&1 || missing_apt+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing_apt+=(prometheus-alertmanager)
command -v curl >/dev/null 2>&1 || missing_apt+=(curl)
command -v python3 >/dev/null 2>&1 || missing_apt+=(python3 python3-pip)

if ((${#missing_apt[@]})); then
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${missing_apt[@]}" | sort -u))
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "gpuscale: missing ${pkgs[*]}; install them with: apt-get install ${pkgs[*]}" >&2
    exit 1
  fi
  echo "gpuscale: installing ${pkgs[*]} (apt-get)" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "gpuscale: installing Python prometheus-client (pip)" >&2
  python3 -m pip install -q prometheus-client >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages prometheus-client >/dev/null 2>&1 \
    || { echo "gpuscale: cannot install Python prometheus-client; run: pip install prometheus-client" >&2; exit 1; }
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "gpuscale: note: kubectl not found; the manifest tests that need it are skipped with a message" >&2
fi
