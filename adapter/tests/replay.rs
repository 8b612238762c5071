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
/// Demand d = 5.5 + k/7 at tick k (5 s), k = 0..360 (1,800 s). One replica serves 10 (the
/// rules' capacity.max_in_flight_per_replica), the HPA targets 8 in flight per replica
/// (AverageValue), 1-GPU nodes, lead time 120 s, pod start 30 s, $2/GPU-hour.
///
/// Reactive on concurrency, replica r → r+1:
/// - the HPA acts at the first sync (k multiple of 3) with d/(8r) > 1.1 (tolerance), i.e.
///   k > 61.6r − 38.5 = 23.1, 84.7, 146.3, 207.9, 269.5, 331.1 → k_c = 24, 87, 147, 210,
///   270, 333, each time asking ceil(d/8) = r + 1; that pod is ready 30 ticks later;
/// - unmet from the first tick with d > 10r: k > 70r − 38.5 → k_s = 32, 102, 172, 242, 312;
///   ready at k_c + 30 = 54, 117, 177, 240, 300: unmet ticks 22 + 15 + 5 = 42 = 210 s;
/// - 6 scale events, 6 nodes; GPU-seconds, every node billed to the end of the last tick
///   (1,805 s): node 1 from 0, node r+1 from 5·k_c: 1805 + 1685 + 1370 + 1070 + 755 + 455
///   + 140 = 7,280 s = 2.0222 GPU-h, $4.0444;
/// - largest backlog: d − 10 at k = 53: 53/7 − 4.5.
///
/// Forecast (current + the trend over 3 minutes, exact on a line: d + 180/35 = d + 5.1429;
/// replicas ceil(forecast/10)): it asks for r+1 once d(t − L) > 10r − 5.1429, where L < 45 s
/// (9 ticks) is the age of the data (scrape, two rule-group hops), i.e. k > 70r − 74.5 +
/// L/5, or with the reactive metric if that comes first:
/// - r = 1 at once, but only from the first sync with a trend (two copied samples, from
///   k = 3) plus the lag: k = 3..15; the pod is ready by k = 33..45, after d > 10 at k = 32:
///   1..13 ticks unmet;
/// - r = 2..4 at k = 66..75, 136..145, 206..210: ready before k_s at most 3 + 5 + 0 ticks
///   late; r = 5, 6 with the reactive metric (k = 270, 333), in time as above;
/// - unmet 1..21 ticks = 5..105 s (reactive: 210 s); GPU-seconds with nodes from k = 3..15,
///   66..75, 136..145, 206..210, 270, 333: 7,395..7,565 s.
#[test]
fn ramp_matches_hand_computed_case() {
    let r = replay(&[
        "--trace",
        &fixture("ramp.csv"),
        "--rules",
        &repo().join("rules").display().to_string(),
        "--replica-capacity",
        "10",
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
        close(num(reactive, "unmet_demand_minutes"), 210.0 / 60.0),
        "{reactive}"
    );
    assert!(
        close(num(reactive, "gpu_hours"), 7280.0 / 3600.0),
        "{reactive}"
    );
    assert!(close(num(reactive, "dollars"), 2.0 * 7280.0 / 3600.0));
    assert!(
        (num(reactive, "queue_peak") - (53.0 / 7.0 - 4.5)).abs() < 1e-6,
        "{reactive}"
    );
    assert_eq!(reactive["scale_events"], 6);
    assert_eq!(reactive["nodes_added"], 6);

    let forecast = outcome(&r, "forecast");
    let unmet = num(forecast, "unmet_demand_minutes") * 60.0;
    assert!((5.0..=105.0).contains(&unmet), "forecast: {forecast}");
    let gpu_seconds = num(forecast, "gpu_hours") * 3600.0;
    assert!(
        (7395.0 - 1e-6..=7565.0 + 1e-6).contains(&gpu_seconds),
        "forecast: {forecast}"
    );
    // The HPA follows the forecast replicas exactly (no tolerance holds an integer change
    // back below 10 replicas), so placeholders (forecast − replicas) stay at 0.
    let with_prewarm = outcome(&r, "forecast+prewarm");
    for key in ["unmet_demand_minutes", "gpu_hours", "scale_events"] {
        assert_eq!(with_prewarm[key], forecast[key], "{key}: {with_prewarm}");
    }

    // Reactive HPA + placeholders on the forecast (issue 6): the placeholder for replica 2
    // asks for a node at k = 3..15 (as above); the real pod, asked for at k = 24, takes
    // that node when it is ready (k ≤ 39) and is ready 6 ticks later: at most k = 45, 13
    // ticks after d > 10. Later steps find warm nodes (k_c + 6 < k_s): 0..65 s unmet.
    let prewarm = outcome(&r, "reactive+prewarm");
    let unmet = num(prewarm, "unmet_demand_minutes") * 60.0;
    assert!((0.0..=65.0).contains(&unmet), "{prewarm}");

    // Accuracy at the rules' own horizon (3 minutes): the forecast is (nearly) exact on a
    // line, the last value is always 5.1429 short.
    assert_eq!(r["forecast_accuracy"]["rules_horizon_seconds"], 180.0);
    let rules3 = accuracy(&r, "rules forecast", 3.0);
    assert!(num(&rules3, "relative_mae") < 0.03, "{rules3}");
    let last3 = accuracy(&r, "last value", 3.0);
    assert_eq!(num(&last3, "under_forecast_share"), 1.0, "{last3}");
    // 5.1429 over a mean actual of 8.1..56.9 (about 32.5): 0.14..0.18.
    assert!(
        (0.14..0.18).contains(&num(&last3, "relative_mae")),
        "{last3}"
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

/// `--forecast-file`: a forecast made elsewhere, replayed as is. On the ramp above, a flat
/// forecast of 6 replicas (a point every minute): at the first sync the HPA goes 1 → 5
/// (default scale-up limit: max(100 %, 4 pods) per 15 s), then 6 at k = 3; the reactive
/// metric adds the 7th at k = 333 as before. Five nodes launch at k = 0 and 3, so every
/// replica is ready (k = 30, 33) before d > 10 (k = 32) and d > 50 (k = 312): no unmet
/// demand; GPU-seconds 5·1805 + 1790 + 140 = 10,955; 3 scale events, 6 nodes.
#[test]
fn forecast_file_is_replayed_as_given() {
    let dir = std::env::temp_dir().join(format!("gpuscale-replay-ff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("forecast.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..=30 {
        csv.push_str(&format!("{},6\n", 1_700_000_000 + 60 * i));
    }
    std::fs::write(&file, csv).expect("write forecast");
    let args = |f: &Path| {
        vec![
            "--trace".to_string(),
            fixture("ramp.csv"),
            "--forecast-file".to_string(),
            f.display().to_string(),
            "--replica-capacity".to_string(),
            "10".to_string(),
            "--price".to_string(),
            "2".to_string(),
        ]
    };
    let a = args(&file);
    let r = replay(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let f = outcome(&r, "forecast");
    assert_eq!(num(f, "unmet_demand_minutes"), 0.0, "{f}");
    assert!((num(f, "gpu_hours") * 3600.0 - 10955.0).abs() < 1e-6, "{f}");
    assert_eq!(f["scale_events"], 3, "{f}");
    assert_eq!(f["nodes_added"], 6, "{f}");
    assert!(r["forecast_accuracy"].is_null());
    assert!(
        r["report"]["forecast_source"]
            .as_str()
            .is_some_and(|s| s.contains("forecast.csv")),
        "{}",
        r["report"]["forecast_source"]
    );

    // A forecast that misses the trace's time range is an error that says so.
    std::fs::write(&file, "timestamp,value\n1,2\n").expect("write forecast");
    let out = Command::new(env!("CARGO_BIN_EXE_gpuscale-adapter"))
        .arg("replay")
        .args(args(&file))
        .output()
        .expect("run replay");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no forecast point falls within the trace (1700000000..1700001800"),
        "{err}"
    );
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
