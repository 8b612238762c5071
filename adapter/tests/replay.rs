//! `gpuscale-adapter replay` end to end (issue 7): the built binary, a real Prometheus and
//! promtool (backfill + rule evaluation), the forecast rules, and report numbers checked
//! against a case computed by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures/replay")
        .join(name)
        .display()
        .to_string()
}

fn replay(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_gpuscale-adapter"))
        .arg("replay")
        .args(args)
        .arg("--json")
        .output()
        .expect("run gpuscale-adapter replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON report")
}

fn outcome<'a>(report: &'a Value, policy: &str) -> &'a Value {
    report["report"]["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o["policy"] == policy)
        .unwrap_or_else(|| panic!("no {policy} row"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn accuracy(report: &Value, forecaster: &str, minutes: f64) -> Value {
    report["forecast_accuracy"]["rows"]
        .as_array()
        .expect("accuracy rows")
        .iter()
        .find(|r| r["forecaster"] == forecaster && r["horizon_minutes"].as_f64() == Some(minutes))
        .cloned()
        .unwrap_or_else(|| panic!("no {forecaster} at {minutes} m"))
}

/// Issue 7 "How it is checked": a short trace through a real (backfilled) Prometheus, the
/// report's numbers against a hand-computed case.
///
/// Demand d = 8 + k·7/128 at tick k (5 s), one replica serves 8, target 8 in flight per
/// replica (AverageValue), 1-GPU nodes, lead time 120 s, pod start 30 s, $2/GPU-hour.
///
/// Reactive on concurrency, replica r → r+1:
/// - unmet from the first tick with d > 8r: k_s = floor(1024(r−1)/7) + 1 = 1, 147, 293, 439, 586;
/// - the HPA acts at the first sync (k multiple of 3) with d/(8r) > 1.1 (tolerance), i.e.
///   k > (8.8r − 8)·128/7 = 14.6, 175.5, 336.5, 497.4, 658.3 → k_c = 15, 177, 339, 498, 660;
/// - that pod is ready 150 s (30 ticks) later: unmet ticks k_c + 30 − k_s = 44, 60, 76, 89, 104
///   = 373 ticks = 1,865 s = 31.083 min; 5 scale events, 5 nodes;
/// - GPU-seconds: node 1 for 3,600 s, node r+1 from 5·k_c: 3600 + 3525 + 2715 + 1905 + 1110 + 300
///   = 13,155 s = 3.6542 GPU-h, $7.3083;
/// - largest backlog: d − 40 at k = 689: 4823/128 − 32 = 5.6797.
///
/// Forecast (the rules' max of current, predict_linear and the trend of the holt_winters
/// smoothing; exact on a line): d(t + 600) = d + 6.5625, replicas ceil((d + 6.5625)/8).
/// Replica r+1 is asked for about 600 s before d reaches 8r, ahead of the 150 s it takes,
/// so the only unmet demand is at the start, before predict_linear has two samples: from
/// k = 1 to 30 ticks after the first forecast sync. Five rule levels each add < 15 s of
/// evaluation lag, plus < 15 s to the next sync: that sync is at k = 3..18, so unmet is
/// 160..235 s. Nodes launch at most 90 s after the lag-free times 15, 135, 870, 1605, 2340,
/// 3060 s: GPU-seconds within [17175 − 6·90, 17175].
#[test]
fn ramp_matches_hand_computed_case() {
    let r = replay(&[
        "--trace",
        &fixture("ramp.csv"),
        "--rules",
        &repo().join("rules").display().to_string(),
        "--replica-capacity",
        "8",
        "--target-in-flight",
        "8",
        "--gpus-per-node",
        "1",
        "--node-lead-time",
        "120",
        "--pod-start-time",
        "30",
        "--price",
        "2",
    ]);
    let reactive = outcome(&r, "reactive-concurrency");
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(
        close(num(reactive, "unmet_demand_minutes"), 1865.0 / 60.0),
        "{reactive}"
    );
    assert!(
        close(num(reactive, "gpu_hours"), 13155.0 / 3600.0),
        "{reactive}"
    );
    assert!(close(num(reactive, "dollars"), 2.0 * 13155.0 / 3600.0));
    assert!(close(num(reactive, "queue_peak"), 4823.0 / 128.0 - 32.0));
    assert_eq!(reactive["scale_events"], 5);
    assert_eq!(reactive["nodes_added"], 5);

    for policy in ["forecast", "forecast+prewarm"] {
        let f = outcome(&r, policy);
        let unmet = num(f, "unmet_demand_minutes") * 60.0;
        assert!((160.0..=235.0).contains(&unmet), "{policy}: {f}");
        let gpu_seconds = num(f, "gpu_hours") * 3600.0;
        assert!(
            (17175.0 - 540.0 - 1e-6..=17175.0 + 1e-6).contains(&gpu_seconds),
            "{policy}: {f}"
        );
    }

    // Reactive HPA + placeholders on the forecast (issue 6): nodes are warm, so each step
    // waits only for the tolerance, the sync and the pod start: k_c + 6 − k_s ticks = 20,
    // 36, 52, 65, 80. The first step can still wait for its node (the forecast needs two
    // samples first): 20..44 ticks. Total 1,265..1,385 s.
    let prewarm = outcome(&r, "reactive+prewarm");
    let unmet = num(prewarm, "unmet_demand_minutes") * 60.0;
    assert!((1265.0..=1385.0).contains(&unmet), "{prewarm}");

    // Accuracy: the rules' forecast is (nearly) exact on a line, the last value is always
    // 6.5625 short at 10 minutes.
    let rules10 = accuracy(&r, "rules forecast", 10.0);
    assert!(num(&rules10, "relative_mae") < 0.03, "{rules10}");
    let last10 = accuracy(&r, "last value", 10.0);
    assert_eq!(num(&last10, "under_forecast_share"), 1.0);
    assert!(
        (0.20..0.23).contains(&num(&last10, "relative_mae")),
        "{last10}"
    );
    assert!(
        r["report"]["forecast_source"]
            .as_str()
            .is_some_and(|s| s.contains("promtool create-blocks-from rules")),
        "{}",
        r["report"]["forecast_source"]
    );
}

/// A cut of the real NAB ELB trace through the rules: every policy row is finite, the
/// seasonal look-ahead has a day of history to read, and --plot writes a PNG.
#[test]
fn real_trace_through_rules_with_plot() {
    let dir = std::env::temp_dir().join(format!("gpuscale-replay-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let png = dir.join("replay.png");
    let r = replay(&[
        "--trace",
        &fixture("nab_elb_request_count_8c0756_head.csv"),
        "--rules",
        &repo().join("rules").display().to_string(),
        "--peak",
        "80",
        "--eval-interval",
        "60",
        "--scrape-interval",
        "60",
        "--plot",
        png.to_str().expect("utf-8 path"),
    ]);
    let outcomes = r["report"]["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 5);
    for o in outcomes {
        for key in ["unmet_demand_minutes", "gpu_hours", "dollars", "queue_p95"] {
            let v = num(o, key);
            assert!(v.is_finite() && v >= 0.0, "{key} in {o}");
        }
    }
    let bytes = std::fs::read(&png).expect("plot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Azure per-request format, reactive only (`--rules none`): requests become
/// concurrency, the warm-up (requests that started before the trace) is skipped, and the
/// text table names every assumption.
#[test]
fn azure_requests_reactive_only() {
    let r = replay(&[
        "--trace",
        &fixture("azure_llm_conv_2023_head.csv"),
        "--rules",
        "none",
    ]);
    let outcomes = r["report"]["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 2);
    assert!(r["forecast_accuracy"].is_null());
    let peak = num(&r["report"], "peak_demand");
    assert!(peak > 5.0 && peak < 500.0, "{peak}");
    let out = Command::new(env!("CARGO_BIN_EXE_gpuscale-adapter"))
        .args(["replay", "--rules", "none", "--trace"])
        .arg(fixture("azure_llm_conv_2023_head.csv"))
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "lead time 120 s",
        "unmet min",
        "reactive-concurrency",
        "forecast: none",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}
