//! Turns a [`Snapshot`] into OpenMetrics text with `prometheus-client`.
//!
//! Encoding happens once per collection cycle, not per scrape: a scrape only copies the
//! bytes, so scrape latency does not grow with GPUs or pods and never touches NVML.

mod attribution;
mod dcgm;
mod gpuscale;

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::snapshot::Snapshot;

/// Which names the GPU series are published under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricNames {
    /// gpuscale's own names (`gpu_utilization_ratio`...), base units.
    Gpuscale,
    /// dcgm-exporter's names and labels (`DCGM_FI_DEV_GPU_UTIL`...), for existing dashboards.
    Dcgm,
    /// Both sets, for migrating dashboards and alerts one at a time.
    Both,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("encoding metrics failed: {0}")]
    Encode(#[from] fmt::Error),
}

/// Label pairs of one sample, in output order.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// One histogram sample: per-bucket (not cumulative) counts by upper bound, ending with
/// `+Inf`, as prometheus-client encodes them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramValue {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

/// One metric family: its descriptor and samples.
#[derive(Debug)]
pub(crate) struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
    histograms: Vec<(Labels, HistogramValue)>,
}

impl Family {
    pub(crate) fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Gauge,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }

    /// A counter; `name` is without `_total`, which OpenMetrics adds to the sample.
    pub(crate) fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Counter,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }

    pub(crate) fn histogram(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricType::Histogram,
            samples: Vec::new(),
            histograms: Vec::new(),
        }
    }

    pub(crate) fn push_histogram(&mut self, labels: Labels, value: HistogramValue) {
        self.histograms.push((labels, value));
    }

    pub(crate) fn push(&mut self, labels: Labels, value: f64) {
        self.samples.push((labels, value));
    }

    /// Adds a sample only when the reading exists: absent stays absent.
    pub(crate) fn push_opt(&mut self, labels: impl FnOnce() -> Labels, value: Option<f64>) {
        if let Some(value) = value {
            self.samples.push((labels(), value));
        }
    }
}

#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for family in self
            .0
            .iter()
            .filter(|f| !f.samples.is_empty() || !f.histograms.is_empty())
        {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let sample = metric.encode_family(labels)?;
                match family.kind {
                    MetricType::Counter => ConstCounter::new(*value).encode(sample)?,
                    _ => ConstGauge::new(*value).encode(sample)?,
                }
            }
            for (labels, h) in &family.histograms {
                let mut sample = metric.encode_family(labels)?;
                sample.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    h.sum, h.count, &h.buckets, None,
                )?;
            }
        }
        Ok(())
    }
}

/// The exposition in both formats: OpenMetrics for Prometheus (which asks for it), and the
/// classic text format 0.0.4 for clients that do not (curl, `promtool check metrics`).
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub openmetrics: String,
    pub text: String,
}

/// Encodes a snapshot in both formats.
pub fn encode_both(snapshot: &Snapshot, names: MetricNames) -> Result<Exposition, Error> {
    let openmetrics = encode(snapshot, names)?;
    let text = openmetrics_to_text(&openmetrics);
    Ok(Exposition { openmetrics, text })
}

/// Rewrites prometheus-client's OpenMetrics output as text format 0.0.4: counter
/// descriptors take the `_total` sample name, and `# EOF` / `# UNIT` lines go. Samples are
/// the same in both formats for the gauge and counter families this exporter writes.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match descriptor {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(kind);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The full OpenMetrics exposition for a snapshot, `# EOF` included.
pub fn encode(snapshot: &Snapshot, names: MetricNames) -> Result<String, Error> {
    let mut families = Vec::new();
    if matches!(names, MetricNames::Gpuscale | MetricNames::Both) {
        families.extend(gpuscale::families(snapshot));
    }
    if matches!(names, MetricNames::Dcgm | MetricNames::Both) {
        families.extend(dcgm::families(snapshot));
    }
    families.extend(attribution::families(snapshot));
    families.extend(health_families(snapshot));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families)));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

fn health_families(s: &Snapshot) -> Vec<Family> {
    let node = || vec![("node", s.node.clone())];
    let mut up = Family::gauge(
        "gpuscale_exporter_nvml_up",
        "1 when NVML is loaded and answering, 0 when the library or driver is unavailable.",
    );
    up.push(node(), if s.nvml_up { 1.0 } else { 0.0 });
    let mut gpus = Family::gauge(
        "gpuscale_exporter_gpus",
        "GPUs NVML reported in the last collection cycle.",
    );
    gpus.push(node(), s.gpus.len() as f64);
    let mut duration = Family::gauge(
        "gpuscale_exporter_collection_duration_seconds",
        "Time the last collection cycle took.",
    );
    duration.push(node(), s.health.last_duration_seconds);
    let mut last = Family::gauge(
        "gpuscale_exporter_last_collection_success_timestamp_seconds",
        "Unix time of the last collection cycle in which NVML answered.",
    );
    last.push_opt(node, s.health.last_success_unix_seconds);
    let mut cycles = Family::counter(
        "gpuscale_exporter_collections",
        "Collection cycles run since the exporter started.",
    );
    cycles.push(node(), s.health.collections_total as f64);
    let mut errors = Family::counter(
        "gpuscale_exporter_collection_errors",
        "Failed NVML calls by field (unsupported fields are not errors and are not counted).",
    );
    for (field, count) in &s.health.errors_by_field {
        errors.push(
            vec![("node", s.node.clone()), ("field", (*field).to_string())],
            *count as f64,
        );
    }
    let mut build = Family::gauge(
        "gpuscale_exporter_build_info",
        "Version of the running exporter; always 1.",
    );
    build.push(
        vec![
            ("node", s.node.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ],
        1.0,
    );
    vec![up, gpus, duration, last, cycles, errors, build]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_renames_counter_descriptors_and_drops_eof() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total{x=\"1\"} 2.0\n\
                  # HELP b Gauge.\n# TYPE b gauge\nb 1.0\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total{x=\"1\"} 2.0\n\
             # HELP b Gauge.\n# TYPE b gauge\nb 1.0\n"
        );
    }
}
