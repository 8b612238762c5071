//! Pre-warming, tested as one mechanism (issue 6): the shipped rules, on a workload whose
//! in-flight requests rise, forecast a GPU shortfall at the node lead time; the shipped adapter
//! config serves the headroom; and `gpuscale-adapter explain` on the shipped placeholder HPA
//! scales placeholders up while the workload's own reactive HPA still holds, so
//! cluster-autoscaler gets Pending GPU pods (at a priority it does not ignore) before the
//! workload needs the node.
//!
//! The exporter's series come from a small HTTP target speaking the text format with the
//! exporter's metric contract (docs/metrics.md), because the attribution pipeline (kubelet,
//! pods, engines) is not what this test is about; a real Prometheus 2.42 evaluates the shipped
//! rules/*.rules.yml unmodified.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use gpuscale_tests::*;
use serde_json::Value;

/// Serves `/metrics` whose in-flight value rises linearly from `start` by `per_second`.
fn rising_target(start: f64, per_second: f64) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t0 = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let in_flight = start + per_second * t0.elapsed().as_secs_f64();
            let pod = r#"node="gpu-node-1",namespace="serving",pod="llm-5d9c7-abcde",workload="llm",workload_kind="Deployment""#;
            let body = format!(
                "# TYPE gpu_info gauge\n\
                 gpu_info{{node=\"gpu-node-1\",gpu=\"0\",uuid=\"GPU-a0\",model=\"NVIDIA H100 80GB HBM3\"}} 1\n\
                 gpu_info{{node=\"gpu-node-1\",gpu=\"1\",uuid=\"GPU-a1\",model=\"NVIDIA H100 80GB HBM3\"}} 1\n\
                 # TYPE gpu_utilization_ratio gauge\n\
                 gpu_utilization_ratio{{node=\"gpu-node-1\",gpu=\"0\",uuid=\"GPU-a0\",model=\"NVIDIA H100 80GB HBM3\"}} 0.6\n\
                 gpu_utilization_ratio{{node=\"gpu-node-1\",gpu=\"1\",uuid=\"GPU-a1\",model=\"NVIDIA H100 80GB HBM3\"}} 0\n\
                 # TYPE gpu_pod_gpus_allocated gauge\n\
                 gpu_pod_gpus_allocated{{{pod},container=\"vllm\",gpu=\"0\",uuid=\"GPU-a0\",model=\"NVIDIA H100 80GB HBM3\",sharing=\"exclusive\"}} 1\n\
                 # TYPE gpu_pod_utilization_ratio gauge\n\
                 gpu_pod_utilization_ratio{{{pod},container=\"vllm\",gpu=\"0\",uuid=\"GPU-a0\",model=\"NVIDIA H100 80GB HBM3\"}} 0.6\n\
                 # TYPE gpu_workload_requests_in_flight gauge\n\
                 gpu_workload_requests_in_flight{{{pod},engine=\"vllm\"}} {in_flight}\n\
                 # TYPE gpu_workload_requests_waiting gauge\n\
                 gpu_workload_requests_waiting{{{pod},engine=\"vllm\"}} 0\n"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn value_of(prom: SocketAddr, q: &str) -> Option<f64> {
    prom_query(prom, q)
        .first()
        .and_then(|r| r["value"][1].as_str().and_then(|v| v.parse().ok()))
}

fn explain(hpa: &str, config: &std::path::Path) -> String {
    let (code, out, err) = run_bin(
        &adapter_bin(),
        &[
            "explain",
            &root().join(hpa).display().to_string(),
            "--config",
            config.to_str().unwrap(),
            "--current-replicas",
            "1",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    out
}

fn desired(out: &str) -> i64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("desired replicas:"))
        .unwrap_or_else(|| panic!("{out}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_rising_workload_prewarms_gpu_nodes_before_its_own_hpa_scales() {
    let scratch = Scratch::new("prewarm");
    // In-flight rises from 3 by 1 every 10 s: for the workload's HPA (AverageValue 8 per
    // replica, 1 replica) it stays at or below 8.8 (the 10 % tolerance) for the first ~58 s,
    // while its trend adds 18 requests over the 3-minute horizon: above 20, 3 replicas of
    // 10 (capacity.max_in_flight_per_replica), one more GPU than the node has.
    let target = rising_target(3.0, 0.1);
    let rule_files: Vec<String> = std::fs::read_dir(root().join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .map(|p| format!("'{}'", p.display()))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [{}]\n\
         scrape_configs:\n  - job_name: gpuscale-exporter\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n",
        rule_files.join(", ")
    );
    let prom = start_prometheus(&scratch, &config, &[]);

    // The shipped rules forecast a shortfall: demand at the horizon above the 2 GPUs there are.
    let forecast = wait_until(Duration::from_secs(90), || {
        value_of(prom.addr, "cluster:gpu_shortfall:forecast").is_some_and(|v| v >= 1.0)
            && value_of(prom.addr, "cluster:gpu_headroom:forecast").is_some_and(|v| v >= 2.0)
    });
    assert!(
        forecast,
        "no forecast shortfall: shortfall {:?}, headroom {:?}, in-flight forecast {:?}\n{}",
        value_of(prom.addr, "cluster:gpu_shortfall:forecast"),
        value_of(prom.addr, "cluster:gpu_headroom:forecast"),
        value_of(
            prom.addr,
            "namespace_workload:gpu_requests_in_flight:forecast"
        ),
        prom.log_text()
    );
    let now = value_of(prom.addr, "namespace_workload:gpu_requests_in_flight:sum").unwrap();
    assert!(
        now <= 8.8,
        "in-flight now {now}: the test ran too slowly for its ramp"
    );

    // The shipped adapter config, pointed at this Prometheus.
    let shipped =
        std::fs::read_to_string(root().join("manifests/base/adapter-config.yaml")).unwrap();
    let adapter_config = scratch.path("adapter-config.yaml");
    std::fs::write(
        &adapter_config,
        shipped.replace(
            "http://prometheus-operated.monitoring.svc:9090",
            &format!("http://{}", prom.addr),
        ),
    )
    .unwrap();

    // The placeholder HPA asks for more placeholders now...
    let placeholders = explain(
        "manifests/components/prewarm/placeholder-hpa.yaml",
        &adapter_config,
    );
    assert!(
        desired(&placeholders) >= 2,
        "placeholder HPA did not scale up:\n{placeholders}"
    );
    // ...while the workload's own reactive HPA (in-flight per replica) still holds at 1.
    let workload = explain("examples/hpa-in-flight.yaml", &adapter_config);
    assert_eq!(desired(&workload), 1, "{workload}");
    // The forecast-driven example HPA would also scale the workload ahead of demand.
    let forecast_hpa = explain("examples/hpa-forecast.yaml", &adapter_config);
    assert!(desired(&forecast_hpa) >= 2, "{forecast_hpa}");

    // And the placeholders are pods cluster-autoscaler acts on: their priority is above its
    // default --expendable-pods-priority-cutoff (-10) and below every normal workload (0).
    let pc: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("manifests/components/prewarm/priorityclass.yaml"))
            .unwrap(),
    )
    .unwrap();
    let priority = pc["value"].as_i64().unwrap();
    assert!(
        (-10..0).contains(&priority),
        "placeholder priority {priority}"
    );
    let deployment: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(
            root().join("manifests/components/prewarm/placeholder-deployment.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(spec["priorityClassName"], pc["metadata"]["name"]);
    assert_eq!(
        spec["containers"][0]["resources"]["requests"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(
        deployment["metadata"]["namespace"], "gpuscale-prewarm",
        "the rules treat this namespace as placeholders"
    );
}
