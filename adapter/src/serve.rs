//! `gpuscale-adapter serve`: config, TLS, delegated authentication and authorization, the
//! API router, and the plain-HTTP endpoint for the adapter's own metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::{self, AppState};
use crate::auth::{Auth, AuthConfig, RequestHeaderConfig};
use crate::cli::{self, Error, ServeArgs};
use crate::{config, https, tls};

/// How often the requestheader ConfigMap is re-read (kube-apiserver rotates the front-proxy
/// CA rarely; delegated servers poll it).
const REQUESTHEADER_REFRESH: Duration = Duration::from_secs(300);

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<(), Error> {
    let config = config::load(&args.config)?;
    tracing::info!(
        file = %args.config.display(),
        metrics = config.metrics.len(),
        prometheus = %config.prometheus.url,
        "config loaded"
    );
    let state = cli::state(config)?;
    let source = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => tls::CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => tls::CertSource::SelfSigned {
            hosts: args.self_signed_hosts.clone(),
        },
    };
    let tls_config = tls::server_config(&source).map_err(|e| Error::Other(e.to_string()))?;
    let auth = build_auth(&args).await?;
    let app = api::router(state.clone()).layer(axum::middleware::from_fn_with_state(
        auth,
        crate::auth::middleware,
    ));

    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .map_err(|e| {
            Error::Other(format!(
                "cannot listen on --metrics-address {}: {e}",
                args.metrics_address
            ))
        })?;
    let metrics_app = metrics_router(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });

    let listener = tokio::net::TcpListener::bind(args.listen_address)
        .await
        .map_err(|e| {
            Error::Other(format!(
                "cannot listen on --listen-address {}: {e}",
                args.listen_address
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    tracing::info!(address = %local, metrics_address = %args.metrics_address, "serving external.metrics.k8s.io/v1beta1 over HTTPS");
    https::serve(listener, tls_config, app, shutdown_signal())
        .await
        .map_err(|e| Error::Other(format!("HTTPS server failed: {e}")))
}

async fn build_auth(args: &ServeArgs) -> Result<Arc<Auth>, Error> {
    if args.allow_anonymous {
        return Auth::new(AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        })
        .map(Arc::new)
        .map_err(|e| Error::Other(e.to_string()));
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        Error::Other(format!(
            "cannot reach the Kubernetes API for TokenReview/SubjectAccessReview ({e}); run in a cluster, \
             set KUBECONFIG, or use --allow-anonymous for local testing only"
        ))
    })?;
    let mut request_header = match &args.requestheader_client_ca_file {
        Some(file) => {
            let pem = std::fs::read_to_string(file).map_err(|e| {
                Error::Other(format!(
                    "cannot read --requestheader-client-ca-file {}: {e}",
                    file.display()
                ))
            })?;
            let mut c =
                RequestHeaderConfig::from_pem(&pem).map_err(|e| Error::Other(e.to_string()))?;
            c.allowed_names = args.requestheader_allowed_names.clone();
            Some(c)
        }
        None => None,
    };
    if request_header.is_none() && args.requestheader_from_cluster {
        request_header = RequestHeaderConfig::from_cluster(&client)
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    let auth = Auth::new(AuthConfig {
        request_header,
        client: Some(client.clone()),
        ..AuthConfig::default()
    })
    .map_err(|e| Error::Other(e.to_string()))?;
    let auth = Arc::new(auth);
    if args.requestheader_from_cluster && args.requestheader_client_ca_file.is_none() {
        auth.spawn_request_header_refresh(client, REQUESTHEADER_REFRESH);
    }
    Ok(auth)
}

fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let state = state.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        state.metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
