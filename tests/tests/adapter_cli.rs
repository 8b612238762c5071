//! The adapter's tools for people, on the real pipeline: exporter (NVML stand-in) → real
//! Prometheus → `gpuscale-adapter check-config | query | explain`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use gpuscale_tests::*;

const SCENARIO: &str = r#"{"gpus": [
  {"uuid": "GPU-11111111-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3", "utilization_gpu_percent": 30},
  {"uuid": "GPU-22222222-0000-0000-0000-000000000000", "name": "NVIDIA H100 80GB HBM3", "utilization_gpu_percent": 50},
  {"uuid": "GPU-33333333-0000-0000-0000-000000000000", "name": "NVIDIA L4", "utilization_gpu_percent": 90}
]}"#;

const METRICS: &str = r#"  - name: gpu_utilization
    query: avg(gpu_utilization_ratio)
    namespaced: false
  - name: GPU_Total_Util
    query: sum(gpu_utilization_ratio)
    namespaced: false
  - name: per_gpu
    query: gpu_utilization_ratio
    namespaced: false
  - name: nothing
    query: gpu_utilization_ratio{model="none"}
    namespaced: false
  - name: nothing_zero
    query: gpu_utilization_ratio{model="none"}
    namespaced: false
    emptyResult: zero
"#;

const HPA: &str = r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: llm, namespace: serving}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm}
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - type: External
      external:
        metric: {name: gpu_utilization}
        target: {type: Value, value: 400m}
    - type: External
      external:
        metric:
          name: gpu_total_util
          selector: {matchLabels: {uuid: GPU-33333333-0000-0000-0000-000000000000}}
        target: {type: AverageValue, averageValue: 300m}
"#;

#[test]
fn check_config_reports_ok_and_errors_with_position() {
    let scratch = Scratch::new("check-config");
    let good = write_adapter_config(&scratch, "127.0.0.1:9".parse().unwrap(), "1s", METRICS);
    let (code, out, err) = run_bin(&adapter_bin(), &["check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok, 5 metric(s)"), "{out}");
    assert!(out.contains("gpu_total_util"), "served lowercased: {out}");

    let bad = scratch.path("bad.yaml");
    std::fs::write(
        &bad,
        "prometheus:\n  url: http://p:9090\nmetrics:\n  - name: fine\n    query: up\n  - name: broken\n    query: sum(rate(x[5m])\n",
    )
    .unwrap();
    let (code, out, err) = run_bin(&adapter_bin(), &["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(&format!("{}:7:", bad.display())),
        "file and line: {err}"
    );
    assert!(err.contains("metric \"broken\""), "metric named: {err}");
    // The server refuses the same file at start, with the same message.
    let (code, _, serve_err) = run_bin(
        &adapter_bin(),
        &[
            "serve",
            "--config",
            bad.to_str().unwrap(),
            "--allow-anonymous",
            "--listen-address",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, 2);
    assert!(serve_err.contains("metric \"broken\""), "{serve_err}");
}

#[test]
fn query_prints_what_the_hpa_receives() {
    let scratch = Scratch::new("adapter-query");
    let scenario = scratch.path("scenario.json");
    write_atomic(&scenario, SCENARIO);
    let p = start_pipeline(&scratch, &scenario, "");
    let config = write_adapter_config(&scratch, p.prometheus.addr, "1s", METRICS);
    let cfg = config.to_str().unwrap();

    let (code, out, err) = run_bin(
        &adapter_bin(),
        &["query", "gpu_utilization", "--config", cfg],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "ExternalMetricValueList");
    assert_eq!(v["apiVersion"], "external.metrics.k8s.io/v1beta1");
    assert_eq!(v["items"][0]["metricName"], "gpu_utilization");
    assert_eq!(v["items"][0]["value"], "567m"); // (0.3 + 0.5 + 0.9) / 3 = 0.5667

    // A selector becomes a matcher: only the two H100s. (Kubernetes label values cannot hold
    // spaces, so HPAs select GPUs by uuid, gpu or node rather than by model name.)
    let (code, out, _) = run_bin(
        &adapter_bin(),
        &[
            "query",
            "GPU_TOTAL_UTIL",
            "--config",
            cfg,
            "--selector",
            "uuid in (GPU-11111111-0000-0000-0000-000000000000,GPU-22222222-0000-0000-0000-000000000000)",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"][0]["value"], "800m");
    assert_eq!(v["items"][0]["metricName"], "GPU_Total_Util");

    // Several series: one item each, with their labels.
    let (_, out, _) = run_bin(
        &adapter_bin(),
        &[
            "query",
            "per_gpu",
            "--config",
            cfg,
            "-l",
            "uuid!=GPU-33333333-0000-0000-0000-000000000000",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{out}");
    assert!(
        items
            .iter()
            .all(|i| i["metricLabels"]["model"] == "NVIDIA H100 80GB HBM3")
    );

    // Empty results: an error by default (the HPA holds), 0 when configured.
    let (code, out, _) = run_bin(&adapter_bin(), &["query", "nothing", "--config", cfg]);
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["code"], 404);
    assert!(v["message"].as_str().unwrap().contains("no series"));
    let (code, out, _) = run_bin(&adapter_bin(), &["query", "nothing_zero", "--config", cfg]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"][0]["value"], "0");

    // Bad selector and unknown metric: Status 400 / 404.
    let (code, out, _) = run_bin(
        &adapter_bin(),
        &["query", "gpu_utilization", "--config", cfg, "-l", "a in (b"],
    );
    assert_eq!(code, 3);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["code"],
        400
    );
    let (_, out, _) = run_bin(&adapter_bin(), &["query", "nope", "--config", cfg]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["code"],
        404
    );
}

#[test]
fn explain_applies_the_hpa_algorithm_to_served_values() {
    let scratch = Scratch::new("adapter-explain");
    let scenario = scratch.path("scenario.json");
    write_atomic(&scenario, SCENARIO);
    let p = start_pipeline(&scratch, &scenario, "");
    let config = write_adapter_config(&scratch, p.prometheus.addr, "1s", METRICS);
    let hpa = scratch.path("hpa.yaml");
    std::fs::write(&hpa, HPA).unwrap();
    let (code, out, err) = run_bin(
        &adapter_bin(),
        &[
            "explain",
            hpa.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--current-replicas",
            "2",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    // gpu_utilization: 0.566 / 0.4 = 1.42 → ceil(1.42 × 2) = 3.
    // gpu_total_util{uuid=the L4}: 0.9 / 0.3 → ceil(3.0) = 3 (ratio 0.9/(0.3×2) = 1.5).
    let util_line = out
        .lines()
        .find(|l| l.starts_with("gpu_utilization"))
        .unwrap();
    assert!(util_line.trim_end().ends_with(" 3"), "{out}");
    let l4_line = out
        .lines()
        .find(|l| l.starts_with("gpu_total_util"))
        .unwrap();
    assert!(l4_line.contains("uuid=GPU-3333"), "{out}");
    assert!(l4_line.trim_end().ends_with(" 3"), "{out}");
    assert!(out.contains("desired replicas: 3"), "{out}");

    // Utilization rises: the proposal follows.
    write_atomic(
        &scenario,
        &SCENARIO.replace(
            "\"utilization_gpu_percent\": 30",
            "\"utilization_gpu_percent\": 100",
        ),
    );
    let moved = wait_until(Duration::from_secs(15), || {
        let (_, out, _) = run_bin(
            &adapter_bin(),
            &[
                "explain",
                hpa.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--current-replicas",
                "2",
            ],
        );
        out.contains("desired replicas: 4") // 0.8 / 0.4 × 2 = 4
    });
    assert!(moved, "explain never followed the new utilization");
}
