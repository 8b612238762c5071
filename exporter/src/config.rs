//! Command-line flags (each with an environment variable), parsed by clap.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::metrics::MetricNames;

/// Default port: not dcgm-exporter's 9400 nor nvidia_gpu_exporter's 9835.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9445";

/// gpuscale-exporter: GPU metrics through NVML for GPU-aware Kubernetes autoscaling.
#[derive(Debug, Clone, Parser)]
#[command(name = "gpuscale-exporter", version, about)]
pub struct Args {
    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(long, env = "GPUSCALE_LISTEN_ADDRESS", default_value = DEFAULT_LISTEN)]
    pub listen_address: SocketAddr,

    /// How often NVML is read (e.g. `1s`, `500ms`). Scrapes serve the latest reading.
    #[arg(long, env = "GPUSCALE_COLLECT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub collect_interval: Duration,

    /// Path of libnvidia-ml to load; the system's libnvidia-ml.so.1 when absent.
    #[arg(long, env = "GPUSCALE_NVML_LIBRARY")]
    pub nvml_library: Option<PathBuf>,

    /// Kubernetes node name, put on every series as `node` (use the downward API).
    #[arg(long, env = "NODE_NAME", default_value_t = default_node_name())]
    pub node_name: String,

    /// Which metric names to publish: gpuscale's, dcgm-exporter's, or both.
    #[arg(
        long,
        env = "GPUSCALE_METRIC_NAMES",
        value_enum,
        default_value = "gpuscale"
    )]
    pub metric_names: MetricNames,

    /// Longest wait between attempts to load NVML while it is unavailable.
    #[arg(long, env = "GPUSCALE_NVML_RETRY_MAX", default_value = "30s", value_parser = parse_duration)]
    pub nvml_retry_max: Duration,

    /// Unix socket of the kubelet pod-resources API, read once per cycle to attribute GPUs to
    /// containers. Mount the directory (the kubelet replaces the socket). Empty: off.
    #[arg(
        long,
        env = "GPUSCALE_POD_RESOURCES_SOCKET",
        default_value = crate::kubelet::DEFAULT_SOCKET,
        value_parser = parse_optional_path
    )]
    pub pod_resources_socket: PathBuf,

    /// The host's /proc (mounted, with hostPID), to map NVML process ids to containers
    /// through `/proc/<pid>/cgroup`.
    #[arg(long, env = "GPUSCALE_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Whether to watch this node's pods through the Kubernetes API (workload labels, pod
    /// IPs for engine scraping). `auto`: in-cluster config, or `--kubeconfig` / `KUBECONFIG`.
    #[arg(long, env = "GPUSCALE_KUBE_API", value_enum, default_value = "auto")]
    pub kube_api: KubeApi,

    /// Kubeconfig file for the Kubernetes API (outside a cluster).
    #[arg(long, env = "GPUSCALE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Longest wait for one engine's /metrics page; engines are scraped concurrently in their
    /// own loop, so a slow one never delays a collection cycle.
    #[arg(long, env = "GPUSCALE_WORKLOAD_SCRAPE_TIMEOUT", default_value = "800ms", value_parser = parse_duration)]
    pub workload_scrape_timeout: Duration,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `gpuscale_exporter=debug`.
    #[arg(long, env = "GPUSCALE_LOG", default_value = "info")]
    pub log: String,
}

/// Whether the Kubernetes API is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KubeApi {
    /// Use it when a configuration is found (in-cluster or kubeconfig).
    Auto,
    /// Never: pod series keep the kubelet's names, `workload` is empty, no engine scraping.
    Off,
}

fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A path that may be empty (empty turns the feature off).
fn parse_optional_path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text.trim()))
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 500ms, 1s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}`; use ms, s or m")),
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 86_400.0 {
        return Err(format!("`{text}` must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn flags_and_defaults() {
        let args = Args::try_parse_from(["x", "--node-name", "n1"]).expect("parses");
        assert_eq!(args.listen_address.port(), 9445);
        assert_eq!(args.collect_interval, Duration::from_secs(1));
        assert_eq!(args.metric_names, MetricNames::Gpuscale);
        assert_eq!(
            args.pod_resources_socket,
            PathBuf::from("/var/lib/kubelet/pod-resources/kubelet.sock")
        );
        assert_eq!(args.proc_root, PathBuf::from("/proc"));
        assert_eq!(args.kube_api, KubeApi::Auto);
        assert_eq!(args.workload_scrape_timeout, Duration::from_millis(800));
        let args = Args::try_parse_from([
            "x",
            "--metric-names",
            "dcgm",
            "--collect-interval",
            "200ms",
            "--nvml-library",
            "/tmp/lib.so",
        ])
        .expect("parses");
        assert_eq!(args.metric_names, MetricNames::Dcgm);
        assert_eq!(args.collect_interval, Duration::from_millis(200));
        assert!(Args::try_parse_from(["x", "--metric-names", "prom"]).is_err());
        let args = Args::try_parse_from([
            "x",
            "--kube-api",
            "off",
            "--pod-resources-socket",
            "",
            "--proc-root",
            "/host/proc",
        ])
        .expect("parses");
        assert_eq!(args.kube_api, KubeApi::Off);
        assert_eq!(args.pod_resources_socket, PathBuf::new());
        assert_eq!(args.proc_root, PathBuf::from("/host/proc"));
    }
}
