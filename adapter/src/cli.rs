//! Command line: `serve` (the default in the manifests), and the tools for people:
//! `check-config`, `query`, `explain`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::api::{self, AppState};
use crate::cache::QueryCache;
use crate::config::{self, Config};
use crate::explain::{self, Target};
use crate::metrics::AdapterMetrics;
use crate::prometheus;

/// gpuscale-adapter: the Kubernetes external metrics API from PromQL.
#[derive(Debug, Parser)]
#[command(name = "gpuscale-adapter", version, about)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, global = true, env = "GPUSCALE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve external.metrics.k8s.io/v1beta1 over HTTPS.
    Serve(ServeArgs),
    /// Validate a config file and print what it serves, without serving.
    CheckConfig {
        /// The adapter config (YAML).
        file: PathBuf,
    },
    /// Print what an HPA would receive for METRIC, straight from Prometheus.
    Query {
        /// External metric name, as in the HPA.
        metric: String,
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Label selector, as in the HPA's `metric.selector` (e.g. `workload=llm,tier in (a,b)`).
        #[arg(long, short = 'l', default_value = "")]
        selector: String,
        #[arg(long, env = "GPUSCALE_ADAPTER_CONFIG")]
        config: PathBuf,
    },
    /// For each External metric of an HPA manifest: the current value, the target, and the
    /// replica count the stock HPA algorithm would choose.
    Explain {
        /// An autoscaling/v2 HorizontalPodAutoscaler manifest (YAML or JSON).
        hpa: PathBuf,
        #[arg(long, env = "GPUSCALE_ADAPTER_CONFIG")]
        config: PathBuf,
        /// Replicas running now (default: the HPA's minReplicas).
        #[arg(long)]
        current_replicas: Option<i32>,
    },
    /// Replay real demand through the stock HPA algorithm and GPU node lead time: unmet
    /// demand minutes and GPU cost of reactive vs forecast-driven scaling.
    Replay(Box<crate::replay::ReplayArgs>),
}

/// Flags of `serve`; names follow k8s.io/apiserver's where one exists.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, env = "GPUSCALE_ADAPTER_CONFIG")]
    pub config: PathBuf,
    /// HTTPS address for the API.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen_address: SocketAddr,
    /// Serving certificate (PEM); re-read when it changes. Without it a self-signed pair is
    /// generated at start.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Names for the self-signed certificate.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,gpuscale-adapter.gpuscale.svc"
    )]
    pub self_signed_hosts: Vec<String>,
    /// CA that signs the aggregator's front-proxy client certificate. Without it (and
    /// without --requestheader-from-cluster) only bearer tokens authenticate.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed on front-proxy client certificates (empty: any the CA signed).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Read the requestheader settings from kube-system/extension-apiserver-authentication,
    /// as aggregated API servers do.
    #[arg(long)]
    pub requestheader_from_cluster: bool,
    /// Turn off authentication and authorization. For local testing only.
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Plain-HTTP address for the adapter's own /metrics (Prometheus scrapes it).
    #[arg(long, default_value = "0.0.0.0:9446")]
    pub metrics_address: SocketAddr,
}

/// Errors the commands report; `main` prints them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Prometheus(#[from] prometheus::Error),
    #[error(transparent)]
    Explain(#[from] explain::Error),
    #[error("{0}")]
    Other(String),
}

/// The shared state for a loaded config.
pub fn state(config: Config) -> Result<Arc<AppState>, Error> {
    let client = Arc::new(prometheus::Client::new(&config.prometheus)?);
    let metrics = AdapterMetrics::new(config.metrics.len());
    let cache = QueryCache::new(client, config.cache_ttl);
    Ok(Arc::new(AppState {
        config: Arc::new(config),
        cache,
        metrics,
        rewrites: api::RewriteCache::default(),
    }))
}

/// `check-config`: the summary text, or the first error.
pub fn check_config(file: &std::path::Path) -> Result<String, Error> {
    let config = config::load(file)?;
    let mut out = format!(
        "{}: ok, {} metric(s); Prometheus {} (timeout {:?}, cache {:?})\n",
        file.display(),
        config.metrics.len(),
        config.prometheus.url,
        config.prometheus.timeout,
        config.cache_ttl
    );
    for m in &config.metrics {
        let ns = match &m.namespace_label {
            Some(l) => format!("namespaced by {l}"),
            None => "cluster-wide".to_string(),
        };
        out.push_str(&format!(
            "  {:<32} {ns:<28} {}\n",
            m.name.to_ascii_lowercase(),
            m.query
        ));
    }
    Ok(out)
}

/// `query`: the JSON the HPA would receive (or the Status it would get).
pub async fn query(
    config: &std::path::Path,
    metric: &str,
    namespace: &str,
    selector: &str,
) -> Result<(bool, String), Error> {
    let state = state(config::load(config)?)?;
    let answer =
        api::external_metric(&state, namespace, &metric.to_ascii_lowercase(), selector).await;
    let (ok, json) = match answer {
        Ok(list) => (true, serde_json::to_string_pretty(&list)),
        Err(status) => (false, serde_json::to_string_pretty(&status)),
    };
    Ok((ok, json.map_err(|e| Error::Other(e.to_string()))?))
}

/// `explain`: a table of metrics, values, targets and proposals, and the HPA's choice.
pub async fn explain(
    config: &std::path::Path,
    hpa_file: &std::path::Path,
    current: Option<i32>,
) -> Result<String, Error> {
    let text = std::fs::read_to_string(hpa_file)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", hpa_file.display())))?;
    let hpa = explain::parse_hpa(&hpa_file.display().to_string(), &text)?;
    let state = state(config::load(config)?)?;
    let current = current.unwrap_or(hpa.min_replicas);
    let mut out = format!(
        "HPA {}/{}: minReplicas {}, maxReplicas {}, current replicas {current} (tolerance {})\n",
        hpa.namespace,
        hpa.name,
        hpa.min_replicas,
        hpa.max_replicas,
        explain::TOLERANCE
    );
    out.push_str(&format!(
        "{:<28} {:<30} {:>12} {:>22} {:>9}\n",
        "METRIC", "SELECTOR", "VALUE", "TARGET", "REPLICAS"
    ));
    let mut proposals = Vec::new();
    for m in &hpa.external {
        let answer = api::external_metric(
            &state,
            &hpa.namespace,
            &m.name.to_ascii_lowercase(),
            &m.selector,
        )
        .await;
        let (value_text, proposal) = match answer {
            Ok(list) => {
                // The HPA controller sums every item of the list.
                let total: f64 = list
                    .items
                    .iter()
                    .map(|i| explain::parse_quantity(&i.value))
                    .sum();
                let p = explain::replicas_for(total, m.target, current);
                proposals.push(p);
                (format!("{total:.3}"), p.to_string())
            }
            Err(status) => (
                format!("error {}", status.code()),
                format!(
                    "- ({})",
                    status.message().chars().take(60).collect::<String>()
                ),
            ),
        };
        let target = match m.target {
            Target::Value(v) => format!("Value {v}"),
            Target::AverageValue(v) => format!("AverageValue {v}/replica"),
        };
        let selector = if m.selector.is_empty() {
            "(none)"
        } else {
            &m.selector
        };
        out.push_str(&format!(
            "{:<28} {:<30} {:>12} {:>22} {:>9}\n",
            m.name, selector, value_text, target, proposal
        ));
    }
    if !hpa.other_metrics.is_empty() {
        out.push_str(&format!(
            "also weighed by the HPA but not served here: {}\n",
            hpa.other_metrics.join(", ")
        ));
    }
    if proposals.is_empty() {
        out.push_str(
            "no External metric could be read: the HPA would keep its current replica count\n",
        );
    } else {
        let desired =
            explain::desired_replicas(&proposals, hpa.min_replicas, hpa.max_replicas, current);
        let missing = hpa.external.len() - proposals.len();
        out.push_str(&format!(
            "desired replicas: {desired} (largest proposal, clamped to [{}, {}]){}\n",
            hpa.min_replicas,
            hpa.max_replicas,
            if missing > 0 {
                "; some metrics failed: when scaling down the HPA would hold instead"
            } else {
                ""
            }
        ));
        out.push_str(
            "before behavior policies and the scale-down stabilization window (default 300 s)\n",
        );
    }
    Ok(out)
}
