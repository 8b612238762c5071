//! The HTTPS accept loop: TLS handshakes with tokio-rustls (each in its own task, so a slow
//! or hostile client never holds up the accept loop), then hyper (HTTP/1.1 and h2) serving the
//! axum router, with the client's certificate chain put on each request for `auth`. There is
//! no plain-HTTP fallback: a plain request fails the handshake.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The verified-at-TLS-layer-only client certificate chain (leaf first), as a request
/// extension. Empty when the client sent none. Only the handshake signature was checked:
/// trust in the chain is decided by `auth`.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Limits of the server; the defaults suit kube-apiserver's aggregator and a Deployment's
/// default 30 s termination grace period.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A connection that has not finished its TLS handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// After `shutdown`, in-flight requests get this long before connections are cut.
    pub drain_timeout: Duration,
    /// An HTTP/1.1 client must send a request's headers within this (slowloris guard).
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, with default
/// [`ServeOptions`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, tls, app, shutdown, ServeOptions::default()).await
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves: then it stops accepting,
/// lets in-flight requests finish (idle keep-alive connections close at once, h2 gets
/// GOAWAY) for up to `options.drain_timeout`, and cuts what is left.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    connections.spawn(connection(
                        tcp,
                        acceptor.clone(),
                        app.clone(),
                        stop_rx.clone(),
                        options.clone(),
                    ));
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // as hyper's and axum's own servers do.
                    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                match done {
                    Err(e) if e.is_panic() => {
                        tracing::error!(error = %e, "a connection task panicked");
                    }
                    _ => {}
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "connections still busy after the drain timeout; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// Errors that concern one connection only, after which accepting goes on at once.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Resolves once shutdown began (or the server is gone). Returns `()` so that no `watch`
/// guard is held across later awaits.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
    options: ServeOptions,
) {
    // Small JSON answers: do not let Nagle delay them.
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let peer = PeerCertificates(Arc::new(
        tls.get_ref()
            .1
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
    ));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        let request: Request = request.map(axum::body::Body::new);
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error while draining");
            }
        }
    }
}
