//! What one replica can carry, and the metric values an HPA would read for a given demand
//! and set of ready replicas. Kept apart from the controller so the same demand can be seen
//! through different signals (utilization saturates at 100 %, concurrency does not), which
//! is the main reason the reactive policies differ.

use crate::explain::{TOLERANCE, Target, replicas_for};

/// The load model of one replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Load (the trace's unit, e.g. requests in flight) one replica serves with its GPUs
    /// fully busy. Demand above `ready × per_replica` is unmet.
    pub per_replica: f64,
    /// GPUs each replica requests.
    pub gpus_per_replica: u32,
}

/// A signal an HPA metric can be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Average GPU utilization (0..1) of the ready replicas: what `gpu_utilization` serves.
    Utilization,
    /// Requests in flight of the workload, summed (waiting requests included):
    /// `namespace_workload:gpu_requests_in_flight:sum`.
    InFlight,
    /// Replicas needed at the forecast horizon: `namespace_workload:gpu_replicas:forecast`.
    ForecastReplicas,
}

impl Signal {
    /// Which signal an External metric name stands for, from the names the adapter config
    /// and the rules publish.
    pub fn for_metric(name: &str) -> Option<Self> {
        // The shipped adapter config spells names with '-' (requests-in-flight), the rules
        // with '_' (gpu_requests_in_flight): compare them alike.
        let n = name.to_ascii_lowercase().replace('-', "_");
        if n.contains("replicas") && n.contains("forecast") {
            Some(Self::ForecastReplicas)
        } else if n.contains("forecast") {
            // Other forecasts (in-flight, busy) are not replayed as current load.
            None
        } else if n.contains("in_flight") || n.contains("concurrency") {
            Some(Self::InFlight)
        } else if n.contains("utilization") || n.contains("busy") {
            Some(Self::Utilization)
        } else {
            None
        }
    }
}

/// What the HPA reads at one sync.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub demand: f64,
    pub ready_replicas: u32,
    /// Pods holding GPUs (ready or still loading): the GPUs the utilization average covers.
    pub bound_replicas: u32,
    /// The forecast replicas series at this time, if the rules produced one.
    pub forecast_replicas: Option<f64>,
}

impl Capacity {
    /// The metric's value, or `None` when the series would be absent (no ready pod reports a
    /// utilization; no forecast sample), in which case the HPA counts the metric as invalid.
    pub fn value(&self, signal: Signal, obs: &Observation) -> Option<f64> {
        match signal {
            // Ready pods share the load (each at most 100 %); pods still loading hold GPUs
            // that idle. No pod holding a GPU: no series.
            Signal::Utilization => (obs.bound_replicas > 0).then(|| {
                let ready = f64::from(obs.ready_replicas);
                let busy = if ready > 0.0 {
                    (obs.demand / (ready * self.per_replica)).min(1.0)
                } else {
                    0.0
                };
                busy * ready / f64::from(obs.bound_replicas.max(obs.ready_replicas))
            }),
            Signal::InFlight => Some(obs.demand),
            Signal::ForecastReplicas => obs.forecast_replicas.filter(|v| v.is_finite()),
        }
    }

    /// The metric's replica proposal at `current` (spec) replicas.
    ///
    /// `AverageValue` (GetExternalPerPodMetricReplicas) divides by the replica count;
    /// `Value` (GetExternalMetricReplicas → getUsageRatioReplicaCount in
    /// replica_calculator.go) multiplies the ratio by the *ready* pod count once outside the
    /// tolerance, so pods waiting for a node do not compound the scale-up.
    pub fn proposal(
        &self,
        signal: Signal,
        target: Target,
        obs: &Observation,
        current: i32,
    ) -> Option<i32> {
        let v = self.value(signal, obs)?;
        Some(match target {
            Target::AverageValue(_) => replicas_for(v, target, current),
            Target::Value(t) => {
                let milli = |x: f64| (x * 1000.0).round();
                let ratio = milli(v) / milli(t);
                if current == 0 {
                    ratio.ceil() as i32
                } else if (1.0 - ratio).abs() <= TOLERANCE {
                    current
                } else {
                    (ratio * f64::from(obs.ready_replicas)).ceil() as i32
                }
            }
        })
    }

    /// Load the ready replicas can serve.
    pub fn ready(&self, ready_replicas: u32) -> f64 {
        f64::from(ready_replicas) * self.per_replica
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Capacity = Capacity {
        per_replica: 10.0,
        gpus_per_replica: 1,
    };

    /// The shipped adapter config's names (examples/*.yaml) and the rules' names both map.
    #[test]
    fn metric_names_of_the_adapter_config_and_the_rules() {
        assert_eq!(
            Signal::for_metric("requests-in-flight"),
            Some(Signal::InFlight)
        );
        assert_eq!(
            Signal::for_metric("namespace_workload:gpu_requests_in_flight:sum"),
            Some(Signal::InFlight)
        );
        assert_eq!(
            Signal::for_metric("gpu-replicas-forecast"),
            Some(Signal::ForecastReplicas)
        );
        assert_eq!(
            Signal::for_metric("gpu-utilization"),
            Some(Signal::Utilization)
        );
        assert_eq!(Signal::for_metric("gpu-in-flight-forecast"), None);
        assert_eq!(Signal::for_metric("latency-p95-seconds"), None);
    }

    /// Utilization cannot exceed 100 %: with a 0.7 target a saturated HPA grows at most by
    /// 1/0.7 per sync, whatever the backlog; concurrency sees the whole backlog.
    #[test]
    fn utilization_saturates_concurrency_does_not() {
        let obs = Observation {
            demand: 100.0,
            ready_replicas: 2,
            bound_replicas: 2,
            forecast_replicas: None,
        };
        assert_eq!(CAP.value(Signal::Utilization, &obs), Some(1.0));
        assert_eq!(
            CAP.proposal(Signal::Utilization, Target::Value(0.7), &obs, 2),
            Some(3)
        );
        assert_eq!(
            CAP.proposal(Signal::InFlight, Target::AverageValue(8.0), &obs, 2),
            Some(13)
        );
    }

    /// Absent series make the metric invalid rather than zero (DESIGN: absent, never invented).
    #[test]
    fn absent_series() {
        let obs = Observation {
            demand: 5.0,
            ready_replicas: 0,
            bound_replicas: 0,
            forecast_replicas: None,
        };
        assert_eq!(CAP.value(Signal::Utilization, &obs), None);
        assert_eq!(CAP.value(Signal::ForecastReplicas, &obs), None);
    }

    /// replica_calculator.go getUsageRatioReplicaCount: a Value metric's ratio multiplies the
    /// ready pods, not the spec: 3 ready at 100 % (target 0.7) with 10 in spec asks for 5.
    /// Loading pods' idle GPUs pull the average down.
    #[test]
    fn value_target_scales_ready_pods() {
        let obs = Observation {
            demand: 100.0,
            ready_replicas: 3,
            bound_replicas: 3,
            forecast_replicas: None,
        };
        assert_eq!(
            CAP.proposal(Signal::Utilization, Target::Value(0.7), &obs, 10),
            Some(5)
        );
        let loading = Observation {
            bound_replicas: 4,
            ..obs
        };
        assert_eq!(CAP.value(Signal::Utilization, &loading), Some(0.75));
    }

    #[test]
    fn metric_names() {
        assert_eq!(
            Signal::for_metric("namespace_workload:gpu_replicas:forecast"),
            Some(Signal::ForecastReplicas)
        );
        assert_eq!(
            Signal::for_metric("gpu_requests_in_flight"),
            Some(Signal::InFlight)
        );
        assert_eq!(
            Signal::for_metric("gpu_utilization"),
            Some(Signal::Utilization)
        );
        assert_eq!(Signal::for_metric("gpu_latency_p95"), None);
    }
}
