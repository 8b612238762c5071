//! Request latency and concurrency of the serving pods on this node, read from each engine's
//! own metrics endpoint over the pod IP and normalized to `gpu_workload_*` series.
//!
//! Scrapes run on the tokio runtime in their own loop, concurrently and each under a
//! timeout, and publish one result set per round; the collection cycle only loads the latest
//! set, so a slow engine never stretches a cycle. A failed endpoint is counted and left out
//! of the set: its series are absent, never stale.

pub mod engine;
pub mod parse;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::pods::{PodMeta, PodSource};
use crate::snapshot::WorkloadReading;
use engine::Profile;

/// Engine pages larger than this are refused (vLLM's is ~30 KiB).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Why one engine scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("bad URL {0}")]
    Url(String),
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error(
        "the page has none of the {0} engine's metrics; check gpuscale.io/metrics-port and gpuscale.io/metrics-path"
    )]
    NoMetrics(&'static str),
}

/// (namespace, pod, engine).
pub type TargetKey = (String, String, String);

/// The latest round of engine scrapes.
#[derive(Debug, Default)]
pub struct WorkloadState {
    pub readings: Vec<WorkloadReading>,
    /// Failed scrapes since the exporter started, per engine pod still on the node; every
    /// current target starts at 0 so `increase()` sees its first failure.
    pub errors: BTreeMap<TargetKey, u64>,
}

/// Shared handle to the latest [`WorkloadState`].
pub type SharedWorkloads = Arc<ArcSwap<WorkloadState>>;

/// Starts the scrape loop; returns the handle the collection cycle reads.
pub fn start(pods: PodSource, interval: Duration, timeout: Duration) -> SharedWorkloads {
    let state: SharedWorkloads = Arc::new(ArcSwap::from_pointee(WorkloadState::default()));
    let publish = state.clone();
    tokio::spawn(async move {
        let mut scraper = Scraper::new(timeout);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let index = pods.current();
            let targets: Vec<(Arc<PodMeta>, Profile)> = index
                .iter()
                .flat_map(|i| i.pods())
                .filter(|p| p.phase == "Running" && p.ip.is_some())
                .filter_map(|p| Profile::for_pod(p).map(|profile| (p.clone(), profile)))
                .collect();
            let next = scraper.round(&targets).await;
            publish.store(Arc::new(next));
        }
    });
    state
}

/// Keeps the HTTP client, error counts and log state between rounds.
pub struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    errors: BTreeMap<TargetKey, u64>,
    failing: HashSet<TargetKey>,
}

impl Scraper {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self {
            client,
            timeout,
            errors: BTreeMap::new(),
            failing: HashSet::new(),
        }
    }

    /// Scrapes every target concurrently and returns the round's state.
    pub async fn round(&mut self, targets: &[(Arc<PodMeta>, Profile)]) -> WorkloadState {
        let pages = futures::future::join_all(
            targets
                .iter()
                .map(|(pod, profile)| self.fetch(pod, profile)),
        )
        .await;
        let mut readings = Vec::with_capacity(targets.len());
        let mut current = HashSet::with_capacity(targets.len());
        for ((pod, profile), page) in targets.iter().zip(pages) {
            let engine = profile.engine.label();
            let key = (pod.namespace.clone(), pod.name.clone(), engine.to_string());
            current.insert(key.clone());
            let count = self.errors.entry(key.clone()).or_insert(0);
            let values = page.and_then(|body| {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| ScrapeError::Body("not UTF-8".into()))?;
                let values = profile.extract(text);
                if values.is_empty() {
                    Err(ScrapeError::NoMetrics(engine))
                } else {
                    Ok(values)
                }
            });
            match values {
                Ok(v) => {
                    if self.failing.remove(&key) {
                        tracing::info!(namespace = %key.0, pod = %key.1, engine, "engine metrics answering again");
                    }
                    readings.push(WorkloadReading {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        workload: pod.workload.clone(),
                        workload_kind: pod.workload_kind.clone(),
                        engine: engine.to_string(),
                        in_flight: v.in_flight,
                        waiting: v.waiting,
                        requests_total: v.requests_total,
                        duration_seconds: v.duration_seconds,
                    });
                }
                Err(err) => {
                    *count += 1;
                    if self.failing.insert(key.clone()) {
                        tracing::warn!(namespace = %key.0, pod = %key.1, engine, port = profile.port, path = %profile.path, error = %err, "engine metrics scrape failed; its gpu_workload_* series are absent while it fails (counted in gpuscale_exporter_workload_scrape_errors_total)");
                    }
                }
            }
        }
        self.errors.retain(|k, _| current.contains(k));
        self.failing.retain(|k| current.contains(k));
        WorkloadState {
            readings,
            errors: self.errors.clone(),
        }
    }

    async fn fetch(&self, pod: &PodMeta, profile: &Profile) -> Result<Bytes, ScrapeError> {
        let ip = pod.ip.as_deref().unwrap_or_default();
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let url = format!("http://{host}:{}{}", profile.port, profile.path);
        let uri: http::Uri = url.parse().map_err(|_| ScrapeError::Url(url.clone()))?;
        let request = http::Request::get(uri)
            .header(
                http::header::ACCEPT,
                "text/plain;version=0.0.4;q=1,*/*;q=0.1",
            )
            .header(http::header::USER_AGENT, "gpuscale-exporter")
            .body(Empty::<Bytes>::new())
            .map_err(|_| ScrapeError::Url(url.clone()))?;
        let work = async {
            let response = self.client.request(request).await?;
            if !response.status().is_success() {
                return Err(ScrapeError::Status(response.status().as_u16()));
            }
            Ok(Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| ScrapeError::Body(e.to_string()))?
                .to_bytes())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(ScrapeError::Timeout(self.timeout)))
    }
}
