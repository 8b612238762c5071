//! gpuscale-exporter: GPU metrics read through NVML, published for Prometheus so stock
//! Kubernetes autoscaling can act on them.

pub mod attribution;
pub mod collector;
pub mod config;
pub mod kubelet;
pub mod metrics;
pub mod nvml;
pub mod pods;
pub mod server;
pub mod snapshot;
pub mod workload;

use std::sync::Arc;

pub use config::Args;

/// Errors that stop the exporter at start-up; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {address}: {source}; pick a free --listen-address")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the collection thread: {0}")]
    Thread(std::io::Error),
}

/// Runs the exporter until `shutdown` resolves.
pub async fn run(
    args: Args,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let min_backoff = args.collect_interval;
    let source = nvml::NvmlSource::new(args.nvml_library.clone(), min_backoff, args.nvml_retry_max);
    let listener = tokio::net::TcpListener::bind(args.listen_address)
        .await
        .map_err(|source| Error::Listen {
            address: args.listen_address,
            source,
        })?;
    let attribution = start_attribution(&args).await;
    let shared = Arc::new(collector::Shared::default());
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let loop_config = collector::LoopConfig {
        node: args.node_name.clone(),
        interval: args.collect_interval,
        names: args.metric_names,
    };
    let loop_shared = shared.clone();
    let worker = std::thread::Builder::new()
        .name("nvml-collector".into())
        .spawn(move || collector::run(source, attribution, loop_config, loop_shared, stop_rx))
        .map_err(Error::Thread)?;
    tracing::info!(
        address = %args.listen_address,
        interval_seconds = args.collect_interval.as_secs_f64(),
        node = %args.node_name,
        "gpuscale-exporter listening"
    );
    let app = server::router(shared, args.collect_interval);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    let _ = stop_tx.send(());
    // The collector finishes its current cycle (bounded by NVML call latency) and exits.
    let _ = worker.join();
    served
}

/// Starts the pod watch and the engine scrape loop (on this runtime) and builds the
/// attributor the collection thread calls. Nothing here fails the exporter: a missing kubelet
/// socket or API shows up as `..._up 0` and one log line.
async fn start_attribution(args: &Args) -> Option<collector::Attribution> {
    let socket = (!args.pod_resources_socket.as_os_str().is_empty())
        .then(|| args.pod_resources_socket.clone());
    let pods = match args.kube_api {
        config::KubeApi::Off => {
            tracing::info!(
                "Kubernetes API off (--kube-api off): pod series carry the kubelet's names with an empty workload; no engine scraping"
            );
            pods::PodSource::disabled()
        }
        config::KubeApi::Auto => match pods::client(args.kubeconfig.as_ref()).await {
            Ok(client) => pods::start(client, args.node_name.clone()),
            Err(err) => {
                tracing::warn!(error = %err, "Kubernetes API unavailable: pod series carry the kubelet's names with an empty workload; no engine scraping; gpuscale_exporter_kube_api_up 0");
                pods::PodSource::disabled()
            }
        },
    };
    let workloads = pods.is_enabled().then(|| {
        workload::start(
            pods.clone(),
            args.collect_interval,
            args.workload_scrape_timeout,
        )
    });
    // The kubelet answers locally; a cycle waits at most this long for it.
    let kubelet_timeout = args.collect_interval.min(std::time::Duration::from_secs(2));
    let attributor = attribution::Attributor::new(
        socket,
        kubelet_timeout,
        args.proc_root.clone(),
        tokio::runtime::Handle::current(),
        pods,
    );
    Some(collector::Attribution {
        attributor,
        workloads,
    })
}
