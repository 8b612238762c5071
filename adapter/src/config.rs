//! The adapter's YAML configuration: where Prometheus is and which external metrics are
//! served, each from a PromQL query validated when the file loads.
//!
//! The served list comes from this file, never from series discovery: that is what keeps the
//! adapter small (prometheus-adapter's discovery is what costs it GiBs) and its answers
//! predictable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use promql_parser::parser::{Expr, value::ValueType};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::promql;

/// A config problem, with where it is and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {context}{message}")]
pub struct Error {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// `metric "name": ` when the problem belongs to one metric.
    pub context: String,
    pub message: String,
}

/// What an empty query result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EmptyResult {
    /// An error: the HPA keeps its current replica count (the safe default: a broken exporter
    /// must not look like zero load and scale a service down).
    #[default]
    Error,
    /// The value 0, for signals where "no series" really means "nothing happening", such as
    /// a queue that has no series until the first request.
    Zero,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    prometheus: RawPrometheus,
    #[serde(default)]
    cache: RawCache,
    metrics: Vec<RawMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPrometheus {
    url: Spanned<String>,
    timeout: Option<Spanned<String>>,
    bearer_token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBasicAuth {
    username: String,
    password_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCache {
    ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetric {
    name: Spanned<String>,
    query: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    namespaced: Option<bool>,
    #[serde(default)]
    namespace_label: Option<Spanned<String>>,
    #[serde(default)]
    empty_result: Option<EmptyResult>,
}

/// Connection settings for Prometheus (or Thanos, Mimir, VictoriaMetrics).
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub bearer_token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub basic_auth: Option<(String, PathBuf)>,
    /// Extra headers on every query, e.g. `X-Scope-OrgID` for Mimir/Thanos tenants.
    pub headers: BTreeMap<String, String>,
}

/// One served external metric.
#[derive(Debug, Clone)]
pub struct Metric {
    /// The name as configured; requests match it case-insensitively.
    pub name: String,
    pub description: Option<String>,
    /// The query as written.
    pub query: String,
    /// The parsed query, rewritten per request.
    pub expr: Expr,
    /// Label that receives the HPA's namespace, or `None` for cluster-wide signals.
    pub namespace_label: Option<String>,
    pub empty_result: EmptyResult,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub prometheus: PrometheusConfig,
    pub cache_ttl: Duration,
    pub metrics: Vec<Metric>,
    by_name: HashMap<String, usize>,
}

impl Config {
    /// The metric served under `name`, compared case-insensitively (the HPA lowercases
    /// metric names in the URL).
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .and_then(|&i| self.metrics.get(i))
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        context: String::new(),
        message: format!("cannot read the config file: {e}"),
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses and validates config text; `file` names it in errors. Pure, for tests.
pub fn parse(file: &str, text: &str) -> Result<Config, Error> {
    let err = |line: u64, column: u64, context: String, message: String| Error {
        file: file.to_string(),
        line,
        column,
        context,
        message,
    };
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        err(line, column, String::new(), first_line(&e.to_string()))
    })?;

    let p = raw.prometheus;
    let url = reqwest::Url::parse(p.url.value.trim()).map_err(|e| {
        err(
            p.url.referenced.line(),
            p.url.referenced.column(),
            String::new(),
            format!("prometheus.url {:?} is not a URL ({e}); write e.g. http://prometheus.monitoring.svc:9090", p.url.value),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(
            p.url.referenced.line(),
            p.url.referenced.column(),
            String::new(),
            format!(
                "prometheus.url must be http:// or https://, not {}://",
                url.scheme()
            ),
        ));
    }
    let timeout = match &p.timeout {
        Some(t) => parse_duration(&t.value).map_err(|m| {
            err(
                t.referenced.line(),
                t.referenced.column(),
                String::new(),
                format!("prometheus.timeout: {m}"),
            )
        })?,
        None => Duration::from_secs(5),
    };
    for name in p.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(err(
                0,
                0,
                String::new(),
                format!("prometheus.headers: {name:?} is not a valid HTTP header name"),
            ));
        }
    }
    let prometheus = PrometheusConfig {
        url,
        timeout,
        bearer_token_file: p.bearer_token_file,
        ca_file: p.ca_file,
        basic_auth: p.basic_auth.map(|b| (b.username, b.password_file)),
        headers: p.headers,
    };
    let cache_ttl = match &raw.cache.ttl {
        Some(t) if t.value.trim() == "0" || t.value.trim() == "0s" => Duration::ZERO,
        Some(t) => parse_duration(&t.value).map_err(|m| {
            err(
                t.referenced.line(),
                t.referenced.column(),
                String::new(),
                format!("cache.ttl: {m}"),
            )
        })?,
        None => Duration::from_millis(500),
    };

    if raw.metrics.is_empty() {
        return Err(err(
            0,
            0,
            String::new(),
            "metrics: the list is empty; configure at least one metric".into(),
        ));
    }
    let mut metrics = Vec::with_capacity(raw.metrics.len());
    let mut by_name = HashMap::with_capacity(raw.metrics.len());
    for m in raw.metrics {
        let name = m.name.value.trim().to_string();
        let at = m.name.referenced;
        let ctx = format!("metric {name:?}: ");
        if let Err(why) = validate_metric_name(&name) {
            return Err(err(at.line(), at.column(), ctx, why));
        }
        if by_name
            .insert(name.to_ascii_lowercase(), metrics.len())
            .is_some()
        {
            return Err(err(
                at.line(),
                at.column(),
                ctx,
                "defined twice (names are case-insensitive, as the HPA lowercases them)".into(),
            ));
        }
        let q = &m.query;
        let expr = promql::parse(&q.value).map_err(|e| {
            err(
                q.referenced.line(),
                q.referenced.column(),
                ctx.clone(),
                format!("query: {e}"),
            )
        })?;
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(err(
                    q.referenced.line(),
                    q.referenced.column(),
                    ctx,
                    format!(
                        "query returns a {other}; it must return an instant vector or a scalar (wrap a range in e.g. avg_over_time)"
                    ),
                ));
            }
        }
        let namespace_label = match (m.namespaced.unwrap_or(true), &m.namespace_label) {
            (false, Some(l)) => {
                return Err(err(
                    l.referenced.line(),
                    l.referenced.column(),
                    ctx,
                    "namespaceLabel is set but namespaced is false; drop one".into(),
                ));
            }
            (false, None) => None,
            (true, None) => Some("namespace".to_string()),
            (true, Some(l)) => {
                if !is_prometheus_label_name(&l.value) {
                    return Err(err(
                        l.referenced.line(),
                        l.referenced.column(),
                        ctx,
                        format!(
                            "namespaceLabel {:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                            l.value
                        ),
                    ));
                }
                Some(l.value.clone())
            }
        };
        metrics.push(Metric {
            name,
            description: m.description,
            query: q.value.clone(),
            expr,
            namespace_label,
            empty_result: m.empty_result.unwrap_or_default(),
        });
    }
    Ok(Config {
        prometheus,
        cache_ttl,
        metrics,
        by_name,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

/// A metric name is one URL path segment the HPA can send: it lowercases it, and kube-apiserver
/// routes it as a resource name.
fn validate_metric_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty".into());
    }
    if name.len() > 253 {
        return Err("name is longer than 253 characters".into());
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        Some(c) => Err(format!(
            "name has {c:?}; use letters, digits, '_', '-', '.' or ':' (it becomes a URL path segment)"
        )),
        None => Ok(()),
    }
}

fn is_prometheus_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `500ms`, `5s`, `1m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 5s or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}; use ms, s or m")),
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 3600.0 {
        return Err(format!("{text:?} must be more than 0 and at most an hour"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
prometheus:
  url: http://prometheus.monitoring.svc:9090
  timeout: 2s
  headers:
    X-Scope-OrgID: tenant-a
cache:
  ttl: 500ms
metrics:
  - name: gpu_utilization
    query: avg(gpu_utilization_ratio)
  - name: Queue_Depth
    query: sum(gpu_workload_requests_waiting)
    emptyResult: zero
  - name: cluster_gpu_shortfall
    query: max(cluster:gpu_shortfall:forecast)
    namespaced: false
  - name: tenant_latency
    query: histogram_quantile(0.95, sum by (le) (rate(x_bucket[1m])))
    namespaceLabel: exported_namespace
"#;

    #[test]
    fn a_good_config_loads() {
        let c = parse("c.yaml", GOOD).expect("valid");
        assert_eq!(c.prometheus.timeout, Duration::from_secs(2));
        assert_eq!(c.prometheus.headers["X-Scope-OrgID"], "tenant-a");
        assert_eq!(c.cache_ttl, Duration::from_millis(500));
        assert_eq!(c.metrics.len(), 4);
        let q = c.metric("queue_depth").expect("case-insensitive");
        assert_eq!(q.name, "Queue_Depth");
        assert_eq!(q.empty_result, EmptyResult::Zero);
        assert_eq!(q.namespace_label.as_deref(), Some("namespace"));
        assert_eq!(
            c.metric("cluster_gpu_shortfall")
                .and_then(|m| m.namespace_label.clone()),
            None
        );
        assert_eq!(
            c.metric("tenant_latency")
                .and_then(|m| m.namespace_label.clone())
                .as_deref(),
            Some("exported_namespace")
        );
        assert!(c.metric("nope").is_none());
    }

    #[test]
    fn a_bad_query_names_file_metric_and_position() {
        let text = "prometheus:\n  url: http://p:9090\nmetrics:\n  - name: ok\n    query: up\n  - name: broken\n    query: sum(rate(x[5m])\n";
        let e = parse("adapter.yaml", text).expect_err("bad query");
        assert_eq!(e.file, "adapter.yaml");
        assert_eq!(e.line, 7);
        assert!(e.context.contains("\"broken\""), "{e}");
        assert!(e.to_string().starts_with("adapter.yaml:7:"), "{e}");
    }

    #[test]
    fn range_queries_unknown_fields_and_duplicates_are_rejected() {
        let range = "prometheus:\n  url: http://p:9090\nmetrics:\n  - name: r\n    query: x[5m]\n";
        assert!(
            parse("f", range)
                .expect_err("range")
                .message
                .contains("instant vector")
        );
        let typo = "prometheus:\n  url: http://p:9090\nmetrics:\n  - name: r\n    qeury: up\n";
        let e = parse("f", typo).expect_err("typo");
        assert!(e.message.contains("qeury"), "{e}");
        assert_eq!(e.line, 5, "{e}");
        let dup = "prometheus:\n  url: http://p:9090\nmetrics:\n  - name: a\n    query: up\n  - name: A\n    query: up\n";
        let e = parse("f", dup).expect_err("dup");
        assert!(e.message.contains("twice"), "{e}");
        assert_eq!(e.line, 6);
        let url = "prometheus:\n  url: ftp://p\nmetrics:\n  - name: a\n    query: up\n";
        assert!(
            parse("f", url)
                .expect_err("scheme")
                .message
                .contains("http")
        );
        let label = "prometheus:\n  url: http://p\nmetrics:\n  - name: a\n    query: up\n    namespaceLabel: exported-namespace\n";
        assert!(
            parse("f", label)
                .expect_err("label")
                .message
                .contains("label name")
        );
        let name = "prometheus:\n  url: http://p\nmetrics:\n  - name: a/b\n    query: up\n";
        assert!(
            parse("f", name)
                .expect_err("name")
                .message
                .contains("path segment")
        );
        let empty = "prometheus:\n  url: http://p\nmetrics: []\n";
        assert!(
            parse("f", empty)
                .expect_err("empty")
                .message
                .contains("at least one")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
