//! Pod attribution and workload signals end to end (issue 4): the real exporter binary
//! against the stand-in NVML (a scenario with processes), a kubelet pod-resources stand-in
//! speaking the real gRPC proto on a unix socket (whole GPUs, MIG, time-sliced replicas), a
//! Kubernetes API stand-in serving pod list/watch and owners in real JSON, cgroup files under
//! a fake `--proc-root`, and engine `/metrics` fixtures in each engine's own format over HTTP.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use gpuscale_tests::kube_standin::{KubeStandin, StandinConfig};
use gpuscale_tests::kubelet_standin::{Fixture, KubeletStandin};
use gpuscale_tests::*;
use serde_json::Value;

const G0: &str = "GPU-aaaaaaaa-1111-4000-8000-000000000000";
const G1: &str = "GPU-bbbbbbbb-2222-4000-8000-000000000001";
const G2: &str = "GPU-cccccccc-3333-4000-8000-000000000002";
const GIB: f64 = 1073741824.0;
const LLM: &str = "llm-7d9f8b6c5d-x2x9z";

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/attribution")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

/// An engine's metrics endpoint serving a fixture file; `set_up(false)` makes it answer 503,
/// as an engine that is overloaded or restarting does.
struct Engine {
    port: u16,
    up: Arc<AtomicU8>,
}

impl Engine {
    fn start(rt: &tokio::runtime::Runtime, file: &str, path: &'static str) -> Self {
        let body = fixture(&format!("engines/{file}"));
        let up = Arc::new(AtomicU8::new(1));
        let flag = up.clone();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let body = body.clone();
                let flag = flag.clone();
                async move {
                    if flag.load(Ordering::SeqCst) == 1 {
                        (
                            axum::http::StatusCode::OK,
                            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                            body,
                        )
                    } else {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [("content-type", "text/plain")],
                            "loading model".to_string(),
                        )
                    }
                }
            }),
        );
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(u8::from(up), Ordering::SeqCst);
    }
}

struct Cluster {
    kube: KubeStandin,
    engines: BTreeMap<&'static str, Engine>,
    pods: Vec<Value>,
}

/// The kube stand-in with the fixture pods (engine ports filled in) and their owners.
fn start_cluster(rt: &tokio::runtime::Runtime) -> Cluster {
    let engines: BTreeMap<&'static str, Engine> = [
        ("VLLM", Engine::start(rt, "vllm.txt", "/metrics")),
        ("TGI", Engine::start(rt, "tgi.txt", "/metrics")),
        ("SGLANG", Engine::start(rt, "sglang.txt", "/metrics")),
        ("TRITON", Engine::start(rt, "triton.txt", "/metrics")),
        (
            "GENERIC",
            Engine::start(rt, "generic.txt", "/stats/prometheus"),
        ),
    ]
    .into();
    let mut text = fixture("pods.json");
    for (name, engine) in &engines {
        text = text.replace(&format!("${{{name}_PORT}}"), &engine.port.to_string());
    }
    let list: Value = serde_json::from_str(&text).unwrap();
    let pods = list["items"].as_array().unwrap().clone();
    let kube = rt.block_on(KubeStandin::start(StandinConfig::default()));
    for pod in &pods {
        kube.put_pod(pod.clone());
    }
    let owners: BTreeMap<String, Value> = serde_json::from_str(&fixture("owners.json")).unwrap();
    for (path, object) in owners {
        kube.put_object(&path, object);
    }
    Cluster {
        kube,
        engines,
        pods,
    }
}

fn scenario(scratch: &Scratch) -> PathBuf {
    let path = scratch.path("scenario.json");
    write_atomic(&path, &fixture("nvml-scenario.json"));
    path
}

fn start(scratch: &Scratch, socket: &Path, extra: &[&str]) -> Proc {
    let scenario = scenario(scratch);
    let mut args = vec![
        "--collect-interval".to_string(),
        "200ms".to_string(),
        "--workload-scrape-timeout".to_string(),
        "500ms".to_string(),
        "--pod-resources-socket".to_string(),
        socket.display().to_string(),
        "--proc-root".to_string(),
        fixtures().join("proc").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    start_exporter(scratch, Some(&scenario), &refs)
}

/// Scrapes until `check` holds (10 s at most), returning the last scrape.
fn scrape_until(exporter: &Proc, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(15), || {
        last = scrape(exporter.addr);
        check(&last)
    });
    assert!(
        ok,
        "timed out waiting for {what}; last scrape:\n{}\nlog:\n{}",
        last.iter()
            .filter(|s| s.name.starts_with("gpu_pod")
                || s.name.starts_with("gpu_workload")
                || s.name.starts_with("gpuscale_exporter"))
            .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
            .collect::<Vec<_>>()
            .join("\n"),
        exporter.log_text()
    );
    last
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn pods_workloads_and_engines_end_to_end() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let scratch = Scratch::new("attribution");
    let cluster = start_cluster(&rt);
    let kubeconfig = scratch.path("kubeconfig");
    cluster.kube.write_kubeconfig(&kubeconfig);
    let socket = scratch.path("kubelet.sock");
    let kubelet = KubeletStandin::start(&socket, Fixture::from_json(&fixture("kubelet.json")));
    let exporter = start(
        &scratch,
        &socket,
        &["--kubeconfig", &kubeconfig.display().to_string()],
    );

    let s = scrape_until(&exporter, "every engine and pod series", |s| {
        find(s, "gpu_workload_requests_in_flight", &[]).len() == 4
            && find(s, "gpu_workload_requests_waiting", &[]).len() == 5
            && find(s, "gpu_pod_gpus_allocated", &[]).len() == 5
            && !find(
                s,
                "gpu_pod_utilization_ratio",
                &[("pod", "batch-28512345-abcde")],
            )
            .is_empty()
    });

    // A whole GPU: share 1, the GPU's own utilization and memory; Deployment through the
    // ReplicaSet's owner.
    let llm = [
        ("node", "node-a"),
        ("namespace", "ml"),
        ("pod", LLM),
        ("container", "vllm"),
        ("workload", "llm"),
        ("workload_kind", "Deployment"),
        ("gpu", "0"),
        ("uuid", G0),
        ("model", "NVIDIA H100 80GB HBM3"),
    ];
    let mut llm_alloc = llm.to_vec();
    llm_alloc.push(("sharing", "exclusive"));
    assert_eq!(value(&s, "gpu_pod_gpus_allocated", &llm_alloc), 1.0);
    assert_eq!(value(&s, "gpu_pod_utilization_ratio", &llm), 0.6);
    assert_eq!(value(&s, "gpu_pod_memory_used_bytes", &llm), 40.0 * GIB);
    assert!(
        find(
            &s,
            "gpu_pod_gpus_allocated",
            &[("container", "log-shipper")]
        )
        .is_empty()
    );

    // Time-slicing: 2 of 4 advertised replicas and 1 of 4; utilization and memory from the
    // processes each container's cgroup owns (cgroup v1 for tgi, v2 systemd for the job).
    let tgi = [("pod", "tgi-0"), ("container", "server"), ("uuid", G1)];
    assert_eq!(
        value(
            &s,
            "gpu_pod_gpus_allocated",
            &[
                ("pod", "tgi-0"),
                ("sharing", "time-slicing"),
                ("workload", "tgi"),
                ("workload_kind", "StatefulSet")
            ]
        ),
        0.5
    );
    assert_eq!(value(&s, "gpu_pod_utilization_ratio", &tgi), 0.5);
    assert_eq!(value(&s, "gpu_pod_memory_used_bytes", &tgi), 10.0 * GIB);
    let batch = [
        ("namespace", "jobs"),
        ("pod", "batch-28512345-abcde"),
        ("workload", "batch"),
        ("workload_kind", "CronJob"),
    ];
    assert_eq!(value(&s, "gpu_pod_gpus_allocated", &batch), 0.25);
    assert!(close(value(&s, "gpu_pod_utilization_ratio", &batch), 0.3));
    assert_eq!(value(&s, "gpu_pod_memory_used_bytes", &batch), 6.0 * GIB);

    // MIG: the instance's memory share of its GPU, its own memory, no utilization (NVML
    // has none per instance); a bare pod is its own workload.
    let sglang = [
        ("pod", "sglang-solo"),
        ("workload", "sglang-solo"),
        ("workload_kind", "Pod"),
        ("uuid", G2),
        ("mig_profile", "1g.10gb"),
        ("mig_uuid", "MIG-dddddddd-4444-4000-8000-000000000003"),
    ];
    let mut sglang_alloc = sglang.to_vec();
    sglang_alloc.push(("sharing", "mig"));
    assert_eq!(value(&s, "gpu_pod_gpus_allocated", &sglang_alloc), 0.125);
    assert_eq!(value(&s, "gpu_pod_memory_used_bytes", &sglang), 3.0 * GIB);
    assert!(find(&s, "gpu_pod_utilization_ratio", &[("pod", "sglang-solo")]).is_empty());
    assert_eq!(
        value(
            &s,
            "gpu_pod_gpus_allocated",
            &[
                ("pod", "triton-5f6d7c8b9-q1w2e"),
                ("mig_profile", "3g.40gb"),
                ("workload", "triton")
            ]
        ),
        0.5
    );
    // Not a GPU resource, and a pod on another node: nothing.
    assert!(find(&s, "gpu_pod_gpus_allocated", &[("pod", "node-agent-xyz12")]).is_empty());
    assert!(
        find(
            &s,
            "gpu_workload_requests_waiting",
            &[("pod", "elsewhere-0")]
        )
        .is_empty()
    );

    // Engines, summed over their own labels, with the pod's workload.
    let vllm = [
        ("namespace", "ml"),
        ("pod", LLM),
        ("workload", "llm"),
        ("workload_kind", "Deployment"),
        ("engine", "vllm"),
    ];
    assert_eq!(value(&s, "gpu_workload_requests_in_flight", &vllm), 7.0);
    assert_eq!(value(&s, "gpu_workload_requests_waiting", &vllm), 5.0);
    assert_eq!(value(&s, "gpu_workload_requests_total", &vllm), 1300.0);
    let mut le = vllm.to_vec();
    le.push(("le", "0.3"));
    assert_eq!(
        value(&s, "gpu_workload_request_duration_seconds_bucket", &le),
        10.0
    );
    le.pop();
    le.push(("le", "+Inf"));
    assert_eq!(
        value(&s, "gpu_workload_request_duration_seconds_bucket", &le),
        1300.0
    );
    assert_eq!(
        find(&s, "gpu_workload_request_duration_seconds_bucket", &vllm).len(),
        22
    );
    assert_eq!(
        value(&s, "gpu_workload_request_duration_seconds_count", &vllm),
        1300.0
    );
    assert_eq!(
        value(&s, "gpu_workload_request_duration_seconds_sum", &vllm),
        1520.75
    );

    let triton = [("pod", "triton-5f6d7c8b9-q1w2e"), ("engine", "triton")];
    assert_eq!(value(&s, "gpu_workload_requests_waiting", &triton), 9.0);
    assert!(find(&s, "gpu_workload_requests_in_flight", &triton).is_empty());
    assert_eq!(value(&s, "gpu_workload_requests_total", &triton), 5010.0);
    assert!(close(
        value(&s, "gpu_workload_request_duration_seconds_sum", &triton),
        197.0
    ));
    assert_eq!(
        find(&s, "gpu_workload_request_duration_seconds_bucket", &triton).len(),
        1
    );
    let tgi_w = [("pod", "tgi-0"), ("engine", "tgi"), ("workload", "tgi")];
    assert_eq!(value(&s, "gpu_workload_requests_in_flight", &tgi_w), 6.0);
    assert_eq!(value(&s, "gpu_workload_requests_waiting", &tgi_w), 4.0);
    assert_eq!(value(&s, "gpu_workload_requests_total", &tgi_w), 500.0);
    let sg = [("pod", "sglang-solo"), ("engine", "sglang")];
    assert_eq!(value(&s, "gpu_workload_requests_in_flight", &sg), 2.0);
    assert_eq!(value(&s, "gpu_workload_requests_total", &sg), 77.0);
    // Generic mapping by annotations, latency in ms converted; the ReplicaSet is not
    // readable, so the Deployment comes from the pod-template-hash.
    let generic = [
        ("namespace", "web"),
        ("workload", "custom-server"),
        ("workload_kind", "Deployment"),
        ("engine", "generic"),
    ];
    assert_eq!(value(&s, "gpu_workload_requests_in_flight", &generic), 10.0);
    assert_eq!(value(&s, "gpu_workload_requests_waiting", &generic), 12.0);
    assert_eq!(value(&s, "gpu_workload_requests_total", &generic), 100.0);
    let mut gle = generic.to_vec();
    gle.push(("le", "0.05"));
    assert_eq!(
        value(&s, "gpu_workload_request_duration_seconds_bucket", &gle),
        10.0
    );
    assert_eq!(
        value(&s, "gpu_workload_request_duration_seconds_sum", &generic),
        30.0
    );

    assert_eq!(value(&s, "gpuscale_exporter_kubelet_up", &[]), 1.0);
    assert_eq!(value(&s, "gpuscale_exporter_kube_api_up", &[]), 1.0);
    assert_eq!(
        value(
            &s,
            "gpuscale_exporter_workload_scrape_errors_total",
            &[("pod", LLM)]
        ),
        0.0
    );
    // The pod list was taken once and then watched, with the node's field selector.
    assert_eq!(cluster.kube.pod_lists(), 1, "{}", exporter.log_text());
    assert!(kubelet.list_calls() >= 2);

    // The exposition with the new families passes promtool's lint.
    let text = http_get(exporter.addr, "/metrics", None).unwrap().body;
    let (ok, out) = promtool_check(&text);
    assert!(ok, "promtool check metrics:\n{out}\n---\n{text}");

    // Python's prometheus_client parses the OpenMetrics histogram and counters.
    let om = http_get(
        exporter.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .unwrap()
    .body;
    let om_file = scratch.path("om.txt");
    std::fs::write(&om_file, &om).unwrap();
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
fams = {f.name: f for f in om_parse(open(sys.argv[1]).read())}
h = fams['gpu_workload_request_duration_seconds']
assert h.type == 'histogram', h.type
assert fams['gpu_workload_requests'].type == 'counter'
assert fams['gpuscale_exporter_workload_scrape_errors'].type == 'counter'
print(len(h.samples))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&om_file)
        .output()
        .expect("python3 is needed");
    assert!(
        out.status.success(),
        "python prometheus_client rejected the exposition:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An engine that fails: its series are absent (not stale) and the failure counted.
    cluster.engines["VLLM"].set_up(false);
    let s = scrape_until(&exporter, "vLLM series to vanish", |s| {
        find(s, "gpu_workload_requests_in_flight", &[("pod", LLM)]).is_empty()
            && find(
                s,
                "gpu_workload_request_duration_seconds_bucket",
                &[("pod", LLM)],
            )
            .is_empty()
    });
    assert!(
        value(
            &s,
            "gpuscale_exporter_workload_scrape_errors_total",
            &[("namespace", "ml"), ("pod", LLM), ("engine", "vllm")]
        ) >= 1.0
    );
    assert_eq!(find(&s, "gpu_workload_requests_in_flight", &[]).len(), 3);
    // The GPU side is unaffected.
    assert_eq!(value(&s, "gpu_pod_utilization_ratio", &llm), 0.6);
    assert!(exporter.log_text().contains("engine metrics scrape failed"));
    cluster.engines["VLLM"].set_up(true);
    scrape_until(&exporter, "vLLM series to return", |s| {
        find(s, "gpu_workload_requests_in_flight", &[("pod", LLM)]).len() == 1
    });

    // A pod deleted: gone from the API watch and the kubelet; its series vanish, and the job
    // left alone on the time-sliced GPU now gets that GPU's utilization.
    cluster.kube.delete_pod("ml", "tgi-0");
    let mut fixture_json: Value = serde_json::from_str(&fixture("kubelet.json")).unwrap();
    fixture_json["pod_resources"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["name"] != "tgi-0");
    kubelet.set_fixture(Fixture::from_json(&fixture_json.to_string()));
    let s = scrape_until(&exporter, "tgi-0 series to vanish", |s| {
        !s.iter()
            .any(|x| x.labels.get("pod").map(String::as_str) == Some("tgi-0"))
    });
    assert_eq!(value(&s, "gpu_pod_gpus_allocated", &batch), 0.25);
    assert_eq!(value(&s, "gpu_pod_utilization_ratio", &batch), 0.8);
    assert_eq!(value(&s, "gpu_pod_memory_used_bytes", &batch), 17.0 * GIB);
    assert_eq!(cluster.pods.len(), 7);
}

#[test]
fn without_the_api_the_kubelet_names_pods_and_a_replaced_socket_is_reconnected() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let scratch = Scratch::new("attribution-noapi");
    let socket = scratch.path("kubelet.sock");
    // An older kubelet: no GetAllocatableResources.
    let mut fixture_json: Value = serde_json::from_str(&fixture("kubelet.json")).unwrap();
    fixture_json.as_object_mut().unwrap().remove("allocatable");
    let old_kubelet = Fixture::from_json(&fixture_json.to_string());
    let kubelet = KubeletStandin::start(&socket, old_kubelet.clone());
    let exporter = start(&scratch, &socket, &["--kube-api", "off"]);

    let s = scrape_until(&exporter, "pod series from the kubelet", |s| {
        find(s, "gpu_pod_gpus_allocated", &[]).len() == 5
    });
    assert_eq!(value(&s, "gpuscale_exporter_kube_api_up", &[]), 0.0);
    assert_eq!(value(&s, "gpuscale_exporter_kubelet_up", &[]), 1.0);
    let llm = [
        ("namespace", "ml"),
        ("pod", LLM),
        ("container", "vllm"),
        ("workload", ""),
        ("workload_kind", ""),
    ];
    assert_eq!(value(&s, "gpu_pod_gpus_allocated", &llm), 1.0);
    assert_eq!(value(&s, "gpu_pod_utilization_ratio", &llm), 0.6);
    // Replicas count as whole GPUs without the advertised total.
    assert_eq!(
        value(
            &s,
            "gpu_pod_gpus_allocated",
            &[("pod", "tgi-0"), ("sharing", "time-slicing")]
        ),
        2.0
    );
    // Shared GPU without pod UIDs: allocation only, no made-up usage.
    assert!(find(&s, "gpu_pod_utilization_ratio", &[("uuid", G1)]).is_empty());
    assert!(find(&s, "gpu_pod_memory_used_bytes", &[("uuid", G1)]).is_empty());
    assert!(find(&s, "gpu_workload_requests_waiting", &[]).is_empty());
    assert!(kubelet.allocatable_calls() >= 1);
    let log = exporter.log_text();
    assert_eq!(
        log.matches("GetAllocatableResources unavailable").count(),
        1,
        "{log}"
    );

    // The kubelet restarts: its socket disappears, then a new one is bound at the same path.
    drop(kubelet);
    let s = scrape_until(&exporter, "kubelet_up 0", |s| {
        find(s, "gpuscale_exporter_kubelet_up", &[])
            .first()
            .is_some_and(|x| x.value == 0.0)
    });
    assert!(find(&s, "gpu_pod_gpus_allocated", &[]).is_empty());
    let _kubelet = KubeletStandin::start(&socket, old_kubelet);
    scrape_until(
        &exporter,
        "pod series back after the kubelet restart",
        |s| {
            find(s, "gpu_pod_gpus_allocated", &[]).len() == 5
                && value(s, "gpuscale_exporter_kubelet_up", &[]) == 1.0
        },
    );
    let log = exporter.log_text();
    assert_eq!(
        log.matches("kubelet pod-resources unavailable").count(),
        1,
        "{log}"
    );
}
