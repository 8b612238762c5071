//! The real exporter binary on the NVML stand-in: every series and label, the failure cases
//! (unsupported field, lost GPU, no library, driver coming back), XID counting, MIG, the
//! dcgm-compatible names, and values moving mid-run.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use gpuscale_tests::*;
use serde_json::json;

const H100: &str = "NVIDIA H100 80GB HBM3";

fn gpu(i: u32, extra: serde_json::Value) -> serde_json::Value {
    let mut g = json!({
        "uuid": format!("GPU-0000000{i}-aaaa-bbbb-cccc-00000000000{i}"),
        "name": H100,
        "pci_bus_id": format!("00000000:1{i}:00.0"),
        "minor_number": i,
        "memory_total_bytes": 85_899_345_920u64,
        "utilization_gpu_percent": 42,
        "utilization_memory_percent": 17,
        "memory_used_bytes": 10_737_418_240u64,
        "power_usage_watts": 312.5,
        "power_limit_watts": 700,
        "energy_joules": 123_456.789,
        "temperature_celsius": 61,
        "sm_clock_mhz": 1980,
        "memory_clock_mhz": 2619,
        "encoder_utilization_percent": 3,
        "decoder_utilization_percent": 5,
        "throttle_reasons": ["sw_power_cap", "hw_thermal_slowdown"],
        "ecc_corrected_total": 7,
        "ecc_uncorrected_total": 1,
        "pcie_replay_total": 9
    });
    if let (Some(obj), Some(more)) = (g.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    g
}

fn scenario(gpus: Vec<serde_json::Value>) -> String {
    serde_json::to_string_pretty(&json!({
        "driver_version": "550.54.15",
        "cuda_driver_version": 12040,
        "gpus": gpus
    }))
    .unwrap()
}

fn uuid(i: u32) -> String {
    format!("GPU-0000000{i}-aaaa-bbbb-cccc-00000000000{i}")
}

#[test]
fn every_series_and_label_from_a_scenario() {
    let scratch = Scratch::new("all-series");
    let file = scratch.path("scenario.json");
    write_atomic(
        &file,
        &scenario(vec![
            gpu(0, json!({})),
            gpu(1, json!({"utilization_gpu_percent": 88})),
        ]),
    );
    let exporter = start_exporter(&scratch, Some(&file), &["--collect-interval", "200ms"]);
    let s = scrape(exporter.addr);
    let u0 = uuid(0);
    let g0 = [
        ("node", "node-a"),
        ("gpu", "0"),
        ("uuid", u0.as_str()),
        ("model", H100),
    ];

    let info = find(&s, "gpu_info", &g0);
    assert_eq!(info.len(), 1);
    let l = &info[0].labels;
    assert_eq!(l["driver_version"], "550.54.15");
    assert_eq!(l["cuda_version"], "12.4");
    assert_eq!(l["pci_bus_id"], "00000000:10:00.0");
    assert_eq!(l["mig_mode"], "disabled");

    assert_eq!(value(&s, "gpu_up", &g0), 1.0);
    assert_eq!(value(&s, "gpu_utilization_ratio", &g0), 0.42);
    assert_eq!(value(&s, "gpu_utilization_ratio", &[("gpu", "1")]), 0.88);
    assert_eq!(value(&s, "gpu_memory_copy_utilization_ratio", &g0), 0.17);
    assert_eq!(value(&s, "gpu_memory_used_bytes", &g0), 10_737_418_240.0);
    assert_eq!(value(&s, "gpu_memory_total_bytes", &g0), 85_899_345_920.0);
    assert_eq!(value(&s, "gpu_power_usage_watts", &g0), 312.5);
    assert_eq!(value(&s, "gpu_power_limit_watts", &g0), 700.0);
    assert!((value(&s, "gpu_energy_consumption_joules_total", &g0) - 123_456.789).abs() < 0.001);
    assert_eq!(value(&s, "gpu_temperature_celsius", &g0), 61.0);
    assert_eq!(value(&s, "gpu_sm_clock_hertz", &g0), 1.98e9);
    assert_eq!(value(&s, "gpu_memory_clock_hertz", &g0), 2.619e9);
    assert_eq!(value(&s, "gpu_encoder_utilization_ratio", &g0), 0.03);
    assert_eq!(value(&s, "gpu_decoder_utilization_ratio", &g0), 0.05);
    for (reason, expect) in [
        ("gpu_idle", 0.0),
        ("applications_clocks_setting", 0.0),
        ("sw_power_cap", 1.0),
        ("hw_slowdown", 0.0),
        ("sync_boost", 0.0),
        ("sw_thermal_slowdown", 0.0),
        ("hw_thermal_slowdown", 1.0),
        ("hw_power_brake_slowdown", 0.0),
        ("display_clock_setting", 0.0),
    ] {
        let mut with = g0.to_vec();
        with.push(("reason", reason));
        assert_eq!(
            value(&s, "gpu_clock_throttle_active", &with),
            expect,
            "{reason}"
        );
    }
    assert_eq!(find(&s, "gpu_clock_throttle_active", &g0).len(), 9);
    let mut c = g0.to_vec();
    c.push(("type", "corrected"));
    assert_eq!(value(&s, "gpu_ecc_errors_total", &c), 7.0);
    let mut u = g0.to_vec();
    u.push(("type", "uncorrected"));
    assert_eq!(value(&s, "gpu_ecc_errors_total", &u), 1.0);
    assert_eq!(value(&s, "gpu_pcie_replay_total", &g0), 9.0);
    assert_eq!(value(&s, "gpu_xid_events_total", &g0), 0.0);
    assert!(find(&s, "gpu_xid_errors_total", &g0).is_empty());

    // The exporter's own health.
    let n = [("node", "node-a")];
    assert_eq!(value(&s, "gpuscale_exporter_nvml_up", &n), 1.0);
    assert_eq!(value(&s, "gpuscale_exporter_gpus", &n), 2.0);
    let d = value(&s, "gpuscale_exporter_collection_duration_seconds", &n);
    assert!(d > 0.0 && d < 1.0, "{d}");
    let last = value(
        &s,
        "gpuscale_exporter_last_collection_success_timestamp_seconds",
        &n,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last).abs() < 10.0, "{now} vs {last}");
    assert!(value(&s, "gpuscale_exporter_collections_total", &n) >= 1.0);
    assert!(
        find(&s, "gpuscale_exporter_collection_errors_total", &[]).is_empty(),
        "no errors expected: {s:?}"
    );

    // Every GPU series carries the four identity labels.
    for sample in s.iter().filter(|x| x.name.starts_with("gpu_")) {
        for key in ["node", "gpu", "uuid", "model"] {
            assert!(sample.labels.contains_key(key), "{sample:?} lacks {key}");
        }
    }
}

#[test]
fn the_default_standin_node_has_four_gpus() {
    let scratch = Scratch::new("default-node");
    let exporter = start_exporter(&scratch, None, &["--collect-interval", "200ms"]);
    let s = scrape(exporter.addr);
    assert_eq!(find(&s, "gpu_up", &[("node", "node-a")]).len(), 4);
    for gpu in ["0", "1", "2", "3"] {
        let u = value(&s, "gpu_utilization_ratio", &[("gpu", gpu)]);
        assert!((0.0..=1.0).contains(&u), "{u}");
        assert!(value(&s, "gpu_memory_total_bytes", &[("gpu", gpu)]) > 0.0);
    }
}

#[test]
fn unsupported_field_is_absent_and_logged_once() {
    let scratch = Scratch::new("unsupported");
    let file = scratch.path("scenario.json");
    write_atomic(
        &file,
        &scenario(vec![
            gpu(
                0,
                json!({"unsupported": ["encoder_utilization", "ecc", "power_limit"]}),
            ),
            gpu(1, json!({})),
        ]),
    );
    let exporter = start_exporter(&scratch, Some(&file), &["--collect-interval", "100ms"]);
    std::thread::sleep(Duration::from_millis(600)); // several cycles
    let s = scrape(exporter.addr);
    let g0 = [("gpu", "0")];
    assert!(find(&s, "gpu_encoder_utilization_ratio", &g0).is_empty());
    assert!(find(&s, "gpu_ecc_errors_total", &g0).is_empty());
    assert!(find(&s, "gpu_power_limit_watts", &g0).is_empty());
    // Other fields of the same GPU and the same fields of the other GPU still report.
    assert_eq!(value(&s, "gpu_decoder_utilization_ratio", &g0), 0.05);
    assert_eq!(
        value(&s, "gpu_encoder_utilization_ratio", &[("gpu", "1")]),
        0.03
    );
    assert_eq!(find(&s, "gpu_ecc_errors_total", &[("gpu", "1")]).len(), 2);
    // Unsupported is not an error.
    assert!(find(&s, "gpuscale_exporter_collection_errors_total", &[]).is_empty());
    let log = exporter.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("not supported") && l.contains("encoder_utilization"))
        .count();
    assert_eq!(lines, 1, "logged once, not per cycle:\n{log}");
}

#[test]
fn lost_gpu_reports_down_while_others_keep_reporting() {
    let scratch = Scratch::new("lost");
    let file = scratch.path("scenario.json");
    write_atomic(
        &file,
        &scenario(vec![
            gpu(0, json!({})),
            gpu(1, json!({"lost_at_seconds": 1.0})),
        ]),
    );
    let exporter = start_exporter(&scratch, Some(&file), &["--collect-interval", "100ms"]);
    let lost = wait_until(Duration::from_secs(10), || {
        let s = scrape(exporter.addr);
        find(&s, "gpu_up", &[("gpu", "1")]).first().map(|x| x.value) == Some(0.0)
    });
    assert!(lost, "GPU 1 never reported gpu_up 0");
    let s = scrape(exporter.addr);
    let u1 = uuid(1);
    // The lost GPU keeps its identity labels, and its readings are absent.
    assert_eq!(
        value(
            &s,
            "gpu_up",
            &[("gpu", "1"), ("uuid", u1.as_str()), ("model", H100)]
        ),
        0.0
    );
    assert!(find(&s, "gpu_utilization_ratio", &[("gpu", "1")]).is_empty());
    assert!(find(&s, "gpu_memory_used_bytes", &[("gpu", "1")]).is_empty());
    // GPU 0 and NVML itself are fine.
    assert_eq!(value(&s, "gpu_up", &[("gpu", "0")]), 1.0);
    assert_eq!(value(&s, "gpu_utilization_ratio", &[("gpu", "0")]), 0.42);
    assert_eq!(value(&s, "gpuscale_exporter_nvml_up", &[]), 1.0);
    assert!(
        value(
            &s,
            "gpuscale_exporter_collection_errors_total",
            &[("field", "gpu_lost")]
        ) >= 1.0
    );
}

#[test]
fn xid_errors_are_counted_per_code_from_nvml_events() {
    let scratch = Scratch::new("xid");
    let file = scratch.path("scenario.json");
    let events = json!({"xid_events": [
        {"at_seconds": 0.5, "xid": 79},
        {"at_seconds": 0.7, "xid": 48},
        {"at_seconds": 0.9, "xid": 79}
    ]});
    write_atomic(&file, &scenario(vec![gpu(0, json!({})), gpu(1, events)]));
    let exporter = start_exporter(
        &scratch,
        Some(&file),
        &["--collect-interval", "100ms", "--metric-names", "both"],
    );
    let counted = wait_until(Duration::from_secs(10), || {
        let s = scrape(exporter.addr);
        find(&s, "gpu_xid_events_total", &[("gpu", "1")])
            .first()
            .map(|x| x.value)
            == Some(3.0)
    });
    assert!(counted, "three XID events never counted");
    std::thread::sleep(Duration::from_millis(400)); // later cycles must not count them again
    let s = scrape(exporter.addr);
    assert_eq!(
        value(&s, "gpu_xid_errors_total", &[("gpu", "1"), ("xid", "79")]),
        2.0
    );
    assert_eq!(
        value(&s, "gpu_xid_errors_total", &[("gpu", "1"), ("xid", "48")]),
        1.0
    );
    assert_eq!(value(&s, "gpu_xid_events_total", &[("gpu", "1")]), 3.0);
    assert_eq!(value(&s, "gpu_xid_events_total", &[("gpu", "0")]), 0.0);
    assert!(find(&s, "gpu_xid_errors_total", &[("gpu", "0")]).is_empty());
    // dcgm-exporter's field is the last XID code.
    assert_eq!(value(&s, "DCGM_FI_DEV_XID_ERRORS", &[("gpu", "1")]), 79.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_XID_ERRORS", &[("gpu", "0")]), 0.0);
}

#[test]
fn values_move_when_the_scenario_changes_mid_run() {
    let scratch = Scratch::new("midrun");
    let file = scratch.path("scenario.json");
    write_atomic(
        &file,
        &scenario(vec![gpu(0, json!({"utilization_gpu_percent": 10}))]),
    );
    let exporter = start_exporter(&scratch, Some(&file), &["--collect-interval", "100ms"]);
    assert_eq!(
        value(
            &scrape(exporter.addr),
            "gpu_utilization_ratio",
            &[("gpu", "0")]
        ),
        0.10
    );
    write_atomic(
        &file,
        &scenario(vec![gpu(0, json!({"utilization_gpu_percent": 93}))]),
    );
    let moved = wait_until(Duration::from_secs(5), || {
        find(
            &scrape(exporter.addr),
            "gpu_utilization_ratio",
            &[("gpu", "0")],
        )
        .first()
        .map(|x| x.value)
            == Some(0.93)
    });
    assert!(moved, "utilization did not follow the scenario change");
}

#[test]
fn values_follow_points_over_time() {
    let scratch = Scratch::new("points");
    let file = scratch.path("scenario.json");
    let util = json!({"points": [[0, 5], [1.5, 5], [1.6, 75]], "interpolate": "step"});
    write_atomic(
        &file,
        &scenario(vec![gpu(0, json!({"utilization_gpu_percent": util}))]),
    );
    let exporter = start_exporter(&scratch, Some(&file), &["--collect-interval", "100ms"]);
    let value_now = || {
        find(&scrape(exporter.addr), "gpu_utilization_ratio", &[])
            .first()
            .map(|x| x.value)
    };
    assert_eq!(value_now(), Some(0.05));
    assert!(wait_until(Duration::from_secs(6), || value_now() == Some(0.75)));
}

#[test]
fn missing_library_keeps_the_exporter_up_and_reports_nvml_down() {
    let scratch = Scratch::new("nolib");
    let missing = scratch.path("libnvidia-ml.so.1");
    let mut exporter = start_exporter_raw(
        &scratch,
        None,
        &[
            "--nvml-library".into(),
            missing.display().to_string(),
            "--collect-interval".into(),
            "100ms".into(),
            "--nvml-retry-max".into(),
            "200ms".into(),
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        exporter.is_running(),
        "must not exit: {}",
        exporter.log_text()
    );
    let s = scrape(exporter.addr);
    assert_eq!(
        value(&s, "gpuscale_exporter_nvml_up", &[("node", "node-a")]),
        0.0
    );
    assert_eq!(value(&s, "gpuscale_exporter_gpus", &[]), 0.0);
    assert!(find(&s, "gpu_up", &[]).is_empty());
    assert!(
        find(
            &s,
            "gpuscale_exporter_last_collection_success_timestamp_seconds",
            &[]
        )
        .is_empty()
    );
    let log = exporter.log_text();
    assert_eq!(
        log.matches("NVML unavailable").count(),
        1,
        "one clear line, not one per retry:\n{log}"
    );
    assert!(log.contains("cannot load the NVML library"), "{log}");
    // Health endpoints stay green: the process is fine, NVML is not.
    assert_eq!(
        http_get(exporter.addr, "/healthz", None).unwrap().status,
        200
    );

    // The library appears (driver installed later): picked up without a restart.
    std::fs::copy(standin_lib(), &missing).unwrap();
    let recovered = wait_until(Duration::from_secs(10), || {
        let s = scrape(exporter.addr);
        find(&s, "gpuscale_exporter_nvml_up", &[])
            .first()
            .map(|x| x.value)
            == Some(1.0)
            && find(&s, "gpu_up", &[]).len() == 4
    });
    assert!(recovered, "NVML never recovered: {}", exporter.log_text());
    assert!(exporter.log_text().contains("NVML initialised"));
}

#[test]
fn driver_not_loaded_then_loaded_recovers_without_restart() {
    let scratch = Scratch::new("driver");
    let file = scratch.path("scenario.json");
    let down = json!({"init_error": "driver_not_loaded", "gpus": [gpu(0, json!({}))]});
    write_atomic(&file, &down.to_string());
    let exporter = start_exporter(
        &scratch,
        Some(&file),
        &["--collect-interval", "100ms", "--nvml-retry-max", "200ms"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let s = scrape(exporter.addr);
    assert_eq!(value(&s, "gpuscale_exporter_nvml_up", &[]), 0.0);
    assert!(
        exporter.log_text().contains("driver is not loaded"),
        "{}",
        exporter.log_text()
    );
    write_atomic(&file, &scenario(vec![gpu(0, json!({}))]));
    let up = wait_until(Duration::from_secs(10), || {
        let s = scrape(exporter.addr);
        find(&s, "gpuscale_exporter_nvml_up", &[])
            .first()
            .map(|x| x.value)
            == Some(1.0)
            && find(&s, "gpu_utilization_ratio", &[("gpu", "0")])
                .first()
                .map(|x| x.value)
                == Some(0.42)
    });
    assert!(up, "{}", exporter.log_text());
}

#[test]
fn mig_instances_are_their_own_series() {
    let scratch = Scratch::new("mig");
    let file = scratch.path("scenario.json");
    let mig = json!({"mig": {"enabled": true, "instances": [
        {"uuid": "MIG-11111111-2222-3333-4444-555555555555", "profile": "3g.40gb", "gpu_instance_id": 1,
         "compute_instance_id": 0, "memory_total_bytes": 42_949_672_960u64, "memory_used_bytes": 1_073_741_824u64},
        {"uuid": "MIG-66666666-7777-8888-9999-000000000000", "profile": "1g.10gb", "gpu_instance_id": 9,
         "compute_instance_id": 0, "memory_total_bytes": 10_737_418_240u64, "memory_used_bytes": 0}
    ]}});
    write_atomic(&file, &scenario(vec![gpu(0, mig), gpu(1, json!({}))]));
    let exporter = start_exporter(
        &scratch,
        Some(&file),
        &["--collect-interval", "100ms", "--metric-names", "both"],
    );
    let s = scrape(exporter.addr);
    assert_eq!(
        find(&s, "gpu_info", &[("gpu", "0")])[0].labels["mig_mode"],
        "enabled"
    );
    assert_eq!(
        find(&s, "gpu_info", &[("gpu", "1")])[0].labels["mig_mode"],
        "disabled"
    );
    let infos = find(&s, "gpu_mig_info", &[("gpu", "0"), ("node", "node-a")]);
    assert_eq!(infos.len(), 2, "{infos:?}");
    let a = [
        ("mig_uuid", "MIG-11111111-2222-3333-4444-555555555555"),
        ("mig_profile", "3g.40gb"),
    ];
    assert_eq!(value(&s, "gpu_mig_memory_used_bytes", &a), 1_073_741_824.0);
    assert_eq!(
        value(&s, "gpu_mig_memory_total_bytes", &a),
        42_949_672_960.0
    );
    let b = [("mig_profile", "1g.10gb")];
    assert_eq!(value(&s, "gpu_mig_memory_used_bytes", &b), 0.0);
    assert!(find(&s, "gpu_mig_info", &[("gpu", "1")]).is_empty());
    // dcgm names: framebuffer per GPU instance with GPU_I_PROFILE.
    assert_eq!(
        value(&s, "DCGM_FI_DEV_FB_USED", &[("GPU_I_PROFILE", "3g.40gb")]),
        1024.0
    );
    assert_eq!(
        value(&s, "DCGM_FI_DEV_FB_TOTAL", &[("GPU_I_PROFILE", "1g.10gb")]),
        10240.0
    );
}

#[test]
fn dcgm_names_units_and_labels() {
    let scratch = Scratch::new("dcgm");
    let file = scratch.path("scenario.json");
    write_atomic(&file, &scenario(vec![gpu(0, json!({}))]));
    let exporter = start_exporter(
        &scratch,
        Some(&file),
        &["--collect-interval", "200ms", "--metric-names", "dcgm"],
    );
    let s = scrape(exporter.addr);
    let u0 = uuid(0);
    let l = [
        ("gpu", "0"),
        ("UUID", u0.as_str()),
        ("modelName", H100),
        ("Hostname", "node-a"),
        ("device", "nvidia0"),
        ("pci_bus_id", "00000000:10:00.0"),
        ("DCGM_FI_DRIVER_VERSION", "550.54.15"),
    ];
    assert_eq!(value(&s, "DCGM_FI_DEV_GPU_UTIL", &l), 42.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_MEM_COPY_UTIL", &l), 17.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_FB_USED", &l), 10240.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_FB_TOTAL", &l), 81920.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_FB_FREE", &l), 71680.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_POWER_USAGE", &l), 312.5);
    assert_eq!(value(&s, "DCGM_FI_DEV_POWER_MGMT_LIMIT", &l), 700.0);
    assert_eq!(
        value(&s, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", &l),
        123_456_789.0
    );
    assert_eq!(value(&s, "DCGM_FI_DEV_GPU_TEMP", &l), 61.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_SM_CLOCK", &l), 1980.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_MEM_CLOCK", &l), 2619.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_ENC_UTIL", &l), 3.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_DEC_UTIL", &l), 5.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", &l), 9.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", &l), 7.0);
    assert_eq!(value(&s, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", &l), 1.0);
    assert_eq!(
        value(&s, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", &l),
        (0x4 | 0x40) as f64
    );
    // Only dcgm names (and the exporter's own health) in this mode.
    assert!(
        s.iter()
            .all(|x| x.name.starts_with("DCGM_") || x.name.starts_with("gpuscale_exporter_"))
    );
}

#[test]
fn content_negotiation_and_probes() {
    let scratch = Scratch::new("negotiation");
    let exporter = start_exporter(&scratch, None, &["--collect-interval", "200ms"]);
    let om = http_get(
        exporter.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .unwrap();
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.body.ends_with("# EOF\n"));
    assert!(
        om.body
            .contains("# TYPE gpu_energy_consumption_joules counter")
    );
    let text = http_get(exporter.addr, "/metrics", None).unwrap();
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(!text.body.contains("# EOF"));
    assert!(
        text.body
            .contains("# TYPE gpu_energy_consumption_joules_total counter")
    );
    assert_eq!(
        http_get(exporter.addr, "/healthz", None).unwrap().status,
        200
    );
    assert_eq!(
        http_get(exporter.addr, "/readyz", None).unwrap().status,
        200
    );
}
