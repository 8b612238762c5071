//! The front-proxy ("requestheader") authenticator: kube-apiserver's aggregator presents a
//! client certificate signed by the requestheader CA and names the end user in headers. The
//! headers are believed only after the certificate chains to that CA and its CN is an allowed
//! proxy name, exactly as k8s.io/apiserver's `headerrequest` + `x509request` verifier do.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName};
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::attributes::percent_decode;
use super::cache::TtlCache;
use super::{AuthError, UserInfo, kube_error};
use crate::https::PeerCertificates;

/// Namespace and name of the ConfigMap kube-apiserver publishes its requestheader settings in.
pub const CONFIGMAP_NAMESPACE: &str = "kube-system";
pub const CONFIGMAP_NAME: &str = "extension-apiserver-authentication";

/// What kube-apiserver's `--requestheader-*` flags say, as this adapter must mirror them.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// CA bundle that signs the aggregator's `--proxy-client-cert-file`.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// Accepted CNs of that client certificate; empty means any certificate the CA signed.
    pub allowed_names: Vec<String>,
    /// Headers naming the user; the first non-empty one wins.
    pub username_headers: Vec<String>,
    /// Headers carrying the user's UID (Kubernetes 1.32+ `requestheader-uid-headers`); none by
    /// default, as in kube-apiserver.
    pub uid_headers: Vec<String>,
    /// Headers carrying groups; every non-empty value of each, in order, unsplit.
    pub group_headers: Vec<String>,
    /// Prefixes of headers carrying `extra` (key = rest of the name, lower-cased, unescaped).
    pub extra_headers_prefixes: Vec<String>,
}

impl fmt::Debug for RequestHeaderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprints: Vec<String> = self
            .client_ca
            .iter()
            .map(|c| crate::tls::sha256_fingerprint(c))
            .collect();
        f.debug_struct("RequestHeaderConfig")
            .field("client_ca_sha256", &fingerprints)
            .field("allowed_names", &self.allowed_names)
            .field("username_headers", &self.username_headers)
            .field("uid_headers", &self.uid_headers)
            .field("group_headers", &self.group_headers)
            .field("extra_headers_prefixes", &self.extra_headers_prefixes)
            .finish()
    }
}

impl RequestHeaderConfig {
    /// Kubernetes' default header names around `client_ca`, any CN allowed.
    pub fn new(client_ca: Vec<CertificateDer<'static>>) -> Self {
        Self {
            client_ca,
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".into()],
            uid_headers: Vec::new(),
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefixes: vec!["X-Remote-Extra-".into()],
        }
    }

    /// From the PEM text of a `--requestheader-client-ca-file`, with default headers; set
    /// `allowed_names` and the header lists from the other flags.
    pub fn from_pem(ca_pem: &str) -> Result<Self, AuthError> {
        Ok(Self::new(parse_ca_pem(ca_pem)?))
    }

    /// From the data of `kube-system/extension-apiserver-authentication`, as kube-apiserver
    /// publishes it. `None` when the cluster has no requestheader CA (no aggregation layer
    /// configured). A missing header key takes Kubernetes' default (kube-apiserver always
    /// writes them together with the CA).
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<Option<Self>, AuthError> {
        let Some(ca) = data.get("requestheader-client-ca-file") else {
            return Ok(None);
        };
        let mut config = Self::new(parse_ca_pem(ca)?);
        let list = |key: &str| -> Result<Option<Vec<String>>, AuthError> {
            data.get(key)
                .map(|raw| {
                    serde_json::from_str::<Vec<String>>(raw).map_err(|e| AuthError::ConfigMap {
                        key: key.to_string(),
                        detail: format!("not a JSON array of strings: {e}"),
                    })
                })
                .transpose()
        };
        if let Some(v) = list("requestheader-allowed-names")? {
            config.allowed_names = v;
        }
        if let Some(v) = list("requestheader-username-headers")? {
            config.username_headers = v;
        }
        if let Some(v) = list("requestheader-uid-headers")? {
            config.uid_headers = v;
        }
        if let Some(v) = list("requestheader-group-headers")? {
            config.group_headers = v;
        }
        if let Some(v) = list("requestheader-extra-headers-prefix")? {
            config.extra_headers_prefixes = v;
        }
        Ok(Some(config))
    }

    /// Reads `kube-system/extension-apiserver-authentication` through `client` (the adapter's
    /// ServiceAccount needs the `extension-apiserver-authentication-reader` Role there).
    pub async fn from_cluster(client: &kube::Client) -> Result<Option<Self>, AuthError> {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
        let cm = api.get(CONFIGMAP_NAME).await.map_err(|e| {
            kube_error(
                "read ConfigMap kube-system/extension-apiserver-authentication",
                e,
            )
        })?;
        Self::from_configmap_data(&cm.data.unwrap_or_default())
    }
}

fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, AuthError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AuthError::RequestHeaderCa(e.to_string()))?;
    if certs.is_empty() {
        return Err(AuthError::RequestHeaderCa(
            "no PEM CERTIFICATE block found".into(),
        ));
    }
    Ok(certs)
}

/// How long a client chain's verdict is reused. The aggregator sends every request over a
/// few long-lived connections with one chain, and a signature check per request would cost
/// more than the rest of the request; short enough that an expiring certificate is refused
/// almost on time.
const CHAIN_VERDICT_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// A [`RequestHeaderConfig`] made ready to check requests.
pub(crate) struct RequestHeaderAuthenticator {
    pub(crate) config: RequestHeaderConfig,
    verifier: Arc<dyn ClientCertVerifier>,
    /// Verdicts on chains, keyed by the SHA-256 of the whole chain.
    verdicts: TtlCache<[u8; 32], Result<(), Rejection>>,
    username: Vec<HeaderName>,
    uid: Vec<HeaderName>,
    groups: Vec<HeaderName>,
    /// Lower-cased, as `HeaderMap` keys are.
    extra_prefixes: Vec<String>,
}

/// Why the front-proxy path did not authenticate a request that carried a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The certificate does not chain to the requestheader CA (or is expired, or not for
    /// client auth): an error in Kubernetes' union authenticator.
    Untrusted(String),
    /// Trusted, but its CN is not an allowed proxy name: an error too.
    NameNotAllowed(String),
    /// A trusted proxy that named no user: "not applicable" in Kubernetes, so another
    /// authenticator (or anonymous) may still apply.
    NoUser,
}

impl RequestHeaderAuthenticator {
    pub(crate) fn new(config: RequestHeaderConfig) -> Result<Self, AuthError> {
        let mut roots = RootCertStore::empty();
        for ca in &config.client_ca {
            roots
                .add(ca.clone())
                .map_err(|e| AuthError::RequestHeaderCa(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| AuthError::RequestHeaderCa(e.to_string()))?;
        let names = |list: &[String], what: &str| -> Result<Vec<HeaderName>, AuthError> {
            list.iter()
                .map(|h| {
                    HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| {
                        AuthError::RequestHeaderCa(format!(
                            "{what} header {h:?} is not a valid HTTP header name"
                        ))
                    })
                })
                .collect()
        };
        let username = names(&config.username_headers, "username")?;
        if username.is_empty() {
            return Err(AuthError::RequestHeaderCa(
                "no username header configured; kube-apiserver's default is X-Remote-User".into(),
            ));
        }
        let uid = names(&config.uid_headers, "uid")?;
        let groups = names(&config.group_headers, "group")?;
        let extra_prefixes = config
            .extra_headers_prefixes
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Self {
            config,
            verifier,
            verdicts: TtlCache::new(1024),
            username,
            uid,
            groups,
            extra_prefixes,
        })
    }

    /// The user the trusted front proxy names. Only called with a non-empty chain.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: &PeerCertificates,
    ) -> Result<UserInfo, Rejection> {
        let key = chain_digest(&peer.0);
        let verdict = match self.verdicts.get(&key) {
            Some(verdict) => verdict,
            None => {
                let verdict = self.check_chain(&peer.0);
                self.verdicts
                    .insert(key, verdict.clone(), CHAIN_VERDICT_TTL);
                verdict
            }
        };
        verdict?;
        let username = first_value(headers, &self.username).ok_or(Rejection::NoUser)?;
        Ok(UserInfo {
            username,
            uid: first_value(headers, &self.uid).unwrap_or_default(),
            groups: all_values(headers, &self.groups),
            extra: self.extra(headers),
        })
    }

    /// Whether `chain` is a client certificate of the requestheader CA with an allowed CN.
    fn check_chain(&self, chain: &[CertificateDer<'static>]) -> Result<(), Rejection> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(Rejection::Untrusted("no client certificate".into()));
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| Rejection::Untrusted(e.to_string()))?;
        if !self.config.allowed_names.is_empty() {
            let cn = common_name(leaf).unwrap_or_default();
            if !self.config.allowed_names.contains(&cn) {
                return Err(Rejection::NameNotAllowed(cn));
            }
        }
        Ok(())
    }

    /// Whether `name` is one of the headers this authenticator reads, so the middleware can
    /// strip them before handlers run (as Kubernetes does).
    pub(crate) fn is_identity_header(&self, name: &HeaderName) -> bool {
        self.username.contains(name)
            || self.uid.contains(name)
            || self.groups.contains(name)
            || self
                .extra_prefixes
                .iter()
                .any(|p| name.as_str().starts_with(p.as_str()))
    }

    fn extra(&self, headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // Prefixes first, as Kubernetes does, so value order follows the prefix order.
        for prefix in &self.extra_prefixes {
            for name in headers.keys() {
                let Some(key) = name.as_str().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if key.is_empty() {
                    continue;
                }
                let values = headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
                    .map(str::to_string);
                extra.entry(percent_decode(key)).or_default().extend(values);
            }
        }
        extra
    }
}

/// SHA-256 over the length-prefixed certificates, so two chains never share a key.
fn chain_digest(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for cert in chain {
        context.update(&(cert.len() as u64).to_be_bytes());
        context.update(cert);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The first non-empty value among `names`, in order (Go's `Header.Get` looks at the first
/// value of each).
fn first_value(headers: &HeaderMap, names: &[HeaderName]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| headers.get(n))
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// Every non-empty value of every header in `names`; values are not split on commas, as
/// Kubernetes does not split them (a group name may hold a comma).
fn all_values(headers: &HeaderMap, names: &[HeaderName]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| headers.get_all(n).iter())
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// The subject CN; the last one when there are several, as Go's `pkix.Name` keeps.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .last()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    struct Pki {
        ca_pem: String,
        client: CertificateDer<'static>,
        other: CertificateDer<'static>,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "requestheader-ca");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let client = |cn: &str, issuer: &rcgen::Issuer<'_, rcgen::KeyPair>| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.extended_key_usages
                .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
            p.signed_by(&key, issuer).expect("sign").der().clone()
        };
        let other_key = rcgen::KeyPair::generate().expect("key");
        let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("p");
        other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let other_issuer = rcgen::Issuer::new(other_params, other_key);
        Pki {
            ca_pem: ca.pem(),
            client: client("front-proxy-client", &issuer),
            other: client("front-proxy-client", &other_issuer),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn chain(c: &CertificateDer<'static>) -> PeerCertificates {
        PeerCertificates(Arc::new(vec![c.clone()]))
    }

    #[test]
    fn trusted_proxy_names_the_user_like_kubernetes() {
        let pki = pki();
        let mut config = RequestHeaderConfig::from_pem(&pki.ca_pem).expect("pem");
        config.allowed_names = vec!["front-proxy-client".into()];
        let a = RequestHeaderAuthenticator::new(config).expect("config");
        let h = headers(&[
            ("X-Remote-User", ""),
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "devs,ops"),
            ("X-Remote-Group", ""),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
            ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
        ]);
        // Go's Header.Get looks at the first value only, which is empty here.
        assert_eq!(
            a.authenticate(&h, &chain(&pki.client)),
            Err(Rejection::NoUser)
        );
        let h = headers(&[
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "devs,ops"),
            ("X-Remote-Group", ""),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
            ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
        ]);
        let user = a.authenticate(&h, &chain(&pki.client)).expect("trusted");
        assert_eq!(user.username, "alice");
        assert_eq!(user.groups, vec!["devs,ops", "system:authenticated"]);
        assert_eq!(user.extra["scopes"], vec!["a", "b"]);
        assert_eq!(user.extra["acme.com/project"], vec!["p1"]);
        assert!(a.is_identity_header(&HeaderName::from_static("x-remote-extra-scopes")));
    }

    #[test]
    fn untrusted_and_unlisted_certificates_are_rejected() {
        let pki = pki();
        let h = headers(&[("X-Remote-User", "alice")]);
        let mut config = RequestHeaderConfig::from_pem(&pki.ca_pem).expect("pem");
        let any = RequestHeaderAuthenticator::new(config.clone()).expect("config");
        assert!(matches!(
            any.authenticate(&h, &chain(&pki.other)),
            Err(Rejection::Untrusted(_))
        ));
        // Empty allowed names: any CN the CA signed.
        assert!(any.authenticate(&h, &chain(&pki.client)).is_ok());
        config.allowed_names = vec!["aggregator".into()];
        let strict = RequestHeaderAuthenticator::new(config).expect("config");
        assert_eq!(
            strict.authenticate(&h, &chain(&pki.client)),
            Err(Rejection::NameNotAllowed("front-proxy-client".into()))
        );
    }

    #[test]
    fn configmap_data_like_kube_apiserver_publishes_it() {
        let pki = pki();
        let mut data = BTreeMap::new();
        assert_eq!(
            RequestHeaderConfig::from_configmap_data(&data).expect("ok"),
            None
        );
        data.insert("requestheader-client-ca-file".into(), pki.ca_pem.clone());
        data.insert(
            "requestheader-allowed-names".into(),
            r#"["front-proxy-client"]"#.into(),
        );
        data.insert(
            "requestheader-username-headers".into(),
            r#"["X-Remote-User"]"#.into(),
        );
        data.insert(
            "requestheader-group-headers".into(),
            r#"["X-Remote-Group"]"#.into(),
        );
        data.insert(
            "requestheader-extra-headers-prefix".into(),
            r#"["X-Remote-Extra-"]"#.into(),
        );
        let config = RequestHeaderConfig::from_configmap_data(&data)
            .expect("ok")
            .expect("configured");
        assert_eq!(config.allowed_names, vec!["front-proxy-client"]);
        assert_eq!(config.client_ca.len(), 1);
        data.insert("requestheader-allowed-names".into(), "front-proxy".into());
        let e = RequestHeaderConfig::from_configmap_data(&data).expect_err("bad json");
        assert!(e.to_string().contains("requestheader-allowed-names"), "{e}");
        assert!(RequestHeaderConfig::from_pem("not pem").is_err());
    }
}
