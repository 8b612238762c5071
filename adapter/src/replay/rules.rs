//! The rules' forecast over a trace, computed by the real thing: the trace is backfilled as
//! the exporter's series (`promtool tsdb create-blocks-from openmetrics`), the project's
//! recording rules are evaluated over that history (`promtool tsdb create-blocks-from
//! rules`), and the forecast is read back from a real Prometheus with range queries. No
//! forecast formula is re-implemented in Rust, so the replay measures the shipped rules.
//!
//! promtool evaluates each rule against what Prometheus already stores, so a rule that reads
//! another rule's output needs that output backfilled first: the rules the forecast depends
//! on are ordered into levels by their dependencies and backfilled one level at a time,
//! restarting Prometheus on the grown TSDB in between (the workaround promtool's docs give).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use super::range::{RangeClient, on_grid};
use super::trace::Trace;

/// The exporter series the backfilled trace becomes.
pub const INPUT_SERIES: &str = "gpu_workload_requests_in_flight";
/// The forecast the HPA of the forecast policies reads.
pub const REPLICAS_FORECAST: &str = "namespace_workload:gpu_replicas:forecast";
const IN_FLIGHT_SUM: &str = "namespace_workload:gpu_requests_in_flight:sum";
const IN_FLIGHT_FORECAST: &str = "namespace_workload:gpu_requests_in_flight:forecast";
const IN_FLIGHT_BY_SOURCE: &str = "namespace_workload:gpu_requests_in_flight:forecast_by_source";

/// Why the rules could not be evaluated over the trace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: not a Prometheus rule file: {message}")]
    RuleFile { file: String, message: String },
    #[error(
        "no recording rule for {0} in the rule files given (pass --rules DIR with the gpuscale forecast rules)"
    )]
    Missing(String),
    #[error("recording rules depend on each other in a cycle (involving {0})")]
    Cycle(String),
    #[error(
        "cannot run {program}: {message} (install the Debian packages prometheus and promtool, or pass --prometheus-bin/--promtool-bin)"
    )]
    Spawn { program: String, message: String },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("Prometheus on {0} did not become ready within 60 s")]
    NotReady(String),
    #[error(transparent)]
    Range(#[from] super::range::Error),
    #[error("the rules produced no {0} sample over the trace: check the rules read {INPUT_SERIES}")]
    NoForecast(String),
}

/// How to run the pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Directory with `*.rules.yml` files (the repo's `rules/`).
    pub rules_dir: PathBuf,
    pub prometheus_bin: PathBuf,
    pub promtool_bin: PathBuf,
    /// Seconds between backfilled samples of the input series (the scrape interval).
    pub scrape_interval: f64,
    /// Seconds between rule evaluations.
    pub eval_interval: f64,
    pub namespace: String,
    pub workload: String,
    /// Keep the TSDB and rule files here instead of a temporary directory.
    pub work_dir: Option<PathBuf>,
}

/// What the pipeline produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// `namespace_workload:gpu_replicas:forecast` on the trace grid.
    pub replicas: Vec<Option<f64>>,
    pub accuracy: Accuracy,
    pub description: String,
}

/// Forecast error against what happened, next to the baselines (issue 7 item 4).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accuracy {
    pub trace: String,
    /// The horizon the rules forecast for (the offset their forecast-error rule uses),
    /// seconds; `None` when the rules have no such rule.
    pub rules_horizon_seconds: Option<f64>,
    pub rows: Vec<AccuracyRow>,
}

/// One forecaster at one horizon.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccuracyRow {
    pub forecaster: String,
    pub horizon_minutes: f64,
    /// Mean absolute error divided by the mean actual value.
    pub relative_mae: f64,
    /// Share of points where the forecast was below the actual value (under-provisioning).
    pub under_forecast_share: f64,
    pub points: usize,
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    #[serde(default)]
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    #[serde(default, skip_serializing)]
    alert: Option<String>,
    expr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    /// File name and group the rule comes from: Prometheus evaluates a group at an offset
    /// hashed from both, and rules of one group at the same timestamp, in order.
    #[serde(skip)]
    origin: (String, String),
}

/// The horizon the rules forecast for, read from the offset their forecast-error rule
/// compares the forecast at (`…:forecast offset 3m`), in seconds.
fn rules_horizon(dir: &Path) -> Option<f64> {
    let record = format!("{IN_FLIGHT_FORECAST}_error_weighted");
    let needle = format!("{IN_FLIGHT_FORECAST} offset ");
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(parsed) = serde_saphyr::from_str::<RuleFile>(&text) else {
            continue;
        };
        for rule in parsed.groups.iter().flat_map(|g| &g.rules) {
            if rule.record.as_deref() != Some(record.as_str()) {
                continue;
            }
            let (_, rest) = rule.expr.split_once(&needle)?;
            let duration: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            return crate::config::parse_duration(&duration)
                .ok()
                .map(|d| d.as_secs_f64());
        }
    }
    None
}

/// Recording rules needed for `targets`, grouped into levels: level 0 reads only stored
/// series, level n reads outputs of levels below n.
fn levels(dir: &Path, targets: &[&str]) -> Result<(Vec<Vec<Rule>>, Vec<String>), Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".rules.yml") || n.ends_with(".rules.yaml"))
        })
        .collect();
    files.sort();
    // record name -> (rules producing it, names they read)
    let mut by_name: BTreeMap<String, Vec<(Rule, BTreeSet<String>)>> = BTreeMap::new();
    for f in &files {
        let file = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let parsed: RuleFile = serde_saphyr::from_str(&text).map_err(|e| Error::RuleFile {
            file: file.clone(),
            message: e.to_string().lines().next().unwrap_or_default().to_string(),
        })?;
        let base = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for group in parsed.groups {
            for mut rule in group.rules {
                let Some(record) = rule.record.clone().filter(|_| rule.alert.is_none()) else {
                    continue;
                };
                rule.origin = (base.clone(), group.name.clone());
                let names = metric_names(&rule.expr);
                by_name.entry(record).or_default().push((rule, names));
            }
        }
    }
    let mut level: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<Vec<Rule>> = Vec::new();
    for t in targets {
        if !by_name.contains_key(*t) {
            return Err(Error::Missing((*t).to_string()));
        }
        assign(t, &by_name, &mut level, &mut BTreeSet::new())?;
    }
    for (name, l) in &level {
        if let Some(rules) = by_name.get(name) {
            if out.len() <= *l {
                out.resize(*l + 1, Vec::new());
            }
            out[*l].extend(rules.iter().map(|(r, _)| r.clone()));
        }
    }
    let names = files.iter().map(|f| f.display().to_string()).collect();
    Ok((out, names))
}

fn assign(
    name: &str,
    by_name: &BTreeMap<String, Vec<(Rule, BTreeSet<String>)>>,
    level: &mut BTreeMap<String, usize>,
    visiting: &mut BTreeSet<String>,
) -> Result<Option<usize>, Error> {
    let Some(rules) = by_name.get(name) else {
        return Ok(None); // a stored series
    };
    if let Some(l) = level.get(name) {
        return Ok(Some(*l));
    }
    if !visiting.insert(name.to_string()) {
        return Err(Error::Cycle(name.to_string()));
    }
    let mut l = 0;
    for (_, deps) in rules {
        for d in deps {
            if d == name {
                continue;
            }
            if let Some(dl) = assign(d, by_name, level, visiting)? {
                l = l.max(dl + 1);
            }
        }
    }
    visiting.remove(name);
    level.insert(name.to_string(), l);
    Ok(Some(l))
}

/// Every identifier in `expr` outside string literals: a superset of the metric names it
/// reads. Only names that are also recorded matter for the levels, so function names and
/// label names do no harm. A tokenizer rather than promql-parser, because the parser does
/// not know every function Prometheus 2.42 has (`holt_winters` is missing from it).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.chars().peekable();
    let mut current = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                while let Some(d) = chars.next() {
                    if d == '\\' && quote != '`' {
                        chars.next();
                    } else if d == quote {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => {
                current.push(c);
                continue;
            }
            _ => {}
        }
        if !current.is_empty() {
            names.insert(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        names.insert(current);
    }
    names
}

/// OpenMetrics text of the trace as the exporter's in-flight gauge, one sample per scrape.
pub fn openmetrics(trace: &Trace, namespace: &str, workload: &str, every: f64) -> String {
    let mut out = format!(
        "# HELP {INPUT_SERIES} Requests in flight (replayed trace).\n# TYPE {INPUT_SERIES} gauge\n"
    );
    let stride = ((every / trace.step).round() as usize).max(1);
    let labels = format!(
        "container=\"engine\",namespace=\"{namespace}\",pod=\"{workload}-0\",workload=\"{workload}\",workload_kind=\"Deployment\""
    );
    for (k, v) in trace.values.iter().enumerate().step_by(stride) {
        let t = trace.start + k as f64 * trace.step;
        out.push_str(&format!("{INPUT_SERIES}{{{labels}}} {v} {t:.3}\n"));
    }
    out.push_str("# EOF\n");
    out
}

struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    async fn start(bin: &Path, dir: &Path) -> Result<Self, Error> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|source| Error::Io {
                path: "127.0.0.1:0".into(),
                source,
            })?;
        let config = dir.join("prometheus.yml");
        write(&config, "global:\n  scrape_interval: 15s\n")?;
        let log =
            std::fs::File::create(dir.join("prometheus.log")).map_err(|source| Error::Io {
                path: dir.join("prometheus.log").display().to_string(),
                source,
            })?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The trace lies in the past: keep all of it.
            .arg("--storage.tsdb.retention.time=36500d")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Spawn {
                program: bin.display().to_string(),
                message: e.to_string(),
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
                && r.status().is_success()
            {
                return Ok(Self { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::NotReady(url))
    }

    async fn stop(mut self) {
        // Our own child: SIGKILL is fine, the TSDB blocks on disk are complete.
        let _ = self.child.kill().await;
    }
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Runs in `cwd` so rule files are named relatively: Prometheus offsets each group's
/// evaluation times by a hash of its name and file, and a fixed name keeps replays repeatable.
async fn run_tool(bin: &Path, cwd: &Path, args: &[String]) -> Result<(), Error> {
    let out = Command::new(bin)
        .current_dir(cwd)
        .args(args)
        .output()
        .await
        .map_err(|e| Error::Spawn {
            program: bin.display().to_string(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            program: format!("{} {}", bin.display(), args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | "),
        })
    }
}

/// Moves the block directories promtool wrote into Prometheus' data directory.
fn move_blocks(from: &Path, data: &Path) -> Result<usize, Error> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| Error::Io { path, source }
    };
    let mut n = 0;
    if !from.exists() {
        return Ok(0);
    }
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        if e.path().is_dir() {
            std::fs::rename(e.path(), data.join(e.file_name())).map_err(io(&e.path()))?;
            n += 1;
        }
    }
    Ok(n)
}

impl Pipeline {
    /// Backfills `trace`, evaluates the rules, and reads the forecast back.
    pub async fn run(&self, trace: &Trace) -> Result<Output, Error> {
        let (levels, files) = levels(
            &self.rules_dir,
            &[REPLICAS_FORECAST, IN_FLIGHT_FORECAST, IN_FLIGHT_BY_SOURCE],
        )?;
        let temp;
        let dir = match &self.work_dir {
            Some(d) => {
                let d = std::path::absolute(d).map_err(|source| Error::Io {
                    path: d.display().to_string(),
                    source,
                })?;
                // A fresh TSDB each time: old blocks would overlap the new ones.
                if let Ok(entries) = std::fs::read_dir(&d) {
                    for e in entries.flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if n == "data" || n.starts_with("blocks-") {
                            let _ = std::fs::remove_dir_all(e.path());
                        }
                    }
                }
                d
            }
            None => {
                temp = TempDir::new()?;
                temp.0.clone()
            }
        };
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| Error::Io { path, source }
        };
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(io(&data))?;
        let om = dir.join("input.om");
        write(
            &om,
            &openmetrics(trace, &self.namespace, &self.workload, self.scrape_interval),
        )?;
        run_tool(
            &self.promtool_bin,
            &dir,
            &[
                "tsdb".into(),
                "create-blocks-from".into(),
                "openmetrics".into(),
                "--quiet".into(),
                om.display().to_string(),
                data.display().to_string(),
            ],
        )
        .await?;
        // Rules read up to 7 days back (seasonal look-ahead); evaluation starts at the
        // trace's first sample, so early forecasts see only what existed then.
        let start = format!("{:.0}", trace.start.ceil());
        let end = format!("{:.0}", trace.end().floor());
        let eval = format!("{}s", self.eval_interval);
        let mut evaluated = 0;
        for (i, rules) in levels.iter().enumerate() {
            if rules.is_empty() {
                continue;
            }
            // Each rule keeps its file name and group name, in a directory per level, so
            // promtool evaluates it at the timestamps Prometheus would (the group offset is
            // a hash of both): rules of one group share timestamps across levels, as in one
            // evaluation of the group, and only a hop between groups adds its real lag.
            let level_dir = dir.join(format!("level-{i}"));
            std::fs::create_dir_all(&level_dir).map_err(io(&level_dir))?;
            let mut by_origin: BTreeMap<&(String, String), Vec<&Rule>> = BTreeMap::new();
            for r in rules {
                by_origin.entry(&r.origin).or_default().push(r);
            }
            let mut by_file: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
            for ((file, group), rules) in by_origin {
                by_file
                    .entry(file.as_str())
                    .or_default()
                    .push(serde_json::json!({ "name": group, "rules": rules }));
            }
            let mut names = Vec::new();
            for (file, groups) in by_file {
                // JSON is YAML: serde_json writes a valid rule file without a YAML serializer.
                let body = serde_json::json!({ "groups": groups });
                write(&level_dir.join(file), &body.to_string())?;
                names.push(file.to_string());
            }
            let out = dir.join(format!("blocks-{i}"));
            let prom = Prometheus::start(&self.prometheus_bin, &dir).await?;
            let mut args: Vec<String> = vec![
                "tsdb".into(),
                "create-blocks-from".into(),
                "rules".into(),
                "--quiet".into(),
                format!("--url={}", prom.url),
                format!("--start={start}"),
                format!("--end={end}"),
                format!("--eval-interval={eval}"),
                format!("--output-dir={}", out.display()),
            ];
            args.extend(names);
            let result = run_tool(&self.promtool_bin, &level_dir, &args).await;
            prom.stop().await;
            result?;
            move_blocks(&out, &data)?;
            evaluated += rules.len();
        }
        let prom = Prometheus::start(&self.prometheus_bin, &dir).await?;
        let result = self.read_back(&prom.url, trace).await;
        prom.stop().await;
        let (replicas, accuracy) = result?;
        Ok(Output {
            replicas,
            accuracy,
            description: format!(
                "rules' {REPLICAS_FORECAST}: {evaluated} recording rules from {} evaluated with promtool create-blocks-from rules ({} levels, every {eval}) over the trace backfilled as {INPUT_SERIES} (every {}s), read back from a real Prometheus with query_range",
                files.join(", "),
                levels.iter().filter(|l| !l.is_empty()).count(),
                self.scrape_interval
            ),
        })
    }

    async fn read_back(
        &self,
        url: &str,
        trace: &Trace,
    ) -> Result<(Vec<Option<f64>>, Accuracy), Error> {
        let client = RangeClient::local(url)?;
        let sel = format!(
            "{{namespace=\"{}\",workload=\"{}\"}}",
            self.namespace, self.workload
        );
        let (start, end, step) = (trace.start, trace.end(), trace.step);
        let lookback = 2.0 * self.eval_interval.max(self.scrape_interval);
        let one = |mut s: Vec<super::range::Series>| s.pop().map(|s| s.points).unwrap_or_default();
        let replicas = one(client
            .query_range(
                &format!("{REPLICAS_FORECAST}{sel}"),
                start,
                end,
                self.eval_interval,
            )
            .await?);
        if replicas.is_empty() {
            return Err(Error::NoForecast(REPLICAS_FORECAST.into()));
        }
        let n = trace.values.len();
        let replicas = on_grid(&replicas, start, step, n, lookback);

        // Accuracy: forecasts made at t against the actual (the rules' own sum) at t + h.
        let q = self.eval_interval;
        let actual = one(client
            .query_range(&format!("{IN_FLIGHT_SUM}{sel}"), start, end, q)
            .await?);
        let rules_forecast = one(client
            .query_range(&format!("{IN_FLIGHT_FORECAST}{sel}"), start, end, q)
            .await?);
        let mut rows = Vec::new();
        let horizon = rules_horizon(&self.rules_dir);
        let mut horizons = vec![300.0, 600.0, 1800.0];
        if let Some(h) = horizon.filter(|h| !horizons.contains(h)) {
            horizons.insert(0, h);
        }
        for h in horizons {
            let linear = one(client
                .query_range(
                    &format!("clamp_min(predict_linear({IN_FLIGHT_SUM}{sel}[30m], {h}), 0)"),
                    start,
                    end,
                    q,
                )
                .await?);
            rows.push(error_row("rules forecast", &rules_forecast, &actual, h));
            rows.push(error_row("last value", &actual, &actual, h));
            rows.push(error_row("predict_linear 30m", &linear, &actual, h));
        }
        Ok((
            replicas,
            Accuracy {
                trace: trace.name.clone(),
                rules_horizon_seconds: horizon,
                rows,
            },
        ))
    }
}

/// Error of `forecast` made at t against `actual` at t + h (both as returned by query_range
/// at the same step).
pub fn error_row(
    name: &str,
    forecast: &[(f64, f64)],
    actual: &[(f64, f64)],
    h: f64,
) -> AccuracyRow {
    let by_time: BTreeMap<i64, f64> = actual
        .iter()
        .map(|&(t, v)| ((t * 1000.0).round() as i64, v))
        .collect();
    let mut abs = 0.0;
    let mut sum_actual = 0.0;
    let mut under = 0usize;
    let mut n = 0usize;
    for &(t, f) in forecast {
        let Some(&a) = by_time.get(&(((t + h) * 1000.0).round() as i64)) else {
            continue;
        };
        abs += (f - a).abs();
        sum_actual += a;
        if f < a {
            under += 1;
        }
        n += 1;
    }
    AccuracyRow {
        forecaster: name.to_string(),
        horizon_minutes: h / 60.0,
        relative_mae: if sum_actual > 0.0 {
            abs / sum_actual
        } else {
            0.0
        },
        under_forecast_share: if n > 0 { under as f64 / n as f64 } else { 0.0 },
        points: n,
    }
}

/// A temporary directory removed on drop (no tempfile dependency for one directory).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p =
            std::env::temp_dir().join(format!("gpuscale-replay-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|source| Error::Io {
            path: p.display().to_string(),
            source,
        })?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_include_offset_and_range_selectors() {
        let names = metric_names(
            "max_over_time(a:x[10m] offset 1d) + on (x) b - predict_linear(c[5m], 60) or {__name__=\"d\", q='e'}",
        );
        for n in ["a:x", "b", "c", "max_over_time", "predict_linear", "x"] {
            assert!(names.contains(n), "{n} in {names:?}");
        }
        // String literals are not names.
        assert!(!names.contains("d") && !names.contains("e"), "{names:?}");
    }

    #[test]
    fn levels_follow_dependencies() {
        let dir =
            std::env::temp_dir().join(format!("gpuscale-replay-levels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("x.rules.yml"),
            "groups:\n- name: g\n  rules:\n  - record: c\n    expr: b * 2\n  - record: b\n    expr: sum(a)\n  - record: unrelated\n    expr: z\n  - alert: A\n    expr: c > 1\n",
        )
        .expect("write");
        std::fs::write(dir.join("prices.yaml"), "not: rules\n").expect("write");
        let (levels, files) = levels(&dir, &["c"]).expect("levels");
        let names: Vec<Vec<String>> = levels
            .iter()
            .map(|l| l.iter().filter_map(|r| r.record.clone()).collect())
            .collect();
        assert_eq!(names, vec![vec!["b".to_string()], vec!["c".to_string()]]);
        assert_eq!(files.len(), 1);
        assert!(matches!(levels_missing(&dir), Err(Error::Missing(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn levels_missing(dir: &Path) -> Result<(Vec<Vec<Rule>>, Vec<String>), Error> {
        levels(dir, &["nope"])
    }

    #[test]
    fn openmetrics_text() {
        let t = Trace {
            name: "t".into(),
            start: 100.0,
            step: 5.0,
            values: vec![1.0, 2.0, 3.0, 4.0],
            warmup: 0.0,
        };
        let om = openmetrics(&t, "ns", "w", 15.0);
        assert!(om.ends_with("# EOF\n"));
        assert_eq!(
            om.lines().filter(|l| l.starts_with(INPUT_SERIES)).count(),
            2
        );
        assert!(om.contains("workload=\"w\",workload_kind=\"Deployment\"} 4 115.000"));
    }

    #[test]
    fn error_row_aligns_horizon() {
        let actual = [(0.0, 10.0), (60.0, 20.0), (120.0, 30.0)];
        let forecast = [(0.0, 20.0), (60.0, 20.0)];
        let r = error_row("f", &forecast, &actual, 60.0);
        // (|20-20| + |20-30|) / (20+30)
        assert_eq!(r.points, 2);
        assert!((r.relative_mae - 0.2).abs() < 1e-12);
        assert!((r.under_forecast_share - 0.5).abs() < 1e-12);
    }
}
