//! The adapter's own metrics (`gpuscale_adapter_`), for the alerts on adapter errors and
//! slow answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::Source;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    metric: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// Counters and histograms, encoded on demand.
pub struct AdapterMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    sources: Family<SourceLabels, Counter>,
    configured: AtomicU64,
}

impl AdapterMetrics {
    pub fn new(configured_metrics: usize) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "gpuscale_adapter_requests",
            "External metric requests by metric and HTTP status code.",
            requests.clone(),
        );
        let duration = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        registry.register(
            "gpuscale_adapter_request_duration_seconds",
            "Time to answer an external metric request, Prometheus included.",
            duration.clone(),
        );
        let sources = Family::<SourceLabels, Counter>::default();
        registry.register(
            "gpuscale_adapter_query_source",
            "Where answers came from: cache, coalesced (shared an in-flight query) or prometheus.",
            sources.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            sources,
            configured: AtomicU64::new(configured_metrics as u64),
        }
    }

    pub fn observe_request(&self, metric: &str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                metric: metric.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn observe_source(&self, source: Source) {
        let source = match source {
            Source::Cache => "cache",
            Source::Coalesced => "coalesced",
            Source::Prometheus => "prometheus",
        };
        self.sources.get_or_create(&SourceLabels { source }).inc();
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let configured = self.configured.load(Ordering::Relaxed);
        out.push_str(
            "# HELP gpuscale_adapter_configured_metrics External metrics in the loaded config.\n",
        );
        out.push_str("# TYPE gpuscale_adapter_configured_metrics gauge\n");
        out.push_str(&format!(
            "gpuscale_adapter_configured_metrics {configured}\n"
        ));
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# EOF\n");
        }
        out
    }
}
