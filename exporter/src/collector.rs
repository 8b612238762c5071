//! The collection loop: reads NVML on its own thread at a fixed interval and publishes the
//! encoded exposition for scrapes to copy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::attribution::Attributor;
use crate::metrics::{self, MetricNames};
use crate::nvml::NvmlSource;
use crate::snapshot::{AttributionHealth, Health, Snapshot};
use crate::workload::SharedWorkloads;

/// What the HTTP side reads: the latest exposition and liveness facts.
#[derive(Debug, Default)]
pub struct Shared {
    exposition: RwLock<(Bytes, Bytes)>,
    ready: AtomicBool,
    /// Unix milliseconds at the end of the latest cycle.
    last_cycle_unix_ms: AtomicU64,
}

impl Shared {
    /// The latest exposition: OpenMetrics when `openmetrics`, else text format 0.0.4.
    pub fn exposition(&self, openmetrics: bool) -> Bytes {
        let guard = match self.exposition.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if openmetrics {
            guard.0.clone()
        } else {
            guard.1.clone()
        }
    }

    /// True once the first cycle has published, whether or not NVML answered: an exporter
    /// reporting `nvml_up 0` must still be scraped.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Age of the last completed cycle.
    pub fn last_cycle_age(&self) -> Option<Duration> {
        let at = self.last_cycle_unix_ms.load(Ordering::Acquire);
        (at > 0).then(|| Duration::from_millis(unix_ms().saturating_sub(at)))
    }

    fn publish(&self, exposition: metrics::Exposition) {
        let bodies = (
            Bytes::from(exposition.openmetrics),
            Bytes::from(exposition.text),
        );
        match self.exposition.write() {
            Ok(mut guard) => *guard = bodies,
            Err(poisoned) => *poisoned.into_inner() = bodies,
        }
        self.last_cycle_unix_ms.store(unix_ms(), Ordering::Release);
        self.ready.store(true, Ordering::Release);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub node: String,
    pub interval: Duration,
    pub names: MetricNames,
}

/// The pod side of a cycle: the kubelet and pod index (through the attributor) and the
/// latest engine scrape round.
pub struct Attribution {
    pub attributor: Attributor,
    pub workloads: Option<SharedWorkloads>,
}

/// Runs cycles until `stop` receives a message or is dropped.
pub fn run(
    mut source: NvmlSource,
    mut attribution: Option<Attribution>,
    config: LoopConfig,
    shared: Arc<Shared>,
    stop: Receiver<()>,
) {
    let mut health = Health::default();
    loop {
        let started = Instant::now();
        let reading = source.collect(&mut health.errors_by_field);
        let mut pods = Vec::new();
        let mut workloads = Vec::new();
        let mut attribution_health = AttributionHealth::default();
        if let Some(a) = attribution.as_mut() {
            let attributed = a.attributor.collect(&reading.gpus);
            pods = attributed.pods;
            attribution_health.kubelet_up = attributed.kubelet_up;
            attribution_health.kube_api_up = Some(a.attributor.pods().is_up());
            if let Some(state) = &a.workloads {
                let state = state.load();
                workloads = state.readings.clone();
                attribution_health.workload_scrape_errors = state.errors.clone();
            }
        }
        health.collections_total += 1;
        if reading.nvml_up {
            health.last_success_unix_seconds = Some(unix_ms() as f64 / 1000.0);
        }
        let mut snapshot = Snapshot {
            node: config.node.clone(),
            nvml_up: reading.nvml_up,
            driver_version: reading.driver_version,
            cuda_version: reading.cuda_version,
            gpus: reading.gpus,
            health: health.clone(),
            pods,
            workloads,
            attribution: attribution_health,
        };
        snapshot.health.last_duration_seconds = started.elapsed().as_secs_f64();
        health.last_duration_seconds = snapshot.health.last_duration_seconds;
        match metrics::encode_both(&snapshot, config.names) {
            Ok(exposition) => shared.publish(exposition),
            Err(err) => {
                tracing::error!(error = %err, "cannot encode metrics; serving the previous cycle")
            }
        }
        let wait = config.interval.saturating_sub(started.elapsed());
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
