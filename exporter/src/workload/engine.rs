//! Serving engines: how each one is recognised, where its metrics are, and which of its
//! series become the normalized in-flight / waiting / latency / request-count signals.
//!
//! Each engine's own labels (model name, finish reason...) are summed away, so the
//! published series stay one per pod whatever the engine labels with.

use std::collections::HashMap;

use super::parse;
use crate::pods::PodMeta;
use crate::snapshot::HistogramReading;

/// Pod annotations read here.
pub const ANN_ENGINE: &str = "gpuscale.io/engine";
pub const ANN_PORT: &str = "gpuscale.io/metrics-port";
pub const ANN_PATH: &str = "gpuscale.io/metrics-path";
pub const ANN_IN_FLIGHT: &str = "gpuscale.io/in-flight-metric";
pub const ANN_WAITING: &str = "gpuscale.io/waiting-metric";
pub const ANN_LATENCY: &str = "gpuscale.io/latency-histogram";
pub const ANN_LATENCY_UNIT: &str = "gpuscale.io/latency-unit";
pub const ANN_REQUESTS: &str = "gpuscale.io/requests-counter";
pub const ANN_PROM_PORT: &str = "prometheus.io/port";
pub const ANN_PROM_PATH: &str = "prometheus.io/path";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    Vllm,
    Triton,
    Tgi,
    Sglang,
    Generic,
}

impl Engine {
    pub fn label(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm",
            Engine::Triton => "triton",
            Engine::Tgi => "tgi",
            Engine::Sglang => "sglang",
            Engine::Generic => "generic",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "vllm" => Some(Engine::Vllm),
            "triton" | "tritonserver" => Some(Engine::Triton),
            "tgi" | "text-generation-inference" => Some(Engine::Tgi),
            "sglang" => Some(Engine::Sglang),
            "generic" => Some(Engine::Generic),
            _ => None,
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            Engine::Vllm => Some(8000),
            Engine::Triton => Some(8002),
            Engine::Tgi => Some(80),
            Engine::Sglang => Some(30000),
            Engine::Generic => None,
        }
    }

    /// Recognises an engine from a container image (or name).
    fn detect(text: &str) -> Option<Self> {
        let text = text.to_ascii_lowercase();
        if text.contains("vllm") {
            Some(Engine::Vllm)
        } else if text.contains("tritonserver") || text.contains("triton-inference") {
            Some(Engine::Triton)
        } else if text.contains("text-generation-inference") {
            Some(Engine::Tgi)
        } else if text.contains("sglang") {
            Some(Engine::Sglang)
        } else {
            None
        }
    }
}

/// What a sample name feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    InFlight,
    Waiting,
    Requests,
    Bucket,
    Sum,
    Count,
    /// Triton: `nv_inference_request_success`, a request count and the latency count.
    TritonSuccess,
    /// Triton: cumulative `nv_inference_request_duration_us`.
    TritonDurationUs,
    TritonSummarySumUs,
    TritonSummaryCount,
}

/// An engine's metrics endpoint and the sample names it maps.
#[derive(Debug, Clone)]
pub struct Profile {
    pub engine: Engine,
    pub port: u16,
    pub path: String,
    slots: HashMap<String, Slot>,
    /// Multiplier from the engine's latency unit to seconds.
    latency_scale: f64,
}

/// The normalized readings from one engine page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineValues {
    pub in_flight: Option<f64>,
    pub waiting: Option<f64>,
    pub requests_total: Option<f64>,
    pub duration_seconds: Option<HistogramReading>,
}

impl EngineValues {
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_none()
            && self.waiting.is_none()
            && self.requests_total.is_none()
            && self.duration_seconds.is_none()
    }
}

/// Counter names are accepted with and without `_total` (OpenMetrics vs. older clients).
fn counter(slots: &mut HashMap<String, Slot>, name: &str, slot: Slot) {
    let base = name.strip_suffix("_total").unwrap_or(name);
    slots.insert(base.to_string(), slot);
    slots.insert(format!("{base}_total"), slot);
}

fn counter_or_gauge(slots: &mut HashMap<String, Slot>, name: &str, slot: Slot) {
    if slot == Slot::Requests {
        counter(slots, name, slot);
    } else {
        slots.insert(name.to_string(), slot);
    }
}

fn histogram(slots: &mut HashMap<String, Slot>, name: &str) {
    slots.insert(format!("{name}_bucket"), Slot::Bucket);
    slots.insert(format!("{name}_sum"), Slot::Sum);
    slots.insert(format!("{name}_count"), Slot::Count);
}

impl Profile {
    /// The built-in mapping of `engine`, with any per-pod overrides from annotations.
    pub fn new(engine: Engine, port: u16, path: String, ann: &HashMapLike<'_>) -> Self {
        let mut slots = HashMap::new();
        let mut latency_scale = 1.0;
        let (in_flight, waiting, latency, requests): (
            Option<&str>,
            Option<&str>,
            Option<&str>,
            Option<&str>,
        ) = match engine {
            Engine::Vllm => (
                Some("vllm:num_requests_running"),
                Some("vllm:num_requests_waiting"),
                Some("vllm:e2e_request_latency_seconds"),
                Some("vllm:request_success_total"),
            ),
            Engine::Sglang => (
                Some("sglang:num_running_reqs"),
                Some("sglang:num_queue_reqs"),
                Some("sglang:e2e_request_latency_seconds"),
                Some("sglang:num_requests_total"),
            ),
            Engine::Tgi => (
                Some("tgi_batch_current_size"),
                Some("tgi_queue_size"),
                Some("tgi_request_duration"),
                Some("tgi_request_count"),
            ),
            Engine::Triton => {
                slots.insert(
                    "nv_inference_pending_request_count".to_string(),
                    Slot::Waiting,
                );
                counter(
                    &mut slots,
                    "nv_inference_request_success",
                    Slot::TritonSuccess,
                );
                counter(&mut slots, "nv_inference_request_failure", Slot::Requests);
                counter(
                    &mut slots,
                    "nv_inference_request_duration_us",
                    Slot::TritonDurationUs,
                );
                slots.insert(
                    "nv_inference_request_summary_us_sum".to_string(),
                    Slot::TritonSummarySumUs,
                );
                slots.insert(
                    "nv_inference_request_summary_us_count".to_string(),
                    Slot::TritonSummaryCount,
                );
                (None, None, None, None)
            }
            Engine::Generic => (None, None, None, None),
        };
        let pick = |key: &str, builtin: Option<&str>| -> Option<String> {
            ann.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .or_else(|| builtin.map(str::to_string))
        };
        if let Some(name) = pick(ANN_IN_FLIGHT, in_flight) {
            slots.retain(|_, s| *s != Slot::InFlight);
            slots.insert(name, Slot::InFlight);
        }
        if let Some(name) = pick(ANN_WAITING, waiting) {
            slots.retain(|_, s| *s != Slot::Waiting);
            slots.insert(name, Slot::Waiting);
        }
        if let Some(name) = pick(ANN_REQUESTS, requests) {
            slots.retain(|_, s| {
                !matches!(s, Slot::Requests | Slot::TritonSuccess) || engine != Engine::Triton
            });
            counter(&mut slots, &name, Slot::Requests);
        }
        if let Some(name) = pick(ANN_LATENCY, latency) {
            slots.retain(|_, s| {
                !matches!(
                    s,
                    Slot::TritonDurationUs | Slot::TritonSummarySumUs | Slot::TritonSummaryCount
                )
            });
            histogram(&mut slots, &name);
            latency_scale = match ann.get(ANN_LATENCY_UNIT).map(|u| u.trim()) {
                Some("ms") => 1e-3,
                Some("us") => 1e-6,
                _ => 1.0,
            };
        }
        if engine == Engine::Sglang {
            // Newer SGLang releases also publish underscore names (`sglang_num_running_reqs`).
            let alternates = [
                (ANN_IN_FLIGHT, "sglang_num_running_reqs", Slot::InFlight),
                (ANN_WAITING, "sglang_num_queue_reqs", Slot::Waiting),
                (ANN_REQUESTS, "sglang_num_requests_total", Slot::Requests),
            ];
            for (key, name, slot) in alternates {
                if ann.get(key).is_none() {
                    counter_or_gauge(&mut slots, name, slot);
                }
            }
            if ann.get(ANN_LATENCY).is_none() {
                histogram(&mut slots, "sglang_e2e_request_latency_seconds");
            }
        }
        Self {
            engine,
            port,
            path,
            slots,
            latency_scale,
        }
    }

    /// The profile for a pod, or `None` when it is not a recognised serving pod.
    /// `gpuscale.io/engine` wins, then any generic-mapping annotation, then the image and
    /// container names; port and path come from annotations, then the engine's default.
    pub fn for_pod(pod: &PodMeta) -> Option<Self> {
        let ann = HashMapLike(&pod.annotations);
        let engine = match ann.get(ANN_ENGINE) {
            Some(value) => Engine::parse(value)?,
            None => {
                let generic = [ANN_IN_FLIGHT, ANN_WAITING, ANN_LATENCY, ANN_REQUESTS]
                    .iter()
                    .any(|k| ann.get(k).is_some());
                let detected = pod
                    .containers
                    .iter()
                    .find_map(|c| Engine::detect(&c.image).or_else(|| Engine::detect(&c.name)));
                match detected {
                    Some(engine) => engine,
                    None if generic => Engine::Generic,
                    None => return None,
                }
            }
        };
        let port = ann
            .get(ANN_PORT)
            .or_else(|| ann.get(ANN_PROM_PORT))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .or_else(|| engine.default_port())?;
        let path = ann
            .get(ANN_PATH)
            .or_else(|| ann.get(ANN_PROM_PATH))
            .map(|p| p.trim().to_string())
            .filter(|p| p.starts_with('/'))
            .unwrap_or_else(|| "/metrics".to_string());
        Some(Self::new(engine, port, path, &ann))
    }

    /// Reads the profile's signals from an exposition page.
    pub fn extract(&self, text: &str) -> EngineValues {
        let mut acc = Acc::default();
        parse::scan(
            text,
            |name| self.slots.contains_key(name),
            |name, labels, value| {
                if !value.is_finite() && !matches!(self.slots.get(name), Some(Slot::Bucket)) {
                    return;
                }
                match self.slots.get(name) {
                    Some(Slot::InFlight) => add(&mut acc.in_flight, value),
                    Some(Slot::Waiting) => add(&mut acc.waiting, value),
                    Some(Slot::Requests) => add(&mut acc.requests, value),
                    Some(Slot::TritonSuccess) => {
                        add(&mut acc.requests, value);
                        add(&mut acc.triton_success, value);
                    }
                    Some(Slot::TritonDurationUs) => add(&mut acc.triton_duration_us, value),
                    Some(Slot::TritonSummarySumUs) => add(&mut acc.triton_summary_sum_us, value),
                    Some(Slot::TritonSummaryCount) => add(&mut acc.triton_summary_count, value),
                    Some(Slot::Sum) => add(&mut acc.sum, value),
                    Some(Slot::Count) => add(&mut acc.count, value),
                    Some(Slot::Bucket) => {
                        let Some(le) =
                            parse::label(labels, "le").and_then(|l| parse::parse_value(&l))
                        else {
                            return;
                        };
                        if value.is_nan() {
                            return;
                        }
                        match acc.buckets.iter_mut().find(|(b, _)| *b == le) {
                            Some((_, total)) => *total += value,
                            None => acc.buckets.push((le, value)),
                        }
                    }
                    None => {}
                }
            },
        );
        let duration_seconds = acc.histogram(self.latency_scale);
        EngineValues {
            in_flight: acc.in_flight,
            waiting: acc.waiting,
            requests_total: acc.requests,
            duration_seconds,
        }
    }
}

/// Annotation lookup over the pod's map.
pub struct HashMapLike<'a>(pub &'a std::collections::BTreeMap<String, String>);

impl HashMapLike<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Acc {
    in_flight: Option<f64>,
    waiting: Option<f64>,
    requests: Option<f64>,
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
    triton_success: Option<f64>,
    triton_duration_us: Option<f64>,
    triton_summary_sum_us: Option<f64>,
    triton_summary_count: Option<f64>,
}

fn add(slot: &mut Option<f64>, value: f64) {
    *slot = Some(slot.unwrap_or(0.0) + value);
}

impl Acc {
    /// A histogram from the engine's buckets, or for Triton (which has no request-latency
    /// histogram) one `+Inf` bucket with the count and the µs sum converted to seconds.
    fn histogram(&mut self, scale: f64) -> Option<HistogramReading> {
        if !self.buckets.is_empty() {
            self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut buckets: Vec<(f64, f64)> = self
                .buckets
                .iter()
                .map(|(le, n)| (if le.is_finite() { le * scale } else { *le }, *n))
                .collect();
            let inf = buckets
                .last()
                .filter(|(le, _)| le.is_infinite())
                .map(|(_, n)| *n);
            let count = self.count.or(inf)?;
            if inf.is_none() {
                buckets.push((f64::INFINITY, count));
            }
            return Some(HistogramReading {
                buckets,
                sum: self.sum.unwrap_or(0.0) * scale,
                count,
            });
        }
        let (sum_us, count) = match (self.triton_summary_sum_us, self.triton_summary_count) {
            (Some(sum), Some(count)) => (sum, count),
            _ => (self.triton_duration_us?, self.triton_success?),
        };
        Some(HistogramReading {
            buckets: vec![(f64::INFINITY, count)],
            sum: sum_us / 1e6,
            count,
        })
    }
}

#[cfg(test)]
mod tests;
