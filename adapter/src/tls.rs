//! TLS for the adapter's HTTPS-only server (rustls, ring provider): the serving certificate
//! comes from PEM files re-read when they change (cert-manager and kubelet rotate them in
//! place) or is self-signed at start; client certificates are requested but only their
//! handshake signatures are checked here, because chain trust is `auth`'s job: an untrusted
//! certificate must become a 401 `Status`, as kube-apiserver answers, not a handshake failure.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// How often, at most, a handshake looks at the certificate files' metadata. Rotation tools
/// renew well before expiry, so a few seconds of lag costs nothing, and the check stays off
/// the hot path of busy servers.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files, re-read when they change (cert-manager rotates them in place).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed pair generated at start for these DNS names / IPs.
    SelfSigned { hosts: Vec<String> },
}

/// Errors of this module; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the serving certificate file {path}: {source}; check --tls-cert-file")]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the serving key file {path}: {source}; check --tls-private-key-file")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} holds no PEM certificate ({detail}); it must hold the PEM certificate chain, leaf first"
    )]
    NoCertificate { path: PathBuf, detail: String },
    #[error(
        "{path} holds no usable PEM private key ({detail}); it must hold one PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key"
    )]
    BadKey { path: PathBuf, detail: String },
    #[error(
        "the private key in {key} does not belong to the first certificate in {cert} ({detail}); pass the matching pair, leaf certificate first"
    )]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error(
        "cannot generate a self-signed certificate for {hosts:?}: {source}; pass valid DNS names or IP addresses"
    )]
    SelfSigned {
        hosts: Vec<String>,
        source: rcgen::Error,
    },
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// The rustls server configuration for `source`: TLS 1.2 and 1.3 with the ring provider,
/// ALPN `h2` and `http/1.1`, client certificates requested but optional (see the module doc).
pub fn server_config(source: &CertSource) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver: Arc<dyn ResolvesServerCert> = match source {
        CertSource::Files { cert, key } => Arc::new(FileResolver::new(
            cert,
            key,
            provider.clone(),
            RELOAD_CHECK_INTERVAL,
        )?),
        CertSource::SelfSigned { hosts } => Arc::new(self_signed(hosts, &provider)?),
    };
    let verifier = Arc::new(DeferredClientCertVerifier {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex, the form `openssl x509
/// -fingerprint -sha256` prints, so operators can compare what they see with what they set.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads and checks a PEM cert chain + key pair.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, Error> {
    let cert_pem = std::fs::read(cert).map_err(|source| Error::ReadCert {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key).map_err(|source| Error::ReadKey {
        path: key.to_path_buf(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::NoCertificate {
            path: cert.to_path_buf(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate {
            path: cert.to_path_buf(),
            detail: "no CERTIFICATE block".into(),
        });
    }
    // The error type of pki-types' PEM parser never echoes key bytes, only section names.
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| Error::BadKey {
        path: key.to_path_buf(),
        detail: e.to_string(),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| Error::BadKey {
            path: key.to_path_buf(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(e) => Err(Error::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// What identifies one version of a file without reading it: a rename (atomic replace) or a
/// Kubernetes secret volume's `..data` symlink swap changes the inode, an in-place write the
/// mtime or size. `None` when the file cannot be stat'ed (mid-rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<(SystemTime, u64, u64)>);

impl FileStamp {
    fn of(path: &Path) -> Self {
        Self(std::fs::metadata(path).ok().map(|m| {
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), ino)
        }))
    }
}

#[derive(Debug)]
struct ReloadState {
    last_check: Instant,
    /// Stamps of the pair now served.
    loaded: (FileStamp, FileStamp),
    /// Stamps of a pair that failed to load, so it is warned about once, not per handshake.
    failed: Option<(FileStamp, FileStamp)>,
}

/// Serves the pair from `cert`/`key`, re-reading it during handshakes when the files change.
struct FileResolver {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    state: Mutex<ReloadState>,
    check_every: Duration,
}

impl fmt::Debug for FileResolver {
    // Hand-written so that no key material can reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileResolver")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl FileResolver {
    fn new(
        cert: &Path,
        key: &Path,
        provider: Arc<CryptoProvider>,
        check_every: Duration,
    ) -> Result<Self, Error> {
        let stamps = (FileStamp::of(cert), FileStamp::of(key));
        let pair = load_pair(cert, key, &provider)?;
        tracing::info!(
            cert = %cert.display(),
            fingerprint = %leaf_fingerprint(&pair),
            "serving certificate loaded; it is re-read when the files change"
        );
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(pair),
            state: Mutex::new(ReloadState {
                last_check: Instant::now(),
                loaded: stamps,
                failed: None,
            }),
            check_every,
        })
    }

    /// Reloads the pair if the files changed and the last check is old enough. A handshake
    /// that finds another one checking just serves the current pair.
    fn maybe_reload(&self) {
        let Ok(mut state) = self.state.try_lock() else {
            return;
        };
        if state.last_check.elapsed() < self.check_every {
            return;
        }
        state.last_check = Instant::now();
        let stamps = (FileStamp::of(&self.cert), FileStamp::of(&self.key));
        if stamps == state.loaded || state.failed.as_ref() == Some(&stamps) {
            return;
        }
        match load_pair(&self.cert, &self.key, &self.provider) {
            Ok(pair) => {
                tracing::info!(
                    cert = %self.cert.display(),
                    fingerprint = %leaf_fingerprint(&pair),
                    "serving certificate reloaded"
                );
                self.current.store(Arc::new(pair));
                state.loaded = stamps;
                state.failed = None;
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the serving certificate files changed but the new pair is unusable; still serving the previous one"
                );
                state.failed = Some(stamps);
            }
        }
    }
}

impl ResolvesServerCert for FileResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.maybe_reload();
        Some(self.current.load_full())
    }
}

fn leaf_fingerprint(pair: &CertifiedKey) -> String {
    pair.cert
        .first()
        .map(|c| sha256_fingerprint(c))
        .unwrap_or_default()
}

/// A pair generated once at start, served for the life of the process.
struct SelfSigned(Arc<CertifiedKey>);

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SelfSigned")
    }
}

impl ResolvesServerCert for SelfSigned {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn self_signed(hosts: &[String], provider: &CryptoProvider) -> Result<SelfSigned, Error> {
    let hosts = if hosts.is_empty() {
        vec!["localhost".to_string()]
    } else {
        hosts.to_vec()
    };
    let err = |source| Error::SelfSigned {
        hosts: hosts.clone(),
        source,
    };
    let mut params = rcgen::CertificateParams::new(hosts.clone()).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gpuscale-adapter self-signed");
    params
        .extended_key_usages
        .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    let der = cert.der().clone();
    let private = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = provider.key_provider.load_private_key(private)?;
    tracing::warn!(
        hosts = ?hosts,
        sha256_fingerprint = %sha256_fingerprint(&der),
        "serving a SELF-SIGNED certificate generated at start (a new one at every restart): \
         kube-apiserver reaches this APIService only with its caBundle set to this certificate \
         or insecureSkipTLSVerify; pass --tls-cert-file and --tls-private-key-file in production"
    );
    Ok(SelfSigned(Arc::new(CertifiedKey::new(vec![der], signing))))
}

/// Requests a client certificate, does not require one, and accepts any chain at the TLS
/// layer while still checking the handshake signature (proof that the client holds the
/// leaf's key). `auth` checks the chain against the requestheader CA per request, so a bad
/// certificate gets kube-apiserver's answer (401 `Status`) instead of an opaque TLS alert,
/// and a client with a bad certificate can still fall back to a bearer token.
#[derive(Debug)]
struct DeferredClientCertVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: a Go client picks its certificate by these, and the aggregator's
    /// front-proxy certificate must be sent whatever CA we would name.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        (cert_path, key_path, sha256_fingerprint(cert.der()))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gpuscale-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn files_load_and_reload_only_good_pairs() {
        let dir = scratch("reload");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key, first) = write_pair(&dir, "a", &["localhost"]);
        let resolver =
            FileResolver::new(&cert, &key, provider, Duration::ZERO).expect("first pair loads");
        assert_eq!(leaf_fingerprint(&resolver.current.load()), first);

        // A key that does not match: keep serving the old pair, remember the failure.
        let (_, other_key, _) = write_pair(&dir, "b", &["localhost"]);
        std::fs::copy(&other_key, &key).expect("copy");
        resolver.maybe_reload();
        assert_eq!(leaf_fingerprint(&resolver.current.load()), first);
        assert!(resolver.state.lock().expect("lock").failed.is_some());

        // A matching new pair replaces it.
        let (c2, k2, second) = write_pair(&dir, "c", &["localhost"]);
        std::fs::rename(&c2, &cert).expect("rename");
        std::fs::rename(&k2, &key).expect("rename");
        resolver.maybe_reload();
        assert_eq!(leaf_fingerprint(&resolver.current.load()), second);
        assert!(resolver.state.lock().expect("lock").failed.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = scratch("bad");
        let provider = rustls::crypto::ring::default_provider();
        let (cert, key, _) = write_pair(&dir, "a", &["localhost"]);
        let missing = dir.join("missing.crt");
        let e = load_pair(&missing, &key, &provider).expect_err("missing");
        assert!(matches!(e, Error::ReadCert { .. }), "{e}");
        let e = load_pair(&key, &key, &provider).expect_err("key as cert");
        assert!(matches!(e, Error::NoCertificate { .. }), "{e}");
        let e = load_pair(&cert, &cert, &provider).expect_err("cert as key");
        assert!(matches!(e, Error::BadKey { .. }), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn self_signed_and_files_build_configs() {
        let config = server_config(&CertSource::SelfSigned {
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        })
        .expect("self-signed");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let dir = scratch("config");
        let (cert, key, _) = write_pair(&dir, "a", &["localhost"]);
        server_config(&CertSource::Files { cert, key }).expect("files");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn fingerprint_format() {
        let f = sha256_fingerprint(b"abc");
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
        assert_eq!(f.len(), 32 * 3 - 1);
    }
}
