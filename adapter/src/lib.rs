//! gpuscale-adapter: serves `external.metrics.k8s.io/v1beta1` from PromQL so a stock
//! HorizontalPodAutoscaler scales on GPU, latency, concurrency and forecast signals.

pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod explain;
pub mod https;
pub mod metrics;
pub mod prometheus;
pub mod promql;
pub mod replay;
pub mod selector;
pub mod serve;
pub mod tls;
