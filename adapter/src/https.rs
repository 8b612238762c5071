//! The HTTPS accept loop: TLS handshakes with tokio-rustls, then hyper (HTTP/1.1 and h2) serving
//! the axum router, with the client's certificate chain put on each request for `auth`.
//! (To be written by the auth/TLS work.)

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

/// The verified-at-TLS-layer-only client certificate chain (leaf first), as a request
/// extension. Empty when the client sent none.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Serves `app` over TLS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, tls, app);
    shutdown.await;
    Ok(())
}
