//! HTTP endpoints: `/metrics` copies the latest exposition; `/healthz` and `/readyz` for the
//! kubelet's probes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::collector::Shared;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    /// A cycle older than this means the collection thread is stuck.
    stale_after: Duration,
}

/// The exporter's routes.
pub fn router(shared: Arc<Shared>, interval: Duration) -> Router {
    let state = AppState {
        shared,
        stale_after: (interval * 10).max(Duration::from_secs(30)),
    };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(index))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.shared.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "first collection cycle not finished\n",
        )
            .into_response();
    }
    // Content negotiation as client_golang does it: OpenMetrics only when asked for.
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let content_type = if openmetrics { OPENMETRICS } else { TEXT };
    (
        [(header::CONTENT_TYPE, content_type)],
        state.shared.exposition(openmetrics),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.shared.last_cycle_age() {
        Some(age) if age > state.stale_after => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "collection loop stalled: last cycle {:.0}s ago\n",
                age.as_secs_f64()
            ),
        )
            .into_response(),
        _ => (StatusCode::OK, "ok\n").into_response(),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "first collection cycle not finished\n",
        )
            .into_response()
    }
}

async fn index() -> impl IntoResponse {
    "gpuscale-exporter: /metrics /healthz /readyz\n"
}
