//! Forecast sanity and accuracy on real traces: a trace is backfilled into a real
//! Prometheus TSDB (`promtool tsdb create-blocks-from openmetrics`) as a workload's
//! demand signal, the shipped forecast rules for that signal are evaluated over it with
//! `promtool tsdb create-blocks-from rules` (one pass per rule layer, since a backfilled
//! rule cannot read another rule's output in the same pass), and the result is read back
//! with `promtool tsdb dump`. Every forecast must be finite and non-negative; the error of
//! the forecast made `horizon` before each point is compared with two baselines: the last
//! value and a plain `predict_linear` (clamped at 0).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::rulegen::{self, Inputs};
use crate::{Proc, Scratch, root, start_prometheus};

/// The demand signal the traces are loaded as.
pub const SIGNAL: &str = "namespace_workload:gpu_requests_in_flight";

/// A demand trace on a regular grid: (unix seconds, value).
#[derive(Debug, Clone)]
pub struct Trace {
    pub name: String,
    pub step: i64,
    pub points: Vec<(i64, f64)>,
}

fn parse_time(s: &str) -> Option<f64> {
    // "YYYY-MM-DD HH:MM:SS[.fraction]", UTC.
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// Loads a trace file from ../shared/data/traces: NAB `timestamp,value` (interpolated onto
/// a grid of at most 1 minute, as `gpuscale-adapter replay` does, so the 1-minute trend
/// window of the rules has samples) or the Azure per-request format (requests per second,
/// per minute).
pub fn load_trace(path: &Path) -> Trace {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    if header.starts_with("TIMESTAMP") {
        let mut per_minute: BTreeMap<i64, f64> = BTreeMap::new();
        for l in lines {
            if let Some(t) = l.split(',').next().and_then(parse_time) {
                *per_minute
                    .entry((t / 60.0).floor() as i64 * 60)
                    .or_default() += 1.0 / 60.0;
            }
        }
        let (first, last) = (
            *per_minute.keys().next().unwrap(),
            *per_minute.keys().last().unwrap(),
        );
        let points = (0..=(last - first) / 60)
            .map(|i| {
                let t = first + i * 60;
                (t, per_minute.get(&t).copied().unwrap_or(0.0))
            })
            .collect();
        return Trace {
            name,
            step: 60,
            points,
        };
    }
    let raw: Vec<(i64, f64)> = lines
        .filter_map(|l| {
            let (t, v) = l.split_once(',')?;
            Some((parse_time(t)? as i64, v.trim().parse().ok()?))
        })
        .collect();
    // Native step: the most common gap. Interpolate linearly between neighbours on a grid
    // of min(native, 1 min); across a gap in the data, hold the last value for one native
    // step (Prometheus' lookback then finds no sample, as in a scrape outage).
    let mut gaps: BTreeMap<i64, usize> = BTreeMap::new();
    for w in raw.windows(2) {
        *gaps.entry(w[1].0 - w[0].0).or_default() += 1;
    }
    let native = gaps
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(g, _)| *g)
        .unwrap();
    let step = native.min(60);
    let mut points = Vec::new();
    for w in raw.windows(2) {
        let ((t0, v0), (t1, v1)) = (w[0], w[1]);
        let contiguous = t1 - t0 <= native;
        let end = if contiguous { t1 } else { t0 + native };
        let mut t = t0;
        while t < end {
            let v = if contiguous {
                v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64
            } else {
                v0
            };
            points.push((t, v));
            t += step;
        }
    }
    if let Some(&last) = raw.last() {
        points.push(last);
    }
    Trace { name, step, points }
}

impl Trace {
    /// The points within `secs` of the end.
    pub fn tail(&self, secs: i64) -> Trace {
        let t1 = self.points.last().unwrap().0;
        self.keep(|t| t > t1 - secs)
    }

    /// The points within `secs` of the start.
    pub fn head(&self, secs: i64) -> Trace {
        let t0 = self.points[0].0;
        self.keep(|t| t < t0 + secs)
    }

    fn keep(&self, keep: impl Fn(i64) -> bool) -> Trace {
        Trace {
            name: self.name.clone(),
            step: self.step,
            points: self
                .points
                .iter()
                .copied()
                .filter(|(t, _)| keep(*t))
                .collect(),
        }
    }
}

/// Error of one forecaster against the value `horizon` later.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub n: usize,
    /// Mean absolute error / mean actual.
    pub nmae: f64,
    /// Share of points where the forecast was below the actual value (under-provisioned).
    pub under_share: f64,
    /// Demand above the forecast / total demand.
    pub under_volume: f64,
    /// Forecast above demand / total demand (extra capacity).
    pub over_volume: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub trace: String,
    pub step: i64,
    pub points: usize,
    pub forecasts: usize,
    pub non_finite: usize,
    pub negative: usize,
    pub rules: Errors,
    pub last_value: Errors,
    pub linear: Errors,
    /// Per source: how often it was the largest (drove the forecast).
    pub sources: BTreeMap<String, usize>,
    /// Every source the rules recorded at least once (those outside forecast.sources too).
    pub recorded_sources: std::collections::BTreeSet<String>,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The shipped rule inputs, with `GPUSCALE_FORECAST_CONFIG` overrides
/// (`forecast.trend_window=1h,forecast.smoothing_factor=0.1`) for tuning experiments.
pub fn inputs() -> Inputs {
    let mut inputs = Inputs::load(&root().join("rules")).unwrap();
    if let Ok(o) = std::env::var("GPUSCALE_FORECAST_CONFIG") {
        for kv in o.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap();
            let (section, key) = k.split_once('.').unwrap();
            let v: Value = v
                .parse::<f64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(v));
            inputs.config[section][key] = v;
        }
    }
    inputs
}

/// The forecast rules for [`SIGNAL`] generated from `inputs`, by record name, and the
/// horizon in seconds.
fn forecast_rules(inputs: &Inputs) -> (BTreeMap<String, String>, u64) {
    let vars = rulegen::variables(&inputs.config).unwrap();
    let text = rulegen::generate(inputs)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "gpuscale-forecast.rules.yml")
        .unwrap()
        .1;
    let v: Value = serde_saphyr::from_str(&text).unwrap();
    let mut rules = BTreeMap::new();
    for g in v["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            if let Some(name) = r["record"].as_str() {
                rules.insert(name.to_string(), r["expr"].as_str().unwrap().to_string());
            }
        }
    }
    let horizon: u64 = vars["forecast_horizon_seconds"].parse().unwrap();
    (rules, horizon)
}

fn rule_file(path: &Path, step: i64, rules: &[(String, String)]) {
    let mut s = format!("groups:\n  - name: eval\n    interval: {step}s\n    rules:\n");
    for (name, expr) in rules {
        let _ = writeln!(
            s,
            "      - record: {name}\n        expr: {}",
            serde_json::to_string(expr).unwrap()
        );
    }
    std::fs::write(path, s).unwrap();
}

/// The shipped rules `target` needs, in passes: a rule reads only series of earlier passes
/// (or the input); the plain `predict_linear` baseline goes in the first.
fn passes(
    shipped: &BTreeMap<String, String>,
    target: &str,
    baseline: String,
) -> Vec<Vec<(String, String)>> {
    // Names a rule reads: every identifier of its expression that is a shipped record.
    let reads = |expr: &str| -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| shipped.contains_key(*w))
            .map(str::to_string)
            .collect()
    };
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    fn assign(
        name: &str,
        shipped: &BTreeMap<String, String>,
        reads: &dyn Fn(&str) -> Vec<String>,
        level: &mut BTreeMap<String, usize>,
    ) -> usize {
        if let Some(l) = level.get(name) {
            return *l;
        }
        let l = reads(&shipped[name])
            .iter()
            .filter(|d| d.as_str() != name)
            .map(|d| assign(d, shipped, reads, level) + 1)
            .max()
            .unwrap_or(0);
        level.insert(name.to_string(), l);
        l
    }
    assign(target, shipped, &reads, &mut level);
    let depth = level.values().max().copied().unwrap_or(0);
    let mut out = vec![Vec::new(); depth + 1];
    for (name, l) in level {
        out[l].push((name.clone(), shipped[&name].clone()));
    }
    out[0].push(("gpuscale_eval:baseline_linear".to_string(), baseline));
    out
}

/// Backfills `trace`, evaluates the forecast rules over it and measures them.
pub fn evaluate(trace: &Trace) -> Report {
    evaluate_with(trace, &inputs())
}

/// [`evaluate`] with the rules generated from `inputs`.
pub fn evaluate_with(trace: &Trace, inputs: &Inputs) -> Report {
    let scratch = Scratch::new(&format!("forecast-{}", trace.name));
    let tsdb = scratch.path("tsdb");
    std::fs::create_dir_all(&tsdb).unwrap();
    let labels = format!("namespace=\"trace\",workload=\"{}\"", trace.name);
    let base = format!("{SIGNAL}:sum");

    let mut om = format!("# TYPE {base} gauge\n");
    for (t, v) in &trace.points {
        let _ = writeln!(om, "{base}{{{labels}}} {v} {t}");
    }
    om.push_str("# EOF\n");
    let om_path = scratch.path("trace.om");
    std::fs::write(&om_path, om).unwrap();
    run(Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om_path)
        .arg(&tsdb));

    let (shipped, horizon) = forecast_rules(inputs);
    let linear_expr = format!("clamp_min(predict_linear({base}[30m], {horizon}), 0)");
    let passes = passes(&shipped, &format!("{SIGNAL}:forecast"), linear_expr);
    let (start, end) = (trace.points[0].0, trace.points.last().unwrap().0);
    let config = "global:\n  scrape_interval: 1m\nscrape_configs: []\n";
    let extra = ["--storage.tsdb.retention.time=100y"];
    for (i, pass) in passes.iter().enumerate() {
        let prom: Proc = start_prometheus(&scratch, config, &extra);
        // One file name and group name for every pass: create-blocks-from rules offsets a
        // group's evaluation times by a hash of both, and the layers must line up.
        let file = scratch.path("pass.yml");
        rule_file(&file, trace.step, pass);
        let out = scratch.path(&format!("pass{i}-blocks"));
        run(Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "rules", "-q"])
            .arg(format!("--url=http://{}", prom.addr))
            .arg(format!("--start={start}"))
            .arg(format!("--end={}", end + trace.step))
            .arg(format!("--eval-interval={}s", trace.step))
            .arg(format!("--output-dir={}", out.display()))
            .arg(&file));
        drop(prom);
        for e in std::fs::read_dir(&out).unwrap() {
            let e = e.unwrap();
            std::fs::rename(e.path(), tsdb.join(e.file_name())).unwrap();
        }
    }

    // Read everything back.
    let dump = run(Command::new("promtool").args(["tsdb", "dump"]).arg(&tsdb));
    let mut series: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for line in dump.lines() {
        let Some((labels, rest)) = line.rsplit_once('}') else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(v), Some(ts)) = (it.next(), it.next()) else {
            continue;
        };
        let name = labels
            .split("__name__=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        let key = match labels.split("source=\"").nth(1) {
            Some(s) => format!("{name}/{}", s.split('"').next().unwrap_or("")),
            None => name,
        };
        let v: f64 = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        series
            .entry(key)
            .or_default()
            .insert(ts.parse::<i64>().unwrap() / 1000, v);
    }
    if std::env::var_os("GPUSCALE_FORECAST_DEBUG").is_some() {
        for (k, s) in &series {
            eprintln!(
                "{k}: {} samples, first {:?}",
                s.len(),
                s.iter().take(2).collect::<Vec<_>>()
            );
        }
    }
    let actual = series.get(&base).cloned().unwrap_or_default();
    let fc = series
        .get(&format!("{SIGNAL}:forecast"))
        .cloned()
        .unwrap_or_default();
    let linear = series
        .get("gpuscale_eval:baseline_linear")
        .cloned()
        .unwrap_or_default();
    let at = |t: i64| -> Option<f64> {
        // The latest actual sample at or before t, within 5 minutes (Prometheus' lookback).
        actual.range(t - 300..=t).next_back().map(|(_, v)| *v)
    };
    let mut non_finite = 0;
    let mut negative = 0;
    for v in fc.values() {
        if !v.is_finite() {
            non_finite += 1;
        } else if *v < 0.0 {
            negative += 1;
        }
    }
    let h = horizon as i64;
    let measure = |f: &BTreeMap<i64, f64>| -> Errors {
        let (mut n, mut abs, mut sum, mut under_n, mut under, mut over) =
            (0usize, 0.0, 0.0, 0usize, 0.0, 0.0);
        for (&t, &pred) in f {
            let Some(real) = at(t + h) else {
                continue;
            };
            if !(pred.is_finite() && real.is_finite()) {
                continue;
            }
            n += 1;
            abs += (pred - real).abs();
            sum += real;
            if pred < real {
                under_n += 1;
                under += real - pred;
            } else {
                over += pred - real;
            }
        }
        let sum = sum.max(f64::MIN_POSITIVE);
        Errors {
            n,
            nmae: abs / sum,
            under_share: under_n as f64 / n.max(1) as f64,
            under_volume: under / sum,
            over_volume: over / sum,
        }
    };
    let rules = measure(&fc);
    let last_value = measure(&actual);
    let linear_e = measure(&linear);
    let mut sources = BTreeMap::new();
    for (&t, &v) in &fc {
        for (k, s) in &series {
            if let Some(src) = k.strip_prefix(&format!("{SIGNAL}:forecast_by_source/")) {
                if s.range(t - 300..=t)
                    .next_back()
                    .is_some_and(|(_, x)| *x == v)
                {
                    *sources.entry(src.to_string()).or_insert(0) += 1;
                    break;
                }
            }
        }
    }
    Report {
        trace: trace.name.clone(),
        step: trace.step,
        points: trace.points.len(),
        forecasts: fc.len(),
        non_finite,
        negative,
        rules,
        last_value,
        linear: linear_e,
        sources,
        recorded_sources: series
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{SIGNAL}:forecast_by_source/")))
            .map(str::to_string)
            .collect(),
    }
}

/// A markdown table row per report.
pub fn markdown(reports: &[Report]) -> String {
    let mut s = String::from(
        "| trace | step | forecasts | non-finite / negative | forecaster | nMAE | under-forecast points | unmet demand | extra capacity | largest source |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    for r in reports {
        let total: usize = r.sources.values().sum();
        let drivers = r
            .sources
            .iter()
            .map(|(k, n)| format!("{k} {:.0} %", *n as f64 * 100.0 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ");
        for (name, e) in [
            ("rules (max of sources)", &r.rules),
            ("last value", &r.last_value),
            ("predict_linear", &r.linear),
        ] {
            let _ = writeln!(
                s,
                "| {} | {} s | {} | {} / {} | {name} | {} | {} | {} | {} | {} |",
                r.trace,
                r.step,
                r.forecasts,
                r.non_finite,
                r.negative,
                pct(e.nmae),
                pct(e.under_share),
                pct(e.under_volume),
                pct(e.over_volume),
                if name.starts_with("rules") {
                    drivers.as_str()
                } else {
                    ""
                }
            );
        }
    }
    s
}
