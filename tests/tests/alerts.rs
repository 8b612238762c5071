//! Alerts end to end: the exporter on the NVML stand-in and a kube-state-metrics stand-in
//! are scraped by a real Prometheus evaluating the generated rules, which sends to a real
//! Alertmanager, which posts to a webhook receiver in this test. An overspend scenario
//! delivers the budget alert with its labels and annotations; a normal scenario delivers
//! nothing. The rules are generated from the shipped config with test-only overrides (all
//! `for:` 0s, a 1 s spend step, the scenario's budget) so each case finishes in seconds.
//! Issue 5.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use gpuscale_tests::alerting::{StubServer, start_alertmanager};
use gpuscale_tests::rulegen::{self, Inputs};
use gpuscale_tests::*;

/// Four L4 GPUs at a steady 60 %: nothing throttles, nothing is lost, no XID.
const SCENARIO: &str = r#"{"gpus": [
  {"name": "NVIDIA L4", "memory_total_bytes": 24000000000, "utilization_gpu_percent": 60, "memory_used_bytes": 8000000000},
  {"name": "NVIDIA L4", "memory_total_bytes": 24000000000, "utilization_gpu_percent": 60, "memory_used_bytes": 8000000000},
  {"name": "NVIDIA L4", "memory_total_bytes": 24000000000, "utilization_gpu_percent": 60, "memory_used_bytes": 8000000000},
  {"name": "NVIDIA L4", "memory_total_bytes": 24000000000, "utilization_gpu_percent": 60, "memory_used_bytes": 8000000000}
]}"#;

/// kube-state-metrics: pod ml/chat-0 runs on node-a and holds all 4 GPUs.
const KSM: &str = "\
# TYPE kube_pod_container_resource_requests gauge
kube_pod_container_resource_requests{namespace=\"ml\",pod=\"chat-0\",container=\"srv\",node=\"node-a\",resource=\"nvidia_com_gpu\",unit=\"integer\"} 4
# TYPE kube_pod_status_phase gauge
kube_pod_status_phase{namespace=\"ml\",pod=\"chat-0\",phase=\"Running\"} 1
kube_pod_status_phase{namespace=\"ml\",pod=\"chat-0\",phase=\"Pending\"} 0
# TYPE kube_node_status_allocatable gauge
kube_node_status_allocatable{node=\"node-a\",resource=\"nvidia_com_gpu\",unit=\"integer\"} 4
";

struct Setup {
    _scratch: Scratch,
    _exporter: Proc,
    _ksm: StubServer,
    prometheus: Proc,
    _alertmanager: Proc,
    hook: StubServer,
}

fn setup(name: &str, daily_budget: f64) -> Setup {
    let scratch = Scratch::new(name);
    // Rules: the shipped ones, with test-speed durations and this scenario's budget.
    let mut inputs = Inputs::load(&root().join("rules")).unwrap();
    for (_, v) in inputs.config["alert_for"].as_object_mut().unwrap() {
        *v = "0s".into();
    }
    inputs.config["cost"]["spend_step"] = "1s".into();
    inputs.config["cost"]["spend_month_step"] = "1h".into();
    inputs.budgets = serde_json::json!({
        "namespaces": [{"namespace": "ml", "daily_dollars": daily_budget}]
    });
    let mut rule_files = Vec::new();
    for (file, content) in rulegen::generate(&inputs).unwrap() {
        let path = scratch.path(&file);
        std::fs::write(&path, content).unwrap();
        rule_files.push(format!("'{}'", path.display()));
    }

    let hook = StubServer::start("");
    let am_config = format!(
        "route:\n  receiver: hook\n  group_by: ['alertname', 'namespace']\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      \
         - url: 'http://{}/hook'\n        send_resolved: false\n",
        hook.addr
    );
    let alertmanager = start_alertmanager(&scratch, &am_config);

    let scenario = scratch.path("scenario.json");
    write_atomic(&scenario, SCENARIO);
    let exporter = start_exporter(&scratch, Some(&scenario), &["--collect-interval", "200ms"]);
    let ksm = StubServer::start(KSM);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{}]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: gpuscale-exporter\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n  \
         - job_name: kube-state-metrics\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
        rule_files.join(", "),
        alertmanager.addr,
        exporter.addr,
        ksm.addr
    );
    let prometheus = start_prometheus(&scratch, &config, &[]);
    // The cost chain is live once the namespace's spend is recorded.
    let ok = wait_until(Duration::from_secs(30), || {
        !prom_query(
            prometheus.addr,
            "namespace:gpu_spend_dollars:1d{namespace=\"ml\"} > 0",
        )
        .is_empty()
    });
    assert!(
        ok,
        "no spend recorded for namespace ml; cost per pod: {:?}; prometheus log:\n{}",
        prom_query(
            prometheus.addr,
            "namespace_workload_pod:gpu_cost_dollars_per_hour:sum"
        ),
        prometheus.log_text()
    );
    Setup {
        _scratch: scratch,
        _exporter: exporter,
        _ksm: ksm,
        prometheus,
        _alertmanager: alertmanager,
        hook,
    }
}

/// Alerts delivered to the webhook so far (Alertmanager's webhook JSON, flattened).
fn delivered(hook: &StubServer) -> Vec<serde_json::Value> {
    hook.posts()
        .iter()
        .flat_map(|body| {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["alerts"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

#[test]
fn overspend_delivers_the_budget_alert_through_alertmanager() {
    let s = setup("alerts-overspend", 0.0001);
    // 4 L4 GPUs on-demand: 4 x 0.805 $/h for namespace ml.
    let cost = prom_query(
        s.prometheus.addr,
        "namespace:gpu_cost_dollars_per_hour:sum{namespace=\"ml\"}",
    );
    assert_eq!(cost[0]["value"][1], "3.22", "{cost:?}");
    let ok = wait_until(Duration::from_secs(40), || {
        delivered(&s.hook)
            .iter()
            .any(|a| a["labels"]["alertname"] == "GpuNamespaceOverBudget")
    });
    assert!(
        ok,
        "GpuNamespaceOverBudget never reached the webhook; delivered: {:?}; ALERTS: {:?}",
        delivered(&s.hook),
        prom_query(s.prometheus.addr, "ALERTS")
    );
    let alerts = delivered(&s.hook);
    let a = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "GpuNamespaceOverBudget")
        .unwrap();
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["namespace"], "ml");
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(a["labels"]["category"], "cost");
    assert_eq!(
        a["annotations"]["summary"],
        "Namespace ml spent more on GPUs over the last day than its budget."
    );
    let description = a["annotations"]["description"].as_str().unwrap();
    assert!(
        description.starts_with("GPU spend of namespace ml over the last 24 h is $0.0"),
        "{description}"
    );
    assert!(
        a["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("/docs/runbooks/GpuNamespaceOverBudget.md")
    );
    // Only cost alerts about ml: the healthy GPUs raise nothing else.
    for a in &alerts {
        assert_eq!(a["labels"]["category"], "cost", "unexpected alert {a}");
    }
}

#[test]
fn normal_spend_delivers_nothing() {
    let s = setup("alerts-normal", 1_000_000.0);
    // Rules and alerts have been evaluated for a while: give any alert time to travel.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        prom_query(s.prometheus.addr, "ALERTS").is_empty(),
        "alerts in a healthy, within-budget cluster: {:?}",
        prom_query(s.prometheus.addr, "ALERTS")
    );
    assert!(
        delivered(&s.hook).is_empty(),
        "Alertmanager delivered: {:?}",
        delivered(&s.hook)
    );
}
