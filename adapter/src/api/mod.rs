//! The external metrics API as kube-apiserver's aggregator and the HPA controller use it:
//! discovery documents, `ExternalMetricValueList` answers, and `Status` errors.

pub mod quantity;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use crate::cache::QueryCache;
use crate::config::{Config, EmptyResult};
use crate::metrics::AdapterMetrics;
use crate::{prometheus, promql, selector};
use status::Status;

pub const GROUP: &str = "external.metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";

/// What the handlers share.
pub struct AppState {
    pub config: Arc<Config>,
    pub cache: QueryCache,
    pub metrics: AdapterMetrics,
    /// Rewritten queries by (metric, namespace, selector): an HPA asks the same question every
    /// 15 s, so parsing its selector and rewriting the tree (regex compilation included) is
    /// done once, not per request.
    pub rewrites: RewriteCache,
}

/// A bounded map of rewritten queries; cleared when full (cheap to rebuild, and a cluster has
/// far fewer distinct HPA questions than the bound).
#[derive(Default)]
pub struct RewriteCache(std::sync::Mutex<HashMap<(String, String, String), Arc<str>>>);

const REWRITE_CACHE_MAX: usize = 10_000;

impl RewriteCache {
    fn get_or_insert(
        &self,
        key: (String, String, String),
        make: impl FnOnce() -> Result<String, Status>,
    ) -> Result<Arc<str>, Status> {
        let lock = || match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(q) = lock().get(&key) {
            return Ok(q.clone());
        }
        let query: Arc<str> = Arc::from(make()?);
        let mut map = lock();
        if map.len() >= REWRITE_CACHE_MAX {
            map.clear();
        }
        map.insert(key, query.clone());
        Ok(query)
    }
}

/// One `ExternalMetricValue`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    pub metric_name: String,
    pub metric_labels: BTreeMap<String, String>,
    pub timestamp: String,
    pub value: String,
}

/// `ExternalMetricValueList`, the body the HPA controller sums.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValueList {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub metadata: serde_json::Value,
    pub items: Vec<ExternalMetricValue>,
}

/// The API routes (without authentication; `serve` layers that on top).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/apis", get(api_group_list))
        .route("/apis/external.metrics.k8s.io", get(api_group))
        .route(
            "/apis/external.metrics.k8s.io/v1beta1",
            get(api_resource_list),
        )
        .route(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}",
            get(external_metric_handler),
        )
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .fallback(not_found)
        .with_state(state)
}

async fn ok() -> &'static str {
    "ok"
}

async fn not_found(uri: axum::http::Uri) -> Status {
    Status::not_found(format!(
        "the server could not find the requested resource {}",
        uri.path()
    ))
}

fn group_json() -> serde_json::Value {
    let version = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

async fn api_group_list() -> Json<serde_json::Value> {
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_json()]}))
}

async fn api_group() -> Json<serde_json::Value> {
    let mut g = group_json();
    if let Some(o) = g.as_object_mut() {
        o.insert("kind".into(), json!("APIGroup"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    Json(g)
}

/// The served metrics, from the config (never from series discovery).
pub fn api_resource_list_json(config: &Config) -> serde_json::Value {
    let resources: Vec<_> = config
        .metrics
        .iter()
        .map(|m| {
            json!({
                "name": m.name.to_ascii_lowercase(),
                "singularName": "",
                "namespaced": m.namespace_label.is_some(),
                "kind": "ExternalMetricValueList",
                "verbs": ["get"]
            })
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources})
}

async fn api_resource_list(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(api_resource_list_json(&state.config))
}

async fn external_metric_handler(
    State(state): State<Arc<AppState>>,
    Path((namespace, metric)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let selector = params
        .get("labelSelector")
        .map(String::as_str)
        .unwrap_or("");
    let result = external_metric(&state, &namespace, &metric, selector).await;
    let code = match &result {
        Ok(_) => 200,
        Err(s) => s.code(),
    };
    let known = state.config.metric(&metric).map(|m| m.name.clone());
    state.metrics.observe_request(
        known.as_deref().unwrap_or("unknown"),
        code,
        started.elapsed(),
    );
    match result {
        Ok(list) => ([(header::CONTENT_TYPE, "application/json")], Json(list)).into_response(),
        Err(status) => status.into_response(),
    }
}

/// Answers one HPA request: validate, rewrite the query on its syntax tree, ask Prometheus
/// (through the cache), and shape the answer. Shared by the HTTP handler and the `query`
/// command so both say the same thing.
pub async fn external_metric(
    state: &AppState,
    namespace: &str,
    metric: &str,
    label_selector: &str,
) -> Result<ExternalMetricValueList, Status> {
    let Some(m) = state.config.metric(metric) else {
        return Err(Status::not_found(format!(
            "external metric {metric:?} is not served by this adapter; configured: {}",
            configured_names(&state.config)
        )));
    };
    if let Err(why) = validate_namespace(namespace) {
        return Err(Status::bad_request(why));
    }
    let key = (
        m.name.clone(),
        namespace.to_string(),
        label_selector.to_string(),
    );
    let query = state.rewrites.get_or_insert(key, || {
        let requirements =
            selector::parse(label_selector).map_err(|e| Status::bad_request(e.to_string()))?;
        let ns = m.namespace_label.as_deref().map(|label| (label, namespace));
        let expr = promql::inject(&m.expr, ns, &requirements)
            .map_err(|e| Status::bad_request(e.to_string()))?;
        Ok(promql::render(&expr))
    })?;
    let (answer, source) = state.cache.query(&query).await;
    state.metrics.observe_source(source);
    let answer = answer.map_err(|e| prometheus_status(&m.name, &e))?;
    if answer.dropped_non_finite > 0 {
        tracing::debug!(metric = %m.name, dropped = answer.dropped_non_finite, "dropped NaN/Inf samples");
    }
    let mut items: Vec<ExternalMetricValue> = answer
        .samples
        .iter()
        .filter_map(|s| {
            quantity::format(s.value).map(|value| ExternalMetricValue {
                metric_name: m.name.clone(),
                metric_labels: s.labels.clone(),
                timestamp: quantity::rfc3339(s.timestamp),
                value,
            })
        })
        .collect();
    if items.is_empty() {
        match m.empty_result {
            EmptyResult::Zero => items.push(ExternalMetricValue {
                metric_name: m.name.clone(),
                metric_labels: BTreeMap::new(),
                timestamp: quantity::rfc3339(now_unix()),
                value: "0".into(),
            }),
            EmptyResult::Error => {
                let why = if answer.dropped_non_finite > 0 {
                    format!("only NaN/Inf values ({})", answer.dropped_non_finite)
                } else {
                    "no series".to_string()
                };
                return Err(Status::not_found(format!(
                    "query for external metric {:?} returned {why} (namespace {namespace:?}, selector {label_selector:?}); \
                     the HPA keeps its replica count. Set emptyResult: zero if no series means 0",
                    m.name
                )));
            }
        }
    }
    Ok(ExternalMetricValueList {
        kind: "ExternalMetricValueList",
        api_version: GROUP_VERSION,
        metadata: json!({}),
        items,
    })
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn configured_names(config: &Config) -> String {
    let names: Vec<_> = config
        .metrics
        .iter()
        .take(20)
        .map(|m| m.name.to_ascii_lowercase())
        .collect();
    let more = config.metrics.len().saturating_sub(20);
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

fn prometheus_status(metric: &str, e: &prometheus::Error) -> Status {
    match e {
        prometheus::Error::Unreachable { .. }
        | prometheus::Error::Timeout(_)
        | prometheus::Error::Http { .. } => Status::unavailable(format!(
            "external metric {metric:?}: {e}; the HPA keeps its replica count"
        )),
        _ => Status::internal(format!("external metric {metric:?}: {e}")),
    }
}

/// Namespaces are DNS-1123 labels.
fn validate_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "namespace {ns:?} is not a valid namespace name (DNS-1123 label)"
        ))
    }
}
