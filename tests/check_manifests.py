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
    # Non-root, except the container may run as uid 0 *with no capabilities* to connect to
    # the root-owned kubelet pod-resources socket (issue 4).
    as_root = sc.get("runAsUser") == 0
    check("runs as non-root, or as uid 0 with every capability dropped",
          (pod.get("securityContext", {}).get("runAsNonRoot") is True and not as_root)
          or (as_root and sc.get("capabilities", {}).get("drop") == ["ALL"]
              and sc.get("allowPrivilegeEscalation") is False), sc)
    check_attribution(docs, by_kind, pod, c)
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
    namespaced = [d for d in docs if d["kind"] not in CLUSTER_SCOPED]
    misplaced = [(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in namespaced
                 if d["metadata"].get("namespace") != "gpuscale"
                 and not (d["kind"] == "RoleBinding" and d["metadata"]["name"] == "gpuscale-adapter-auth-reader"
                          and d["metadata"].get("namespace") == "kube-system")]
    check("namespaced objects in gpuscale (auth reader binding in kube-system)", not misplaced, misplaced)
    check_adapter(docs, by_kind)


def check_attribution(docs, by_kind, pod, c):
    """Issue 4: hostPID, read-only pod-resources directory and host /proc, flags pointing at
    them, a token, and RBAC for the pod watch and owner lookups."""
    check("exporter: hostPID (NVML reports host pids)", pod.get("hostPID") is True)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}

    def host_mount(host_path, mount_path):
        m = mounts.get(mount_path)
        v = volumes.get(m["name"]) if m else None
        return bool(m and m.get("readOnly") is True and v
                    and v.get("hostPath", {}).get("path") == host_path)

    check("exporter: pod-resources directory mounted read-only (not the socket file)",
          host_mount("/var/lib/kubelet/pod-resources", "/var/lib/kubelet/pod-resources"), mounts)
    check("exporter: host /proc mounted read-only", host_mount("/proc", "/host/proc"), mounts)
    args = c.get("args", [])
    check("exporter: --pod-resources-socket inside the mounted directory",
          "--pod-resources-socket=/var/lib/kubelet/pod-resources/kubelet.sock" in args, args)
    check("exporter: --proc-root=/host/proc", "--proc-root=/host/proc" in args, args)
    sa_name = pod.get("serviceAccountName")
    sas = [s for s in by_kind.get("ServiceAccount", []) if s["metadata"]["name"] == sa_name]
    check("exporter: ServiceAccount token mounted",
          pod.get("automountServiceAccountToken") is not False
          and all(s.get("automountServiceAccountToken") is not False for s in sas))
    bindings = [b for b in by_kind.get("ClusterRoleBinding", [])
                if any(s["kind"] == "ServiceAccount" and s["name"] == sa_name
                       and s.get("namespace") == "gpuscale" for s in b.get("subjects", []))]
    roles = {r["metadata"]["name"]: r for r in by_kind.get("ClusterRole", [])}
    rules = [rule for b in bindings for rule in roles.get(b["roleRef"]["name"], {}).get("rules", [])]

    def allowed(group, resource, verb):
        return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
                   and verb in r.get("verbs", []) for r in rules)

    check("exporter RBAC: list and watch pods", allowed("", "pods", "list") and allowed("", "pods", "watch"), rules)
    for group, resource in (("apps", "replicasets"), ("apps", "deployments"), ("apps", "statefulsets"),
                            ("apps", "daemonsets"), ("batch", "jobs"), ("batch", "cronjobs")):
        check(f"exporter RBAC: get {resource}", allowed(group, resource, "get"), rules)
    writes = [r for r in rules if set(r.get("verbs", [])) - {"get", "list", "watch"}]
    check("exporter RBAC: read-only, no secrets",
          not writes and not any("secrets" in r.get("resources", []) for r in rules), rules)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService", "PriorityClass"}


def check_adapter(docs, by_kind):
    deps = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "gpuscale-adapter"]
    check("adapter Deployment exists", len(deps) == 1)
    if not deps:
        return
    dep = deps[0]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check("adapter: 2 replicas", dep["spec"].get("replicas") == 2)
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    check("adapter: pod anti-affinity on hostname",
          "kubernetes.io/hostname" in str(anti), anti)
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", [])
            if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
    check("adapter: PodDisruptionBudget selects its pods", len(pdbs) == 1)
    c = pod["containers"][0]
    args = c.get("args", [])
    check("adapter: serves HTTPS with files from a Secret", any(a.startswith("--tls-cert-file=") for a in args))
    check("adapter: not anonymous", "--allow-anonymous" not in args)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    listen = [a.split("=", 1)[1] for a in args if a.startswith("--listen-address=")]
    check("adapter: listen address matches the https port",
          listen and listen[0].endswith(f":{ports.get('https')}"), (listen, ports))
    sc = c["securityContext"]
    check("adapter: read-only root, no capabilities",
          sc.get("readOnlyRootFilesystem") is True and sc.get("capabilities", {}).get("drop") == ["ALL"])
    svc = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == "gpuscale-adapter"]
    check("adapter Service exists", len(svc) == 1)
    apis = by_kind.get("APIService", [])
    check("one APIService for external.metrics.k8s.io", len(apis) == 1)
    if svc and apis:
        svc = svc[0]
        api = apis[0]["spec"]
        check("APIService: no insecureSkipTLSVerify", not api.get("insecureSkipTLSVerify"))
        check("APIService names the adapter Service",
              api["service"]["name"] == "gpuscale-adapter" and api["service"]["namespace"] == svc["metadata"]["namespace"])
        sp = [p for p in svc["spec"]["ports"] if p["port"] == api["service"].get("port", 443)]
        check("APIService port exists on the Service and targets https",
              len(sp) == 1 and sp[0]["targetPort"] in ("https", ports.get("https")), sp)
        check("adapter Service selects adapter pods",
              all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()))
    sas = {(s["metadata"]["name"], s["metadata"]["namespace"]) for s in by_kind.get("ServiceAccount", [])}
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for b in by_kind.get(kind, []):
            for sub in b.get("subjects", []):
                if sub["kind"] != "ServiceAccount" or sub["namespace"] == "kube-system":
                    continue
                check(f"{kind} {b['metadata']['name']}: subject {sub['name']} exists",
                      (sub["name"], sub["namespace"]) in sas)
    roles = {r["metadata"]["name"] for r in by_kind.get("ClusterRole", [])}
    for b in by_kind.get("ClusterRoleBinding", []):
        ref = b["roleRef"]["name"]
        check(f"ClusterRoleBinding {b['metadata']['name']} refers to a known role",
              ref in roles or ref.startswith("system:"), ref)
    cms = [m for m in by_kind.get("ConfigMap", []) if m["metadata"]["name"].startswith("gpuscale-adapter-config")]
    vol = [v for v in pod["volumes"] if v["name"] == "config"][0]["configMap"]["name"]
    check("adapter mounts the generated config map", cms and vol == cms[0]["metadata"]["name"], vol)
    if cms:
        import os, tempfile
        adapter = os.path.join(ROOT, "target", "debug", "gpuscale-adapter")
        if os.path.exists(adapter):
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(cms[0]["data"]["adapter-config.yaml"])
            out = subprocess.run([adapter, "check-config", f.name], capture_output=True, text=True)
            os.unlink(f.name)
            check("shipped adapter config passes check-config", out.returncode == 0, out.stderr.strip())
        else:
            check("adapter binary built for check-config", False, adapter)


def check_hpas_against_adapter_config():
    """Every External metric an HPA we ship asks for is served by the shipped adapter config."""
    import glob
    cm = yaml.safe_load(open(f"{ROOT}/manifests/base/adapter-config.yaml"))
    served = {m["name"].lower() for m in cm["metrics"]}
    files = sorted(glob.glob(f"{ROOT}/examples/*.yaml")) + sorted(glob.glob(f"{ROOT}/manifests/components/*/*.yaml"))
    hpas = 0
    for path in files:
        for d in yaml.safe_load_all(open(path)):
            if not d or d.get("kind") != "HorizontalPodAutoscaler":
                continue
            hpas += 1
            for m in d["spec"].get("metrics", []):
                if m["type"] != "External":
                    continue
                name = m["external"]["metric"]["name"]
                check(f"{os.path.relpath(path, ROOT)}: External metric {name} is served by the adapter config",
                      name.lower() in served, sorted(served))
    check("HPA examples found", hpas >= 6, hpas)


def check_overlays():
    """Each overlay renders; ServiceMonitors point at existing Services and ports with
    honorLabels for the exporter; PrometheusRules carry exactly the groups of rules/; the
    cert-manager overlay injects the CA into the APIService; generated files are current."""
    import glob
    out = subprocess.run([sys.executable, f"{ROOT}/scripts/gen-manifests.py", "--check"], capture_output=True, text=True)
    check("generated rule manifests are up to date (scripts/gen-manifests.py --check)", out.returncode == 0,
          out.stderr.strip())
    rule_files = {os.path.basename(p)[: -len(".rules.yml")]: yaml.safe_load(open(p))["groups"]
                  for p in sorted(glob.glob(f"{ROOT}/rules/*.rules.yml"))}
    for overlay in sorted(glob.glob(f"{ROOT}/manifests/overlays/*/")):
        name = os.path.basename(overlay.rstrip("/"))
        docs = render(overlay)
        kinds = {}
        for d in docs:
            kinds.setdefault(d["kind"], []).append(d)
        services = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in kinds.get("Service", [])}
        for sm in kinds.get("ServiceMonitor", []):
            ns = sm["spec"]["namespaceSelector"]["matchNames"]
            sel = sm["spec"]["selector"]["matchLabels"]
            matched = [s for (n, _), s in services.items() if n in ns
                       and all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            check(f"{name}: ServiceMonitor {sm['metadata']['name']} selects a Service", len(matched) == 1)
            for ep in sm["spec"]["endpoints"]:
                ports = {p.get("name") for s in matched for p in s["spec"]["ports"]}
                check(f"{name}: ServiceMonitor {sm['metadata']['name']} port {ep['port']} exists", ep["port"] in ports, ports)
                if sm["metadata"]["name"] == "gpuscale-exporter":
                    check(f"{name}: exporter ServiceMonitor honors labels", ep.get("honorLabels") is True)
        prs = {p["metadata"]["name"]: p["spec"]["groups"] for p in kinds.get("PrometheusRule", [])}
        if prs:
            check(f"{name}: PrometheusRules equal rules/*.rules.yml", prs == rule_files,
                  sorted(set(prs) ^ set(rule_files)))
        for cm in kinds.get("ConfigMap", []):
            if cm["metadata"]["name"] == "gpuscale-prometheus-rules":
                same = {k[: -len(".rules.yml")]: yaml.safe_load(v)["groups"] for k, v in cm["data"].items()}
                check(f"{name}: rules ConfigMap equals rules/*.rules.yml", same == rule_files)
        if kinds.get("Certificate"):
            api = kinds["APIService"][0]
            check(f"{name}: cert-manager injects the CA into the APIService",
                  api["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") == "gpuscale/gpuscale-adapter-tls")
            certs = {c["spec"]["secretName"] for c in kinds["Certificate"]}
            check(f"{name}: a Certificate writes the Secret the adapter mounts", "gpuscale-adapter-tls" in certs)
        check(f"{name}: has the placeholder HPA for pre-warming",
              any(h["metadata"]["name"] == "gpuscale-placeholder" for h in kinds.get("HorizontalPodAutoscaler", [])))


if __name__ == "__main__":
    import os
    main()
    check_hpas_against_adapter_config()
    check_overlays()
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"manifests: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
