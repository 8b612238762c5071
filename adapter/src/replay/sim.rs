//! One policy replayed over one demand trace: every tick the cluster advances, every 15 s
//! the HPA syncs; the outcome is what users pay (GPU-hours) against what they fail to serve
//! (minutes of demand above ready capacity).

use serde::Serialize;

use super::capacity::{Capacity, Observation, Signal};
use super::hpa::{Behavior, Controller, SYNC_PERIOD_SECONDS};
use super::nodes::{Cluster, NodeModel};
use super::trace::Trace;
use crate::explain::Target;

/// One HPA metric of a policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    pub signal: Signal,
    pub target: Target,
}

/// A scaling policy: the HPA's metrics, and whether placeholder pods pre-warm nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub metrics: Vec<MetricSpec>,
    /// Placeholder pods = max(0, forecast replicas − replicas), scaled by their own stock
    /// HPA (default behavior, AverageValue 1): the `cluster:gpu_headroom:forecast` formula
    /// (GPUs needed at the horizon beyond those held), evaluated here in replica units
    /// because allocation is simulated.
    pub prewarm: bool,
}

impl Policy {
    /// Whether the policy reads the forecast.
    pub fn needs_forecast(&self) -> bool {
        self.prewarm
            || self
                .metrics
                .iter()
                .any(|m| m.signal == Signal::ForecastReplicas)
    }
}

/// The workload's HPA, apart from its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaSettings {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub behavior: Behavior,
}

/// Everything a replay of one policy needs.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    pub trace: &'a Trace,
    /// Forecast replicas on the trace's grid (`None` where the series has no sample).
    pub forecast: Option<&'a [Option<f64>]>,
    pub hpa: HpaSettings,
    pub nodes: NodeModel,
    pub capacity: Capacity,
    pub price_per_gpu_hour: f64,
    pub initial_replicas: i32,
    /// Seconds simulated but not scored: a trace starts from a guessed steady state, and
    /// the rules have no history yet.
    pub warmup: f64,
}

/// One point of the time series kept for the plot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t: f64,
    pub demand: f64,
    pub ready_capacity: f64,
    pub replicas: i32,
    pub ready_replicas: u32,
    pub placeholders: i32,
    pub nodes: u32,
}

/// The outcome of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: String,
    /// Minutes during which demand exceeded ready capacity.
    pub unmet_demand_minutes: f64,
    /// Load above ready capacity (requests waiting, in the trace's unit): peak and p95
    /// over all ticks; the queue/latency proxy.
    pub queue_peak: f64,
    pub queue_p95: f64,
    /// Load-seconds of unmet demand / 60: how much, not just how long.
    pub unmet_load_minutes: f64,
    pub gpu_hours: f64,
    pub dollars: f64,
    /// Times the workload's HPA changed the replica count.
    pub scale_events: u32,
    pub nodes_added: u32,
    pub peak_replicas: i32,
    #[serde(skip)]
    pub series: Vec<Point>,
}

/// Replays `policy` over the trace.
pub fn run(setup: &Setup<'_>, policy: &Policy) -> Outcome {
    let trace = setup.trace;
    let step = trace.step;
    let per_sync = ((SYNC_PERIOD_SECONDS / step).round() as usize).max(1);
    let mut hpa = Controller::new(
        setup.hpa.behavior.clone(),
        setup.hpa.min_replicas,
        setup.hpa.max_replicas,
    );
    // The pre-warming HPA of issue 6: its own object, default behavior, minReplicas 0.
    let mut prewarm_hpa = Controller::new(Behavior::default(), 0, i32::MAX / 2);
    let gpr = setup.capacity.gpus_per_replica.max(1);
    let mut model = setup.nodes.clone();
    model.replicas_per_node = (model.gpus_per_node / gpr).max(1);
    let mut replicas = setup.initial_replicas;
    let mut placeholders = 0i32;
    let mut cluster = Cluster::new(model, replicas.max(0) as u32, trace.start);
    let mut ready = replicas.max(0) as u32;
    let mut bound = ready;
    let mut unmet_seconds = 0.0;
    let mut unmet_load_seconds = 0.0;
    let mut queue = Vec::with_capacity(trace.values.len());
    let mut series = Vec::with_capacity(trace.values.len());
    let mut scale_events = 0;
    let mut peak_replicas = replicas;
    let mut gpu_seconds_before = 0.0;
    let mut nodes_before = 0;
    for (k, &demand) in trace.values.iter().enumerate() {
        let t = trace.start + k as f64 * step;
        let forecast = setup.forecast.and_then(|f| f.get(k).copied().flatten());
        if k % per_sync == 0 {
            let obs = Observation {
                demand,
                ready_replicas: ready,
                bound_replicas: bound,
                forecast_replicas: forecast,
            };
            let proposals: Vec<Option<i32>> = policy
                .metrics
                .iter()
                .map(|m| setup.capacity.proposal(m.signal, m.target, &obs, replicas))
                .collect();
            let next = hpa.sync(t, replicas, &proposals);
            if next != replicas {
                scale_events += 1;
                replicas = next;
            }
            if policy.prewarm {
                let headroom = forecast.map(|f| (f - f64::from(replicas)).max(0.0));
                let proposal = headroom.map(|h| {
                    crate::explain::replicas_for(h, Target::AverageValue(1.0), placeholders)
                });
                placeholders = prewarm_hpa.sync(t, placeholders, &[proposal]);
            }
        }
        peak_replicas = peak_replicas.max(replicas);
        let scored = t >= trace.start + setup.warmup;
        if !scored {
            scale_events = 0;
            nodes_before = cluster.nodes_added();
        }
        let snap = cluster.step(t, replicas.max(0) as u32, placeholders.max(0) as u32);
        // The scored window starts at the warm-up's end: a step bills the tick before it.
        if t <= trace.start + setup.warmup {
            gpu_seconds_before = cluster.gpu_seconds();
        }
        ready = snap.ready_replicas;
        bound = snap.bound_replicas;
        let capacity = setup.capacity.ready(ready);
        let unmet = (demand - capacity).max(0.0);
        if scored {
            if unmet > 1e-9 {
                unmet_seconds += step;
                unmet_load_seconds += unmet * step;
            }
            queue.push(unmet);
        }
        series.push(Point {
            t,
            demand,
            ready_capacity: capacity,
            replicas,
            ready_replicas: ready,
            placeholders,
            nodes: snap.nodes,
        });
    }
    // Bill the last tick too.
    cluster.step(
        trace.end() + step,
        replicas.max(0) as u32,
        placeholders.max(0) as u32,
    );
    let gpu_hours = (cluster.gpu_seconds() - gpu_seconds_before) / 3600.0;
    Outcome {
        policy: policy.name.clone(),
        unmet_demand_minutes: unmet_seconds / 60.0,
        queue_peak: queue.iter().copied().fold(0.0, f64::max),
        queue_p95: percentile(&mut queue, 0.95),
        unmet_load_minutes: unmet_load_seconds / 60.0,
        gpu_hours,
        dollars: gpu_hours * setup.price_per_gpu_hour,
        scale_events,
        nodes_added: cluster.nodes_added() - nodes_before,
        peak_replicas,
        series,
    }
}

/// Nearest-rank percentile (the value at rank ceil(p·n)).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(trace: &Trace) -> Setup<'_> {
        Setup {
            trace,
            forecast: None,
            hpa: HpaSettings {
                min_replicas: 1,
                max_replicas: 100,
                behavior: Behavior::default(),
            },
            nodes: NodeModel {
                replicas_per_node: 1,
                gpus_per_node: 1,
                lead_time: 120.0,
                pod_start: 30.0,
                scale_down_delay: 600.0,
            },
            capacity: Capacity {
                per_replica: 10.0,
                gpus_per_replica: 1,
            },
            price_per_gpu_hour: 2.0,
            initial_replicas: 1,
            warmup: 0.0,
        }
    }

    fn concurrency() -> Policy {
        Policy {
            name: "reactive-concurrency".into(),
            metrics: vec![MetricSpec {
                signal: Signal::InFlight,
                target: Target::AverageValue(10.0),
            }],
            prewarm: false,
        }
    }

    /// A trace of `values` every 5 s from t = 0.
    fn step_trace(values: Vec<f64>) -> Trace {
        Trace {
            name: "step".into(),
            start: 0.0,
            step: 5.0,
            values,
            warmup: 0.0,
        }
    }

    /// A step from 5 to 20 in flight at t=60 s on one 1-GPU node: the HPA sees it at the
    /// t=60 sync and asks for 2 replicas; the new node is ready at 180 s, the pod at 210 s.
    /// Demand is unmet from 60 s to 210 s: 150 s = 2.5 minutes, 10 requests waiting.
    #[test]
    fn step_demand_hand_computed() {
        let mut values = vec![5.0; 12];
        values.extend(vec![20.0; 120]);
        let trace = step_trace(values);
        let out = run(&setup(&trace), &concurrency());
        assert!((out.unmet_demand_minutes - 2.5).abs() < 1e-9, "{out:?}");
        assert_eq!(out.queue_peak, 10.0);
        assert_eq!(out.scale_events, 1);
        assert_eq!(out.nodes_added, 1);
        // Node 1 the whole 660 s (131 ticks + the last), node 2 from 60 s.
        let expected = (660.0 + 600.0) / 3600.0;
        assert!((out.gpu_hours - expected).abs() < 1e-9, "{}", out.gpu_hours);
        assert!((out.dollars - 2.0 * expected).abs() < 1e-9);
    }

    /// With the forecast two replicas ahead, placeholders get a node ready before the
    /// demand arrives, and only the pod start remains.
    #[test]
    fn prewarm_hides_node_lead_time() {
        let mut values = vec![5.0; 60];
        values.extend(vec![20.0; 60]);
        let trace = step_trace(values);
        let forecast: Vec<Option<f64>> = vec![Some(2.0); 120];
        let mut s = setup(&trace);
        s.forecast = Some(&forecast);
        let mut policy = concurrency();
        policy.prewarm = true;
        let out = run(&s, &policy);
        // Demand steps up at 300 s; the pod binds on the warm node at once: 30 s unmet.
        assert!((out.unmet_demand_minutes - 0.5).abs() < 1e-9, "{out:?}");
        let reactive = run(&setup(&trace), &concurrency());
        assert!((reactive.unmet_demand_minutes - 2.5).abs() < 1e-9);
    }

    /// Warm-up: the step at 60 s falls inside a 100 s warm-up, so only 60 s of its 150 s
    /// unmet demand (ticks 100..205: 110 s) count, and GPU-hours start at 100 s.
    #[test]
    fn warmup_is_not_scored() {
        let mut values = vec![5.0; 12];
        values.extend(vec![20.0; 120]);
        let trace = step_trace(values);
        let mut s = setup(&trace);
        s.warmup = 100.0;
        let out = run(&s, &concurrency());
        assert!(
            (out.unmet_demand_minutes - 110.0 / 60.0).abs() < 1e-9,
            "{out:?}"
        );
        assert_eq!((out.scale_events, out.nodes_added), (0, 0));
        assert!(
            (out.gpu_hours - 2.0 * 560.0 / 3600.0).abs() < 1e-9,
            "{}",
            out.gpu_hours
        );
    }

    #[test]
    fn percentile_nearest_rank() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&mut v, 0.95), 5.0);
        assert_eq!(percentile(&mut v, 0.5), 3.0);
    }
}
