#!/usr/bin/env bash
# Serving certificate for gpuscale-adapter: a private CA and a certificate signed by it for the
# adapter Service's DNS names. With --apply it also creates the gpuscale-adapter-tls Secret and
# sets the APIService's caBundle, so kube-apiserver verifies the adapter (no
# insecureSkipTLSVerify). cert-manager users can use its CA injector instead.
#
#   scripts/adapter-tls.sh OUT_DIR [--apply] [--namespace gpuscale] [--hosts extra1,extra2]
set -euo pipefail
out=${1:?usage: scripts/adapter-tls.sh OUT_DIR [--apply] [--namespace NS] [--hosts h1,h2]}
shift
apply=false ns=gpuscale extra=""
while (($#)); do
  case $1 in
    --apply) apply=true ;;
    --namespace) ns=$2; shift ;;
    --hosts) extra=$2; shift ;;
    *) echo "adapter-tls: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v openssl >/dev/null || { echo "adapter-tls: openssl is needed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077
svc=gpuscale-adapter
sans="DNS:$svc,DNS:$svc.$ns,DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
for h in ${extra//,/ }; do
  if [[ $h =~ ^[0-9.]+$ ]]; then sans+=",IP:$h"; else sans+=",DNS:$h"; fi
done
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=gpuscale-adapter-ca" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=$svc.$ns.svc" -keyout "$out/tls.key" -out "$out/tls.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$sans" >"$out/ext.cnf"
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days 825 -extfile "$out/ext.cnf" -out "$out/tls.crt" 2>/dev/null
rm -f "$out/tls.csr" "$out/ext.cnf" "$out/ca.srl"
echo "adapter-tls: wrote $out/{ca.crt,tls.crt,tls.key} for $sans" >&2
if $apply; then
  kubectl -n "$ns" create secret generic gpuscale-adapter-tls \
    --from-file=tls.crt="$out/tls.crt" --from-file=tls.key="$out/tls.key" --from-file=ca.crt="$out/ca.crt" \
    --dry-run=client -o yaml | kubectl apply -f -
  kubectl patch apiservice v1beta1.external.metrics.k8s.io --type merge \
    -p "{\"spec\":{\"caBundle\":\"$(base64 -w0 "$out/ca.crt")\"}}"
  echo "adapter-tls: Secret $ns/gpuscale-adapter-tls and the APIService caBundle are set" >&2
fi
