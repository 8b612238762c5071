//! Forecast rules on real data (../shared/data/traces): backfilled into a real Prometheus
//! TSDB, evaluated with `promtool tsdb create-blocks-from rules`, every forecast finite and
//! non-negative, and no worse at under-forecasting than the last value. The default test
//! runs short slices (fast, in `make test`); `scripts/forecast-sanity.sh` runs every full
//! trace (the numbers in BENCHMARKS.md). Issue 5.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;

use gpuscale_tests::forecast_eval::{Report, evaluate, load_trace, markdown};
use gpuscale_tests::root;

fn traces_dir() -> PathBuf {
    std::env::var_os("GPUSCALE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data/traces"))
}

fn check(r: &Report) {
    assert!(r.forecasts > 0, "{}: no forecast evaluated", r.trace);
    assert_eq!(r.non_finite, 0, "{}: NaN or Inf forecasts", r.trace);
    assert_eq!(r.negative, 0, "{}: negative forecasts", r.trace);
    // The forecast is never below the current value, so it under-forecasts at most as
    // often as the last value does.
    assert!(
        r.rules.under_share <= r.last_value.under_share + 1e-9,
        "{}: {:?} vs last value {:?}",
        r.trace,
        r.rules,
        r.last_value
    );
}

#[test]
fn forecasts_on_trace_slices_are_finite_and_non_negative() {
    let dir = traces_dir();
    if !dir.exists() {
        eprintln!(
            "skipping: no traces at {} (set GPUSCALE_TRACES)",
            dir.display()
        );
        return;
    }
    // The Azure LLM hour (per-request, 1-minute grid) and 3 days of an ELB request count
    // (5-minute samples on a 1-minute grid: the 1-day seasonal source has history).
    let azure = load_trace(&dir.join("azure_llm_conv_2023.csv"));
    let elb = load_trace(&dir.join("nab_elb_request_count_8c0756.csv")).head(3 * 86_400);
    let reports: Vec<_> = [azure, elb].iter().map(evaluate).collect();
    eprintln!("{}", markdown(&reports));
    for r in &reports {
        check(r);
    }
    // Every source is recorded, those outside the default forecast.sources too.
    for source in ["current", "linear", "smoothed", "seasonal"] {
        assert!(
            reports[1].recorded_sources.contains(source),
            "no {source} source on the ELB slice: {:?}",
            reports[1].recorded_sources
        );
    }
}

/// Every trace (its last 21 days: a week of history for the weekly source, two weeks
/// measured; longer spans make `create-blocks-from rules` write one block per 2 hours and
/// need GiBs); prints the BENCHMARKS.md table. `scripts/forecast-sanity.sh`.
#[test]
#[ignore = "minutes: run by scripts/forecast-sanity.sh"]
fn forecasts_on_full_traces() {
    let dir = traces_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let mut reports = Vec::new();
    for f in files {
        let r = evaluate(&load_trace(&f).tail(21 * 86_400));
        eprintln!("{}: sources {:?}", r.trace, r.sources);
        check(&r);
        reports.push(r);
    }
    println!("{}", markdown(&reports));
}
