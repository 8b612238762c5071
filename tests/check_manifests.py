#!/usr/bin/env python3
"""Renders manifests/ with `kubectl kustomize` and checks what the exporter relies on:
GPU-node affinity, the nvidia.com/gpu toleration, NVIDIA_VISIBLE_DEVICES=all, NODE_NAME from
the downward API, small requests/limits, a read-only root filesystem with no added
capabilities, probes on the served paths, and a Service whose selector and port match the pods.
Prints 'N passed, N failed' and exits non-zero on any failure."""
import subprocess
import sys

import yaml

ROOT = __file__.rsplit("/tests/", 1)[0]
results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else f": {detail}"))


def render(path):
    out = subprocess.run(["kubectl", "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        check(f"kustomize {path}", False, out.stderr.strip())
        return []
    check(f"kustomize {path}", True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def parse_quantity(q):
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for u, f in units.items():
        if str(q).endswith(u):
            return float(str(q)[: -len(u)]) * f
    return float(q)


def main():
    docs = render(f"{ROOT}/manifests/base")
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    ds = [d for d in by_kind.get("DaemonSet", []) if d["metadata"]["name"] == "gpuscale-exporter"]
    check("exporter DaemonSet exists", len(ds) == 1, by_kind.keys())
    if not ds:
        return
    ds = ds[0]
    pod = ds["spec"]["template"]["spec"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    check("selector matches pod labels",
          all(labels.get(k) == v for k, v in ds["spec"]["selector"]["matchLabels"].items()))
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = {e["key"] for t in terms for e in t["matchExpressions"]}
    check("GPU-node affinity", "nvidia.com/gpu.present" in keys, keys)
    check("nvidia.com/gpu toleration",
          any(t.get("key") == "nvidia.com/gpu" and t.get("operator") == "Exists" for t in pod.get("tolerations", [])))
    c = pod["containers"][0]
    env = {e["name"]: e for e in c.get("env", [])}
    check("NVIDIA_VISIBLE_DEVICES=all", env.get("NVIDIA_VISIBLE_DEVICES", {}).get("value") == "all")
    check("NODE_NAME from the downward API",
          env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName")
    check("no GPU requested by the exporter",
          "nvidia.com/gpu" not in str(c.get("resources", {})))
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    check("small requests", parse_quantity(req["memory"]) <= 64 * 2**20 and parse_quantity(req["cpu"]) <= 0.1, req)
    check("limits set", parse_quantity(lim["memory"]) <= 256 * 2**20 and "cpu" in lim, lim)
    sc = c["securityContext"]
    check("read-only root filesystem", sc.get("readOnlyRootFilesystem") is True)
    check("no privilege escalation", sc.get("allowPrivilegeEscalation") is False)
    check("capabilities: drop ALL, add none",
          sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"))
    check("runs as non-root", pod.get("securityContext", {}).get("runAsNonRoot") is True)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check("metrics port 9445", ports.get("metrics") == 9445, ports)
    args = " ".join(c.get("args", []))
    check("listen address matches the port", "--listen-address=0.0.0.0:9445" in args, args)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        check(f"{probe} on {path}", c.get(probe, {}).get("httpGet", {}).get("path") == path)
    svcs = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == "gpuscale-exporter"]
    check("exporter Service exists", len(svcs) == 1)
    if svcs:
        svc = svcs[0]
        check("Service selector matches pod labels",
              all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), svc["spec"]["selector"])
        sp = svc["spec"]["ports"][0]
        check("Service targets the metrics port",
              sp["targetPort"] in ("metrics", 9445) and sp["port"] == 9445, sp)
    sa = pod.get("serviceAccountName")
    check("ServiceAccount exists",
          any(s["metadata"]["name"] == sa for s in by_kind.get("ServiceAccount", [])), sa)
    ns = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    check("everything in the gpuscale namespace", ns == {"gpuscale"}, ns)


if __name__ == "__main__":
    main()
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"manifests: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
