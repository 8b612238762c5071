//! The exporter against the real Prometheus toolchain: a Prometheus 2.42 server scrapes it and
//! its query API returns the readings; `promtool check metrics` lints the exposition; Python's
//! `prometheus_client` parsers give a second opinion on both formats.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;
use std::time::Duration;

use gpuscale_tests::*;

#[test]
fn prometheus_scrapes_the_exporter_and_answers_queries() {
    let scratch = Scratch::new("prom-scrape");
    let file = scratch.path("scenario.json");
    write_atomic(
        &file,
        r#"{"gpus": [
            {"uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000", "name": "NVIDIA L4",
             "memory_total_bytes": 24000000000, "memory_used_bytes": 6000000000,
             "utilization_gpu_percent": 37, "power_usage_watts": 55.5},
            {"uuid": "GPU-bbbbbbbb-0000-0000-0000-000000000000", "name": "NVIDIA L4",
             "memory_total_bytes": 24000000000, "utilization_gpu_percent": 81,
             "unsupported": ["power"]}
        ]}"#,
    );
    let exporter = start_exporter(&scratch, Some(&file), &["--collect-interval", "200ms"]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: gpuscale\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
        exporter.addr
    );
    let prom = start_prometheus(&scratch, &config, &[]);
    let ok = wait_until(Duration::from_secs(30), || {
        prom_query(prom.addr, "gpu_utilization_ratio").len() == 2
    });
    assert!(
        ok,
        "prometheus never stored the exporter's series:\n{}",
        prom.log_text()
    );

    let up = prom_query(prom.addr, "up{job=\"gpuscale\"}");
    assert_eq!(up[0]["value"][1], "1");
    let r = prom_query(
        prom.addr,
        "gpu_utilization_ratio{uuid=\"GPU-aaaaaaaa-0000-0000-0000-000000000000\"}",
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["value"][1], "0.37");
    assert_eq!(r[0]["metric"]["model"], "NVIDIA L4");
    assert_eq!(r[0]["metric"]["node"], "node-a");
    assert_eq!(r[0]["metric"]["gpu"], "0");
    // Absent stays absent through Prometheus: only GPU 0 reports power.
    let power = prom_query(prom.addr, "gpu_power_usage_watts");
    assert_eq!(power.len(), 1);
    assert_eq!(power[0]["value"][1], "55.5");
    let mem = prom_query(prom.addr, "sum(gpu_memory_total_bytes)");
    assert_eq!(mem[0]["value"][1], "48000000000");
    // Counters keep their OpenMetrics `_total` name in storage.
    assert_eq!(
        prom_query(prom.addr, "gpuscale_exporter_collections_total").len(),
        1
    );
    assert_eq!(
        prom_query(prom.addr, "gpuscale_exporter_nvml_up")[0]["value"][1],
        "1"
    );
    // The scrape was OpenMetrics (Prometheus asks for it).
    let targets = http_get(prom.addr, "/api/v1/targets", None).unwrap();
    assert!(
        targets.body.contains("\"health\":\"up\""),
        "{}",
        targets.body
    );
}

#[test]
fn promtool_check_metrics_is_clean() {
    let scratch = Scratch::new("promtool");
    let exporter = start_exporter(&scratch, None, &["--collect-interval", "200ms"]);
    // promtool reads the classic text format, which is what a client without an Accept
    // header gets.
    let text = http_get(exporter.addr, "/metrics", None).unwrap().body;
    assert!(text.contains("gpu_utilization_ratio{"));
    let (ok, out) = promtool_check(&text);
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n---\n{text}"
    );

    // The check can fail: a counter without `_total` is flagged.
    let (ok, out) =
        promtool_check("# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n");
    assert!(!ok, "{out}");
}

#[test]
fn python_prometheus_client_parses_both_formats() {
    let scratch = Scratch::new("python-parse");
    let exporter = start_exporter(
        &scratch,
        None,
        &["--collect-interval", "200ms", "--metric-names", "both"],
    );
    let om = http_get(
        exporter.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .unwrap()
    .body;
    let text = http_get(exporter.addr, "/metrics", None).unwrap().body;
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse
om = open(sys.argv[1]).read()
text = open(sys.argv[2]).read()
om_fams = {f.name: f for f in om_parse(om)}
text_fams = {f.name: f for f in text_parse(text)}
assert om_fams['gpu_energy_consumption_joules'].type == 'counter', om_fams['gpu_energy_consumption_joules'].type
assert len(om_fams['gpu_utilization_ratio'].samples) == 4
om_samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for f in om_fams.values() for s in f.samples)
text_samples = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for f in text_fams.values() for s in f.samples)
# Both formats carry the same samples (the collection cycle may differ between the two
# requests, so compare names and labels, not values).
assert [x[:2] for x in om_samples] == [x[:2] for x in text_samples], set(x[:2] for x in om_samples) ^ set(x[:2] for x in text_samples)
print(len(om_samples))
"#;
    let om_file = scratch.path("om.txt");
    let text_file = scratch.path("text.txt");
    std::fs::write(&om_file, &om).unwrap();
    std::fs::write(&text_file, &text).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&om_file)
        .arg(&text_file)
        .output()
        .expect("python3 is needed");
    assert!(
        out.status.success(),
        "python prometheus_client rejected the exposition (pip install prometheus-client if missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(count > 50, "{count}");
}
