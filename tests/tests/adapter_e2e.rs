//! The whole path an HPA's request takes, end to end: exporter (NVML stand-in) → real
//! Prometheus 2.42 (1 s scrape, 1 s rule evaluation) → gpuscale-adapter over HTTPS with
//! TokenReview/SubjectAccessReview against the Kubernetes API stand-in → read with `kubectl get
//! --raw` (the Go client) and with the `kube` crate. Response bodies are compared with golden
//! JSON files in tests/fixtures/golden/.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gpuscale_tests::kube_standin::pki::TestCa;
use gpuscale_tests::kube_standin::{KubeStandin, Rule, StandinConfig, TokenUser};
use gpuscale_tests::*;
use serde_json::Value;

const SCENARIO: &str = r#"{"gpus": [
  {"uuid": "GPU-11111111-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3", "utilization_gpu_percent": 20},
  {"uuid": "GPU-22222222-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3", "utilization_gpu_percent": 40}
]}"#;

const RULES: &str = r#"groups:
  - name: e2e
    interval: 1s
    rules:
      - record: cluster:gpu_utilization:avg
        expr: avg(gpu_utilization_ratio)
"#;

const METRICS: &str = r#"  - name: gpu_utilization
    query: cluster:gpu_utilization:avg
    namespaced: false
  - name: gpu_utilization_by_gpu
    query: gpu_utilization_ratio
    namespaced: false
  - name: tenant_gpu_memory
    query: sum(gpu_memory_used_bytes)
    namespaceLabel: namespace
"#;

const BASE: &str = "/apis/external.metrics.k8s.io/v1beta1";

struct Env {
    _scratch: Scratch,
    metrics_addr: SocketAddr,
    ca_pem: String,
    runtime: tokio::runtime::Runtime,
    pipeline: Pipeline,
    adapter: Proc,
    _standin: KubeStandin,
    kubeconfig: PathBuf,
    denied_kubeconfig: PathBuf,
    unknown_token_kubeconfig: PathBuf,
    scenario: PathBuf,
}

fn kubeconfig(path: &Path, server: SocketAddr, ca_pem: &str, token: Option<&str>) {
    let ca = base64(ca_pem.as_bytes());
    let user = match token {
        Some(t) => format!("    token: {t}\n"),
        None => "    {}\n".to_string(), // no credentials
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: adapter\n  cluster:\n    server: https://{server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: adapter\n    user: u\ncurrent-context: c\n"
    );
    std::fs::write(path, text).unwrap();
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn start(name: &str) -> Env {
    let scratch = Scratch::new(name);
    let scenario = scratch.path("scenario.json");
    write_atomic(&scenario, SCENARIO);
    let pipeline = start_pipeline(&scratch, &scenario, RULES);
    let ok = wait_until(Duration::from_secs(20), || {
        !prom_query(pipeline.prometheus.addr, "cluster:gpu_utilization:avg").is_empty()
    });
    assert!(ok, "the recording rule never produced a value");

    // The cluster: a kube API stand-in that knows two tokens and one RBAC rule.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = StandinConfig::default();
    config.tokens.insert(
        "hpa-token".into(),
        TokenUser::new(
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
            &["system:serviceaccounts"],
        ),
    );
    config
        .tokens
        .insert("mallory-token".into(), TokenUser::new("mallory", &[]));
    config.rules = vec![
        Rule::user("system:serviceaccount:kube-system:horizontal-pod-autoscaler")
            .verbs(&["get", "list", "watch"])
            .api_groups(&["external.metrics.k8s.io"])
            .resources(&["*"]),
        Rule::user("system:serviceaccount:kube-system:horizontal-pod-autoscaler")
            .verbs(&["get"])
            .paths(&["*"]),
    ];
    let standin = runtime.block_on(KubeStandin::start(config));
    let cluster_kubeconfig = scratch.path("cluster-kubeconfig");
    standin.write_kubeconfig(&cluster_kubeconfig);

    // Serving certificate from a CA the clients trust.
    let ca = TestCa::new("adapter-serving-ca");
    let serving = ca.server(&["localhost", "127.0.0.1"]);
    std::fs::write(scratch.path("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(scratch.path("tls.key"), &serving.key_pem).unwrap();

    let adapter_config = write_adapter_config(&scratch, pipeline.prometheus.addr, "500ms", METRICS);
    let port = free_port();
    let metrics_port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = scratch.path("adapter.log");
    let child = Command::new(adapter_bin())
        .args(["serve", "--config"])
        .arg(&adapter_config)
        .args(["--listen-address", &addr.to_string()])
        .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
        .arg("--tls-cert-file")
        .arg(scratch.path("tls.crt"))
        .arg("--tls-private-key-file")
        .arg(scratch.path("tls.key"))
        .env("KUBECONFIG", &cluster_kubeconfig)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut adapter = Proc { child, addr, log };

    let kc = scratch.path("kubeconfig");
    kubeconfig(&kc, addr, &ca.cert_pem, Some("hpa-token"));
    let denied = scratch.path("kubeconfig-denied");
    kubeconfig(&denied, addr, &ca.cert_pem, Some("mallory-token"));
    let anonymous = scratch.path("kubeconfig-unknown-token");
    // kubectl prompts for a password when a kubeconfig has no credentials at all, so its
    // unauthenticated case is a token the cluster does not know.
    kubeconfig(&anonymous, addr, &ca.cert_pem, Some("forged-token"));
    let up = wait_until(Duration::from_secs(20), || kubectl_raw(&kc, BASE).0);
    assert!(
        up && adapter.is_running(),
        "adapter did not come up:\n{}",
        adapter.log_text()
    );
    Env {
        _scratch: scratch,
        metrics_addr: format!("127.0.0.1:{metrics_port}").parse().unwrap(),
        ca_pem: ca.cert_pem.clone(),
        runtime,
        pipeline,
        adapter,
        _standin: standin,
        kubeconfig: kc,
        denied_kubeconfig: denied,
        unknown_token_kubeconfig: anonymous,
        scenario,
    }
}

/// `kubectl get --raw PATH`: (success, stdout, stderr).
fn kubectl_raw(kubeconfig: &Path, path: &str) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "--raw", path, "--request-timeout=10s"])
        .output()
        .expect("kubectl is needed for the end-to-end tests");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The body with volatile fields (timestamps, values that move) replaced, for golden files.
fn normalized(mut v: Value) -> Value {
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            item["timestamp"] = Value::String("<timestamp>".into());
        }
    }
    v
}

/// Compares with tests/fixtures/golden/NAME; `UPDATE_GOLDEN=1` rewrites the file instead
/// (review the diff before committing it).
fn golden(name: &str, actual: &Value) {
    let path = root().join("tests/fixtures/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; actual body:\n{}",
                path.display(),
                serde_json::to_string_pretty(actual).unwrap()
            )
        }))
        .unwrap();
    assert_eq!(
        &expected,
        actual,
        "{} differs; actual:\n{}",
        path.display(),
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// The `kube` crate as a client: the parsed body on success, the Status code on failure.
fn kube_get(
    runtime: &tokio::runtime::Runtime,
    kubeconfig: &Path,
    path: &str,
) -> Result<Value, u16> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        let yaml = std::fs::read_to_string(kubeconfig).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let request = http::Request::get(path).body(Vec::new()).unwrap();
        match client.request::<Value>(request).await {
            Ok(v) => Ok(v),
            Err(kube::Error::Api(status)) => Err(status.code),
            Err(e) => panic!("kube client error: {e}"),
        }
    })
}

/// Status code and raw JSON body, for golden comparisons of error bodies (which kubectl and
/// kube turn into messages).
fn raw_get(
    runtime: &tokio::runtime::Runtime,
    env: &Env,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime.block_on(async {
        let ca = reqwest::Certificate::from_pem(env.ca_pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap();
        let mut req = client.get(format!("https://{}{path}", env.adapter.addr));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (
            code,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    })
}

#[test]
fn kubectl_and_kube_read_gpu_metrics_through_the_adapter() {
    let env = start("adapter-e2e");
    let metric = format!("{BASE}/namespaces/default/gpu_utilization");

    // Discovery, as the aggregator and kubectl walk it.
    for (path, file) in [
        ("/apis", "api-group-list.json"),
        ("/apis/external.metrics.k8s.io", "api-group.json"),
        (BASE, "api-resource-list.json"),
    ] {
        let (ok, out, err) = kubectl_raw(&env.kubeconfig, path);
        assert!(ok, "{path}: {err}");
        golden(file, &serde_json::from_str(&out).unwrap());
    }

    // The value: avg(20 %, 40 %) = 0.3, through the recording rule.
    let (ok, out, err) = kubectl_raw(&env.kubeconfig, &metric);
    assert!(ok, "{err}\n{}", env.adapter.log_text());
    let v: Value = serde_json::from_str(&out).unwrap();
    golden("external-metric-value-list.json", &normalized(v.clone()));
    let ts = v["items"][0]["timestamp"].as_str().unwrap();
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");

    // The same through the kube crate (the HPA lowercases names; case must not matter).
    let kv = kube_get(
        &env.runtime,
        &env.kubeconfig,
        &format!("{BASE}/namespaces/default/GPU_Utilization"),
    )
    .unwrap();
    assert_eq!(kv["items"][0]["value"], "300m");

    // Selector → matchers: one GPU only.
    let path =
        format!("{metric}_by_gpu?labelSelector=uuid%3DGPU-22222222-0000-0000-0000-000000000000");
    let (ok, out, err) = kubectl_raw(&env.kubeconfig, &path);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(v["items"][0]["value"], "400m");
    assert_eq!(v["items"][0]["metricLabels"]["gpu"], "1");

    // Move the load: the answer follows (1 s scrape + 1 s rule + 0.5 s cache).
    write_atomic(
        &env.scenario,
        &SCENARIO.replace(
            "\"utilization_gpu_percent\": 20",
            "\"utilization_gpu_percent\": 80",
        ),
    );
    let moved = wait_until(Duration::from_secs(15), || {
        let (ok, out, _) = kubectl_raw(&env.kubeconfig, &metric);
        ok && serde_json::from_str::<Value>(&out).unwrap()["items"][0]["value"] == "600m"
    });
    assert!(
        moved,
        "the adapter's answer did not follow the utilization change"
    );

    // Errors as Status JSON with the right codes.
    let (code, body) = raw_get(
        &env.runtime,
        &env,
        &format!("{BASE}/namespaces/default/nope"),
        Some("hpa-token"),
    );
    assert_eq!(code, 404);
    golden("status-404-unknown-metric.json", &body);
    let (code, body) = raw_get(
        &env.runtime,
        &env,
        &format!("{metric}?labelSelector=a%20in%20(b"),
        Some("hpa-token"),
    );
    assert_eq!(code, 400);
    golden("status-400-bad-selector.json", &body);
    let (code, body) = raw_get(&env.runtime, &env, &metric, None);
    assert_eq!(code, 401);
    golden("status-401-no-credentials.json", &body);
    let (code, body) = raw_get(&env.runtime, &env, &metric, Some("mallory-token"));
    assert_eq!(code, 403);
    golden("status-403-denied.json", &body);
    // kubectl sees the same refusals.
    let (ok, _, err) = kubectl_raw(&env.denied_kubeconfig, &metric);
    assert!(!ok && err.contains("Forbidden"), "{err}");
    let (ok, _, err) = kubectl_raw(&env.unknown_token_kubeconfig, &metric);
    assert!(
        !ok && err.contains("Unauthorized"),
        "{err}\n{}",
        env.adapter.log_text()
    );
    assert_eq!(
        kube_get(&env.runtime, &env.denied_kubeconfig, &metric),
        Err(403)
    );

    // The adapter's own metrics (plain HTTP, for Prometheus): requests by metric and code,
    // and where answers came from.
    let own = http_get(env.metrics_addr, "/metrics", None).unwrap();
    assert_eq!(own.status, 200);
    let samples = parse_exposition(&own.body);
    assert!(
        value(
            &samples,
            "gpuscale_adapter_requests_total",
            &[("metric", "gpu_utilization"), ("code", "200")]
        ) >= 3.0
    );
    assert!(
        value(
            &samples,
            "gpuscale_adapter_requests_total",
            &[("metric", "unknown"), ("code", "404")]
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "gpuscale_adapter_request_duration_seconds_count",
            &[]
        ) >= 5.0
    );
    assert!(
        value(
            &samples,
            "gpuscale_adapter_query_source_total",
            &[("source", "prometheus")]
        ) >= 1.0
    );
    assert_eq!(
        value(&samples, "gpuscale_adapter_configured_metrics", &[]),
        3.0
    );

    // Probes need no credentials.
    assert_eq!(raw_get(&env.runtime, &env, "/readyz", None).0, 200);

    // Prometheus goes away: 503, never a made-up value (after the 0.5 s cache expires).
    let mut env = env;
    let _ = env.pipeline.prometheus.child.kill();
    let _ = env.pipeline.prometheus.child.wait();
    std::thread::sleep(Duration::from_millis(800));
    let (code, body) = raw_get(&env.runtime, &env, &metric, Some("hpa-token"));
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert!(
        body["message"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    assert!(env.adapter.is_running());
}
