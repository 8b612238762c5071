//! TLS for the adapter's HTTPS-only server (rustls, ring provider).
//! (To be written by the auth/TLS work: serving certificate from files reloaded on change or
//! self-signed at start; client certificates requested but verified by `auth`, so an untrusted
//! one is a 401 as in kube-apiserver, not a handshake failure.)

use std::path::PathBuf;
use std::sync::Arc;

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files, re-read when they change (cert-manager rotates them in place).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed pair generated at start for these DNS names / IPs.
    SelfSigned { hosts: Vec<String> },
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The rustls server configuration for `source`.
pub fn server_config(source: &CertSource) -> Result<Arc<rustls::ServerConfig>, Error> {
    let _ = source;
    Err(Error::Setup("TLS is not implemented yet".into()))
}
