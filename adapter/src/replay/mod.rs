//! `gpuscale-adapter replay`: real demand in, the stock HPA algorithm and GPU node lead time
//! applied, cost and minutes of unmet demand out, for reactive and forecast-driven scaling
//! side by side. It is how users pick targets and behaviours without guessing, and how the
//! project checks that its forecast rules pay for themselves (issue 7).

pub mod capacity;
pub mod hpa;
pub mod nodes;
pub mod plot;
pub mod range;
pub mod report;
pub mod rules;
pub mod sim;
pub mod trace;

use std::path::PathBuf;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

use crate::explain::{self, Target};
use capacity::{Capacity, Signal};
use nodes::NodeModel;
use report::Report;
use sim::{HpaSettings, MetricSpec, Policy, Setup};
use trace::{ServiceModel, Trace};

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Trace(#[from] trace::Error),
    #[error(transparent)]
    Hpa(#[from] explain::Error),
    #[error("{file}: {source}")]
    Behavior { file: String, source: hpa::Error },
    #[error(transparent)]
    Rules(#[from] rules::Error),
    #[error(transparent)]
    Range(#[from] range::Error),
    #[error(transparent)]
    Plot(#[from] plot::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Where demand comes from.
#[derive(Debug, Clone)]
pub enum Demand {
    /// A trace file (see [`trace`]).
    File(PathBuf),
    /// A PromQL range query against a Prometheus (the adapter config's).
    Query {
        prometheus: Box<crate::config::PrometheusConfig>,
        query: String,
        start: f64,
        end: f64,
    },
}

/// Where the forecast comes from.
#[derive(Debug, Clone)]
pub enum ForecastSource {
    /// No forecast: only the reactive policies run.
    None,
    /// Backfill the demand, evaluate the rule files in `dir` with promtool, read the
    /// forecast back from a real Prometheus.
    Rules(rules::Pipeline),
    /// Forecast replicas from a `timestamp,value` CSV (another model, an export of
    /// `namespace_workload:gpu_replicas:forecast`); each value holds until the next one,
    /// for at most `lookback` seconds, like a Prometheus instant query.
    File { path: PathBuf, lookback: f64 },
}

/// Everything `replay` takes.
#[derive(Debug, Clone)]
pub struct Options {
    pub demand: Demand,
    /// HPA manifest text and its file name; `None` uses minReplicas 1, maxReplicas 1000 and
    /// the default behavior.
    pub hpa: Option<(String, String)>,
    pub step: f64,
    pub service: ServiceModel,
    /// Multiply the demand by this.
    pub scale: f64,
    /// Rescale the demand so that its peak equals this (after `scale`).
    pub peak: Option<f64>,
    /// Keep only the first seconds of the trace.
    pub max_duration: Option<f64>,
    /// Seconds simulated (and forecast) but not scored.
    pub warmup: f64,
    pub capacity: Capacity,
    pub nodes: NodeModel,
    pub target_utilization: f64,
    pub target_in_flight: f64,
    pub price_per_gpu_hour: f64,
    pub price_source: String,
    pub forecast: ForecastSource,
}

/// What a replay produced: the report and the forecast it used (for the accuracy report).
#[derive(Debug, Clone)]
pub struct Replay {
    pub report: Report,
    pub trace: Trace,
    pub accuracy: Option<rules::Accuracy>,
}

/// Runs every policy the inputs allow.
pub async fn run(opts: &Options) -> Result<Replay, Error> {
    let mut trace = match &opts.demand {
        Demand::File(path) => trace::load(path, opts.step, opts.service)?,
        Demand::Query {
            prometheus,
            query,
            start,
            end,
        } => range::demand(prometheus, query, *start, *end, opts.step).await?,
    };
    if trace.warmup > 0.0 {
        trace.skip(trace.warmup);
    }
    if let Some(d) = opts.max_duration {
        trace.truncate(d);
    }
    trace.scale(opts.scale);
    if let Some(peak) = opts.peak {
        let p = trace.peak();
        if p > 0.0 {
            trace.scale(peak / p);
        }
    }
    let hpa = hpa_settings(opts)?;
    let (forecast_source, forecast, accuracy) = match &opts.forecast {
        ForecastSource::None => ("none (reactive policies only)".to_string(), None, None),
        ForecastSource::Rules(p) => {
            let out = p.run(&trace).await?;
            (
                out.description.clone(),
                Some(out.replicas),
                Some(out.accuracy),
            )
        }
        ForecastSource::File { path, lookback } => {
            let points = trace::load_points(path)?;
            let grid = range::on_grid(
                &points,
                trace.start,
                trace.step,
                trace.values.len(),
                *lookback,
            );
            if grid.iter().all(Option::is_none) {
                return Err(Error::Invalid(format!(
                    "{}: no forecast point falls within the trace ({:.0}..{:.0}, unix seconds)",
                    path.display(),
                    trace.start,
                    trace.end()
                )));
            }
            (
                format!("forecast replicas from {}", path.display()),
                Some(grid),
                None,
            )
        }
    };
    let initial = explain::replicas_for(
        trace.values.first().copied().unwrap_or(0.0),
        Target::AverageValue(opts.target_in_flight),
        1,
    )
    .clamp(hpa.min_replicas, hpa.max_replicas);
    let setup = Setup {
        trace: &trace,
        forecast: forecast.as_deref(),
        hpa: hpa.settings.clone(),
        nodes: opts.nodes.clone(),
        capacity: opts.capacity,
        price_per_gpu_hour: opts.price_per_gpu_hour,
        initial_replicas: initial,
        warmup: opts.warmup,
    };
    let policies = policies(opts, &hpa, forecast.is_some());
    let outcomes = policies.iter().map(|p| sim::run(&setup, p)).collect();
    let mut targets: Vec<String> = Vec::new();
    for m in policies.iter().flat_map(|p| &p.metrics) {
        let text = match m.target {
            Target::Value(v) => format!("{:?} {v} (Value)", m.signal),
            Target::AverageValue(v) => format!("{:?} {v} per replica (AverageValue)", m.signal),
        };
        if !targets.contains(&text) {
            targets.push(text);
        }
    }
    let assumptions = vec![
        (
            "capacity".into(),
            format!(
                "{} load per replica at 100 % GPU, {} GPU(s) per replica, {} GPUs per node",
                opts.capacity.per_replica, opts.capacity.gpus_per_replica, opts.nodes.gpus_per_node
            ),
        ),
        (
            "nodes".into(),
            format!(
                "lead time {} s, pod start {} s, idle node removed after {} s",
                opts.nodes.lead_time, opts.nodes.pod_start, opts.nodes.scale_down_delay
            ),
        ),
        (
            "hpa".into(),
            format!(
                "{}: min {} max {}, sync 15 s, tolerance 0.1, behavior {}",
                hpa.name,
                hpa.min_replicas,
                hpa.max_replicas,
                if hpa.explicit_behavior {
                    "from the manifest (defaults filled)"
                } else {
                    "Kubernetes default"
                }
            ),
        ),
        ("targets".into(), targets.join(", ")),
        ("price".into(), opts.price_source.clone()),
        (
            "demand".into(),
            format!(
                "scaled x{:.4} to peak {:.1}, sampled every {} s; first {} s simulated, not scored",
                opts.scale,
                trace.peak(),
                trace.step,
                opts.warmup
            ),
        ),
    ];
    Ok(Replay {
        report: Report {
            trace: trace.name.clone(),
            start: trace.start,
            end: trace.end(),
            step_seconds: trace.step,
            peak_demand: trace.peak(),
            assumptions,
            forecast_source,
            outcomes,
        },
        trace,
        accuracy,
    })
}

/// The HPA under replay.
struct HpaUnderReplay {
    name: String,
    min_replicas: i32,
    max_replicas: i32,
    explicit_behavior: bool,
    settings: HpaSettings,
    /// Targets found in the manifest, by signal.
    targets: Vec<(Signal, Target)>,
}

fn hpa_settings(opts: &Options) -> Result<HpaUnderReplay, Error> {
    let Some((file, text)) = &opts.hpa else {
        return Ok(HpaUnderReplay {
            name: "(default HPA)".into(),
            min_replicas: 1,
            max_replicas: 1000,
            explicit_behavior: false,
            settings: HpaSettings {
                min_replicas: 1,
                max_replicas: 1000,
                behavior: hpa::Behavior::default(),
            },
            targets: vec![],
        });
    };
    let spec = explain::parse_hpa(file, text)?;
    // explain's HpaSpec has no behavior; read it from the same manifest here.
    let raw: HorizontalPodAutoscaler = serde_saphyr::from_str(text).map_err(|e| {
        Error::Invalid(format!(
            "{file}: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    let spec_behavior = raw.spec.as_ref().and_then(|s| s.behavior.as_ref());
    let behavior = hpa::Behavior::from_spec(spec_behavior).map_err(|source| Error::Behavior {
        file: file.clone(),
        source,
    })?;
    let targets = spec
        .external
        .iter()
        .filter_map(|m| Signal::for_metric(&m.name).map(|s| (s, m.target)))
        .collect();
    Ok(HpaUnderReplay {
        name: format!("{}/{}", spec.namespace, spec.name),
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        explicit_behavior: spec_behavior.is_some(),
        settings: HpaSettings {
            min_replicas: spec.min_replicas,
            max_replicas: spec.max_replicas,
            behavior,
        },
        targets,
    })
}

/// The policies compared: the manifest's target for a signal wins over the flag.
fn policies(opts: &Options, hpa: &HpaUnderReplay, with_forecast: bool) -> Vec<Policy> {
    let target = |signal: Signal, default: Target| {
        hpa.targets
            .iter()
            .find(|(s, _)| *s == signal)
            .map_or(default, |(_, t)| *t)
    };
    let util = MetricSpec {
        signal: Signal::Utilization,
        target: target(Signal::Utilization, Target::Value(opts.target_utilization)),
    };
    let in_flight = MetricSpec {
        signal: Signal::InFlight,
        target: target(
            Signal::InFlight,
            Target::AverageValue(opts.target_in_flight),
        ),
    };
    let forecast = MetricSpec {
        signal: Signal::ForecastReplicas,
        target: target(Signal::ForecastReplicas, Target::AverageValue(1.0)),
    };
    let mut out = vec![
        Policy {
            name: "reactive-utilization".into(),
            metrics: vec![util],
            prewarm: false,
        },
        Policy {
            name: "reactive-concurrency".into(),
            metrics: vec![in_flight],
            prewarm: false,
        },
    ];
    if with_forecast {
        out.push(Policy {
            name: "forecast".into(),
            metrics: vec![in_flight, forecast],
            prewarm: false,
        });
        // Placeholders next to the forecast-driven HPA: they only matter when the HPA is
        // held back (tolerance, rate limits), since its replicas already follow the forecast.
        out.push(Policy {
            name: "forecast+prewarm".into(),
            metrics: vec![in_flight, forecast],
            prewarm: true,
        });
        // Issue 6's design: the workload's own HPA stays reactive; placeholder pods scaled
        // on the forecast headroom make cluster-autoscaler add nodes ahead of demand.
        out.push(Policy {
            name: "reactive+prewarm".into(),
            metrics: vec![in_flight],
            prewarm: true,
        });
    }
    out
}

/// Flags of `replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Demand trace: CSV `timestamp,value` or the Azure per-request
    /// `TIMESTAMP,ContextTokens,GeneratedTokens` (becomes requests in flight).
    #[arg(long, conflicts_with = "query", required_unless_present = "query")]
    pub trace: Option<PathBuf>,
    /// Demand from a PromQL range query (one series) against the Prometheus of --config.
    #[arg(long, requires_all = ["config", "start", "end"])]
    pub query: Option<String>,
    /// Adapter config whose `prometheus` section --query uses.
    #[arg(long, env = "GPUSCALE_ADAPTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Range start/end for --query (RFC3339-like `YYYY-MM-DDTHH:MM:SSZ` or unix seconds).
    #[arg(long)]
    pub start: Option<String>,
    #[arg(long)]
    pub end: Option<String>,
    /// autoscaling/v2 HPA manifest: min/max, behavior, and targets of metrics named like
    /// gpu_utilization / *in_flight* / *replicas:forecast. Default: min 1, max 1000,
    /// default behavior.
    #[arg(long)]
    pub hpa: Option<PathBuf>,
    /// Simulation tick in seconds (the HPA syncs every 15 s).
    #[arg(long, default_value_t = 5.0)]
    pub step: f64,
    /// Load one replica serves with its GPUs fully busy (trace units, e.g. requests in flight).
    #[arg(long, default_value_t = 10.0)]
    pub replica_capacity: f64,
    #[arg(long, default_value_t = 1)]
    pub gpus_per_replica: u32,
    /// GPUs per node. The default, one, is the common inference node (g5/g6.xlarge, L4 VMs)
    /// and the case where every scale-up waits for a node.
    #[arg(long, default_value_t = 1)]
    pub gpus_per_node: u32,
    /// Seconds from cluster-autoscaler's decision to a schedulable GPU node.
    #[arg(long, default_value_t = 120.0)]
    pub node_lead_time: f64,
    /// Seconds from binding to ready pod (image, model load).
    #[arg(long, default_value_t = 30.0)]
    pub pod_start_time: f64,
    /// Seconds an empty node stays before cluster-autoscaler removes it.
    #[arg(long, default_value_t = 600.0)]
    pub scale_down_delay: f64,
    /// Utilization target when the HPA manifest names none.
    #[arg(long, default_value_t = 0.7)]
    pub target_utilization: f64,
    /// In-flight requests per replica target when the manifest names none (the rules'
    /// capacity.target_in_flight_per_replica).
    #[arg(long, default_value_t = 8.0)]
    pub target_in_flight: f64,
    /// Multiply demand by this.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Rescale demand so its peak equals this.
    #[arg(long)]
    pub peak: Option<f64>,
    /// Replay only the first seconds of the trace.
    #[arg(long)]
    pub max_duration: Option<f64>,
    /// Seconds at the start that are simulated but not scored (the replay starts from a
    /// guessed steady state and the rules have no history yet).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Per request: prompt tokens per second.
    #[arg(long, default_value_t = 2000.0)]
    pub prefill_tokens_per_second: f64,
    /// Per request: generated tokens per second.
    #[arg(long, default_value_t = 25.0)]
    pub decode_tokens_per_second: f64,
    /// $ per GPU-hour; default: the `default.on-demand` price of PRICES if it exists.
    #[arg(long)]
    pub price: Option<f64>,
    #[arg(long, default_value = "rules/prices.yaml")]
    pub prices: PathBuf,
    /// Directory of *.rules.yml for the forecast; `none` runs the reactive policies only.
    #[arg(long, default_value = "rules")]
    pub rules: String,
    /// Forecast replicas from a CSV `timestamp,value` instead of the rules (your own
    /// model, or `namespace_workload:gpu_replicas:forecast` exported from Prometheus).
    #[arg(long, conflicts_with = "rules")]
    pub forecast_file: Option<PathBuf>,
    /// How long a --forecast-file value holds when no newer one follows (seconds).
    #[arg(long, default_value_t = 300.0)]
    pub forecast_lookback: f64,
    #[arg(long, default_value = "prometheus")]
    pub prometheus_bin: PathBuf,
    #[arg(long, default_value = "promtool")]
    pub promtool_bin: PathBuf,
    /// Seconds between backfilled samples of the input series.
    #[arg(long, default_value_t = 15.0)]
    pub scrape_interval: f64,
    /// Seconds between rule evaluations when backfilling the rules.
    #[arg(long, default_value_t = 15.0)]
    pub eval_interval: f64,
    /// Keep the backfilled TSDB and rule files in this directory.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file (one replay, both forms).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Draw demand, ready capacity and replicas per policy into this PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// `replay`: runs and renders; the text to print.
pub async fn main(args: ReplayArgs) -> Result<String, Error> {
    let opts = options(&args)?;
    let replay = run(&opts).await?;
    if let Some(file) = &args.plot {
        plot::draw(
            file,
            &format!("replay of {}", replay.report.trace),
            &replay.report.outcomes,
        )?;
    }
    let json = || {
        let value = serde_json::json!({
            "report": replay.report,
            "forecast_accuracy": replay.accuracy,
        });
        serde_json::to_string_pretty(&value)
            .map(|s| s + "\n")
            .map_err(|e| Error::Invalid(e.to_string()))
    };
    if let Some(file) = &args.json_out {
        std::fs::write(file, json()?)
            .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
    }
    if args.json {
        return json();
    }
    let mut text = replay.report.table();
    if let Some(acc) = &replay.accuracy {
        text.push_str(&accuracy_table(acc));
    }
    Ok(text)
}

/// The forecast accuracy report as text.
pub fn accuracy_table(acc: &rules::Accuracy) -> String {
    let mut out = format!(
        "\nforecast accuracy ({}; rules forecast for {} ahead; in-flight requests):\n{:<22} {:>8} {:>14} {:>14} {:>8}\n",
        acc.trace,
        acc.rules_horizon_seconds
            .map_or("an unknown horizon".to_string(), |h| format!(
                "{} min",
                h / 60.0
            )),
        "forecaster",
        "horizon",
        "rel. MAE",
        "under-fcst",
        "points"
    );
    for r in &acc.rows {
        out.push_str(&format!(
            "{:<22} {:>6.0} m {:>13.1} % {:>13.1} % {:>8}\n",
            r.forecaster,
            r.horizon_minutes,
            100.0 * r.relative_mae,
            100.0 * r.under_forecast_share,
            r.points
        ));
    }
    out
}

fn options(args: &ReplayArgs) -> Result<Options, Error> {
    let positive = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(Error::Invalid(format!(
                "--{name} must be a positive number"
            )))
        }
    };
    positive("step", args.step)?;
    positive("replica-capacity", args.replica_capacity)?;
    positive("scale", args.scale)?;
    positive("eval-interval", args.eval_interval)?;
    positive("scrape-interval", args.scrape_interval)?;
    positive("target-utilization", args.target_utilization)?;
    positive("target-in-flight", args.target_in_flight)?;
    if args.gpus_per_replica == 0 || args.gpus_per_node < args.gpus_per_replica {
        return Err(Error::Invalid(
            "--gpus-per-node must hold at least one replica's --gpus-per-replica (> 0)".into(),
        ));
    }
    if 15.0 % args.step > 1e-9 {
        return Err(Error::Invalid(
            "--step must divide the HPA's 15 s sync period (1, 3, 5, 15...)".into(),
        ));
    }
    let demand = match (&args.trace, &args.query) {
        (Some(path), _) => Demand::File(path.clone()),
        (None, Some(query)) => {
            let config_path = args
                .config
                .as_ref()
                .ok_or_else(|| Error::Invalid("--query needs --config".into()))?;
            let config =
                crate::config::load(config_path).map_err(|e| Error::Invalid(e.to_string()))?;
            let time = |s: &Option<String>, flag: &str| {
                s.as_deref()
                    .and_then(trace::parse_timestamp)
                    .ok_or_else(|| Error::Invalid(format!("--{flag} must be a time")))
            };
            Demand::Query {
                prometheus: Box::new(config.prometheus),
                query: query.clone(),
                start: time(&args.start, "start")?,
                end: time(&args.end, "end")?,
            }
        }
        (None, None) => return Err(Error::Invalid("give --trace or --query".into())),
    };
    let hpa = match &args.hpa {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))?,
        )),
        None => None,
    };
    let (price, price_source) = match args.price {
        Some(p) => (positive("price", p)?, format!("${p}/GPU-hour (--price)")),
        None => match default_price(&args.prices) {
            Some(p) => (
                p,
                format!(
                    "${p}/GPU-hour (default.on-demand of {})",
                    args.prices.display()
                ),
            ),
            None => (
                4.0,
                format!("$4/GPU-hour (no --price, no {})", args.prices.display()),
            ),
        },
    };
    let forecast = if let Some(path) = &args.forecast_file {
        ForecastSource::File {
            path: path.clone(),
            lookback: positive("forecast-lookback", args.forecast_lookback)?,
        }
    } else if args.rules == "none" {
        ForecastSource::None
    } else {
        ForecastSource::Rules(rules::Pipeline {
            rules_dir: PathBuf::from(&args.rules),
            prometheus_bin: args.prometheus_bin.clone(),
            promtool_bin: args.promtool_bin.clone(),
            scrape_interval: args.scrape_interval,
            eval_interval: args.eval_interval,
            namespace: "replay".into(),
            workload: "trace".into(),
            work_dir: args.work_dir.clone(),
        })
    };
    Ok(Options {
        demand,
        hpa,
        step: args.step,
        service: ServiceModel {
            prefill_tokens_per_second: positive(
                "prefill-tokens-per-second",
                args.prefill_tokens_per_second,
            )?,
            decode_tokens_per_second: positive(
                "decode-tokens-per-second",
                args.decode_tokens_per_second,
            )?,
        },
        scale: args.scale,
        peak: args.peak.map(|p| positive("peak", p)).transpose()?,
        max_duration: args.max_duration,
        warmup: args.warmup.max(0.0),
        capacity: Capacity {
            per_replica: args.replica_capacity,
            gpus_per_replica: args.gpus_per_replica,
        },
        nodes: NodeModel {
            replicas_per_node: args.gpus_per_node / args.gpus_per_replica,
            gpus_per_node: args.gpus_per_node,
            lead_time: args.node_lead_time.max(0.0),
            pod_start: args.pod_start_time.max(0.0),
            scale_down_delay: args.scale_down_delay.max(0.0),
        },
        target_utilization: args.target_utilization,
        target_in_flight: args.target_in_flight,
        price_per_gpu_hour: price,
        price_source,
        forecast,
    })
}

/// `default: {on-demand: X}` of the rules' price table, if the file is there.
fn default_price(path: &std::path::Path) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Prices {
        default: Default,
    }
    #[derive(serde::Deserialize)]
    struct Default {
        #[serde(rename = "on-demand")]
        on_demand: f64,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let p: Prices = serde_saphyr::from_str(&text).ok()?;
    (p.default.on_demand.is_finite() && p.default.on_demand > 0.0).then_some(p.default.on_demand)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(hpa: Option<&str>) -> Options {
        Options {
            demand: Demand::File(PathBuf::from("unused.csv")),
            hpa: hpa.map(|t| ("hpa.yaml".to_string(), t.to_string())),
            step: 5.0,
            service: ServiceModel {
                prefill_tokens_per_second: 2000.0,
                decode_tokens_per_second: 25.0,
            },
            scale: 1.0,
            peak: None,
            max_duration: None,
            warmup: 0.0,
            capacity: Capacity {
                per_replica: 10.0,
                gpus_per_replica: 1,
            },
            nodes: NodeModel {
                replicas_per_node: 1,
                gpus_per_node: 1,
                lead_time: 120.0,
                pod_start: 30.0,
                scale_down_delay: 600.0,
            },
            target_utilization: 0.7,
            target_in_flight: 8.0,
            price_per_gpu_hour: 4.0,
            price_source: "test".into(),
            forecast: ForecastSource::None,
        }
    }

    /// The manifest's min/max, behavior and targets are what the replay runs; metrics are
    /// bound to signals by name.
    #[test]
    fn manifest_drives_the_policies() {
        let manifest = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: llm, namespace: ml}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm}
  minReplicas: 2
  maxReplicas: 9
  metrics:
    - type: External
      external:
        metric: {name: gpu_utilization}
        target: {type: Value, value: 600m}
    - type: External
      external:
        metric: {name: namespace_workload:gpu_requests_in_flight:sum}
        target: {type: AverageValue, averageValue: "5"}
  behavior:
    scaleUp:
      policies: [{type: Pods, value: 2, periodSeconds: 30}]
"#;
        let o = opts(Some(manifest));
        let h = hpa_settings(&o).expect("valid manifest");
        assert_eq!((h.min_replicas, h.max_replicas), (2, 9));
        assert_eq!(h.settings.behavior.scale_up.policies.len(), 1);
        assert_eq!(
            h.settings.behavior.scale_down.stabilization_window_seconds,
            300
        );
        let p = policies(&o, &h, true);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "reactive-utilization",
                "reactive-concurrency",
                "forecast",
                "forecast+prewarm",
                "reactive+prewarm"
            ]
        );
        assert_eq!(p[0].metrics[0].target, Target::Value(0.6));
        assert_eq!(p[1].metrics[0].target, Target::AverageValue(5.0));
        assert_eq!(p[2].metrics[1].target, Target::AverageValue(1.0));
        assert!(
            !p[4]
                .metrics
                .iter()
                .any(|m| m.signal == Signal::ForecastReplicas)
        );
    }

    #[test]
    fn bad_behavior_names_the_file() {
        let manifest = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: x}\n  maxReplicas: 3\n  behavior:\n    scaleDown:\n      selectPolicy: Sometimes\n";
        let e = hpa_settings(&opts(Some(manifest))).err().expect("invalid");
        assert!(
            e.to_string().starts_with("hpa.yaml: behavior.scaleDown"),
            "{e}"
        );
    }
}
