//! Pod-attributed GPU series (`gpu_pod_*`), per-workload engine series (`gpu_workload_*`) and
//! the health of their sources. Only gpuscale names: dcgm-exporter has no equivalent.

use super::{Family, HistogramValue, Labels};
use crate::snapshot::{HistogramReading, PodGpuReading, Snapshot, WorkloadReading};

fn pod_labels(s: &Snapshot, p: &PodGpuReading) -> Labels {
    let mut labels = vec![
        ("node", s.node.clone()),
        ("namespace", p.namespace.clone()),
        ("pod", p.pod.clone()),
        ("container", p.container.clone()),
        ("workload", p.workload.clone()),
        ("workload_kind", p.workload_kind.clone()),
        ("gpu", p.gpu.to_string()),
        ("uuid", p.uuid.clone()),
        ("model", p.model.clone()),
    ];
    if let Some((uuid, profile)) = &p.mig {
        labels.push(("mig_uuid", uuid.clone()));
        labels.push(("mig_profile", profile.clone()));
    }
    labels
}

fn workload_labels(s: &Snapshot, w: &WorkloadReading) -> Labels {
    vec![
        ("node", s.node.clone()),
        ("namespace", w.namespace.clone()),
        ("pod", w.pod.clone()),
        ("workload", w.workload.clone()),
        ("workload_kind", w.workload_kind.clone()),
        ("engine", w.engine.clone()),
    ]
}

/// Cumulative engine buckets to prometheus-client's per-bucket counts. Counts are whole
/// numbers in every engine; a bucket that is lower than the one before (a torn read across
/// the engine's own series) contributes 0 rather than a negative count.
fn histogram_value(h: &HistogramReading) -> HistogramValue {
    let mut buckets = Vec::with_capacity(h.buckets.len());
    let mut previous = 0u64;
    for (le, cumulative) in &h.buckets {
        let cumulative = cumulative.max(0.0).round() as u64;
        let cumulative = cumulative.max(previous);
        buckets.push((*le, cumulative - previous));
        previous = cumulative;
    }
    HistogramValue {
        sum: h.sum,
        // `_count` must equal the `+Inf` bucket.
        count: previous,
        buckets,
    }
}

pub(super) fn families(s: &Snapshot) -> Vec<Family> {
    let mut allocated = Family::gauge(
        "gpu_pod_gpus_allocated",
        "Share of the physical GPU allocated to the container: 1 for a whole GPU, replicas held / replicas advertised for time-slicing, MIG memory / GPU memory for a MIG instance.",
    );
    let mut util = Family::gauge(
        "gpu_pod_utilization_ratio",
        "The container's GPU utilization (0..1): the GPU's when one container holds it, else the sum of its processes' SM utilization.",
    );
    let mut memory = Family::gauge(
        "gpu_pod_memory_used_bytes",
        "Device memory used by the container on the GPU (or MIG instance).",
    );
    for p in &s.pods {
        let labels = || pod_labels(s, p);
        allocated.push_opt(
            || {
                let mut l = labels();
                l.push(("sharing", p.sharing.label().to_string()));
                l
            },
            p.allocated,
        );
        util.push_opt(labels, p.utilization_ratio);
        memory.push_opt(labels, p.memory_used_bytes.map(|v| v as f64));
    }

    let mut in_flight = Family::gauge(
        "gpu_workload_requests_in_flight",
        "Requests the serving engine is processing now, summed over its models.",
    );
    let mut waiting = Family::gauge(
        "gpu_workload_requests_waiting",
        "Requests queued in the serving engine, not yet processing.",
    );
    let mut duration = Family::histogram(
        "gpu_workload_request_duration_seconds",
        "End-to-end request latency as the engine measured it, with the engine's buckets.",
    );
    let mut requests = Family::counter(
        "gpu_workload_requests",
        "Requests the serving engine finished since it started.",
    );
    for w in &s.workloads {
        let labels = || workload_labels(s, w);
        in_flight.push_opt(labels, w.in_flight);
        waiting.push_opt(labels, w.waiting);
        requests.push_opt(labels, w.requests_total);
        if let Some(h) = &w.duration_seconds {
            duration.push_histogram(labels(), histogram_value(h));
        }
    }

    let node = || vec![("node", s.node.clone())];
    let mut kubelet_up = Family::gauge(
        "gpuscale_exporter_kubelet_up",
        "1 when the kubelet pod-resources API answered in the last cycle, else 0.",
    );
    kubelet_up.push_opt(node, s.attribution.kubelet_up.map(f64::from_bool));
    let mut kube_api_up = Family::gauge(
        "gpuscale_exporter_kube_api_up",
        "1 while the watch of this node's pods through the Kubernetes API is live, else 0 (off, no access, or failing).",
    );
    kube_api_up.push_opt(node, s.attribution.kube_api_up.map(f64::from_bool));
    let mut scrape_errors = Family::counter(
        "gpuscale_exporter_workload_scrape_errors",
        "Failed scrapes of a serving pod's metrics endpoint (its gpu_workload_* series are absent meanwhile).",
    );
    for ((namespace, pod, engine), count) in &s.attribution.workload_scrape_errors {
        scrape_errors.push(
            vec![
                ("node", s.node.clone()),
                ("namespace", namespace.clone()),
                ("pod", pod.clone()),
                ("engine", engine.clone()),
            ],
            *count as f64,
        );
    }
    vec![
        allocated,
        util,
        memory,
        in_flight,
        waiting,
        duration,
        requests,
        kubelet_up,
        kube_api_up,
        scrape_errors,
    ]
}

trait FromBool {
    fn from_bool(b: bool) -> f64;
}

impl FromBool for f64 {
    fn from_bool(b: bool) -> f64 {
        if b { 1.0 } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets_become_per_bucket_counts() {
        let h = HistogramReading {
            buckets: vec![(0.5, 2.0), (1.0, 5.0), (2.0, 4.0), (f64::INFINITY, 9.0)],
            sum: 3.5,
            count: 9.0,
        };
        let v = histogram_value(&h);
        assert_eq!(
            v.buckets,
            vec![(0.5, 2), (1.0, 3), (2.0, 0), (f64::INFINITY, 4)]
        );
        assert_eq!(v.count, 9);
    }
}
