//! Authentication and authorization, as an aggregated API server does them (mirroring
//! k8s.io/apiserver's `DelegatingAuthenticationOptions` / `DelegatingAuthorizationOptions`):
//! the front-proxy client certificate against the requestheader CA + allowed names, then
//! `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-*`; bearer tokens via TokenReview;
//! SubjectAccessReview for every request; both reviews cached briefly; `--allow-anonymous`
//! for local use only.

mod attributes;
mod cache;
mod requestheader;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as SarResourceAttributes, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use kube::api::PostParams;

pub use attributes::{RequestAttributes, ResourceAttributes, request_attributes};
pub use requestheader::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, RequestHeaderConfig};

use crate::api::status::Status;
use crate::https::PeerCertificates;
use cache::TtlCache;
use requestheader::{Rejection, RequestHeaderAuthenticator};

/// The user of requests that carry no credentials, when anonymous access is on.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of that user.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group Kubernetes adds to every authenticated user; RBAC bindings rely on it.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Probe paths, served without authentication so kubelet's probes (which carry no
/// credentials) work; they reveal nothing but liveness.
pub const PROBE_PATHS: [&str; 3] = ["/healthz", "/livez", "/readyz"];

/// How many distinct tokens / authorization questions are remembered at most.
const CACHE_CAPACITY: usize = 16_384;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserInfo {
    pub username: String,
    /// Empty when unknown.
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The user of credential-less requests when anonymous access is on.
    pub fn anonymous() -> Self {
        Self {
            username: ANONYMOUS_USER.into(),
            groups: vec![UNAUTHENTICATED_GROUP.into()],
            ..Self::default()
        }
    }

    /// Adds `system:authenticated` like Kubernetes' `AuthenticatedGroupAdder`: to every
    /// authenticated user but the anonymous one, unless it already has it or
    /// `system:unauthenticated`.
    fn with_authenticated_group(mut self) -> Self {
        if self.username != ANONYMOUS_USER
            && !self
                .groups
                .iter()
                .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP)
        {
            self.groups.push(AUTHENTICATED_GROUP.into());
        }
        self
    }
}

/// Errors of this module; each says what to fix, and [`AuthError::status`] gives the
/// Kubernetes `Status` a client gets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// 401: nothing identified the caller.
    #[error(
        "no credentials: call through kube-apiserver (front-proxy client certificate) or send `Authorization: Bearer <token>`"
    )]
    NoCredentials,
    /// 401: every credential presented was rejected; says why for each.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: SubjectAccessReview did not allow it; carries Kubernetes' forbidden message.
    #[error("{0}")]
    Forbidden(String),
    /// 503: kube-apiserver could not answer a TokenReview or SubjectAccessReview (or refused
    /// the adapter); transient, so the HPA holds and retries.
    #[error("cannot {action} through the Kubernetes API: {detail}")]
    KubeApi {
        action: &'static str,
        detail: String,
    },
    /// Start-up: unusable requestheader CA or header configuration.
    #[error(
        "requestheader client CA: {0}; pass the PEM bundle kube-apiserver has as --requestheader-client-ca-file"
    )]
    RequestHeaderCa(String),
    /// Start-up: a malformed key in the published ConfigMap.
    #[error("ConfigMap kube-system/extension-apiserver-authentication key {key}: {detail}")]
    ConfigMap { key: String, detail: String },
    /// Start-up: authorization needs the Kubernetes API.
    #[error(
        "authentication and authorization need the Kubernetes API (TokenReview, SubjectAccessReview): run in a cluster or pass a kubeconfig; --allow-anonymous is for local testing only"
    )]
    NoKubeClient,
}

impl AuthError {
    /// The `Status` a client gets for this error.
    pub fn status(&self) -> Status {
        match self {
            Self::NoCredentials | Self::Unauthenticated(_) => {
                Status::unauthorized(format!("Unauthorized: {self}"))
            }
            Self::Forbidden(message) => Status::forbidden(message.clone()),
            Self::KubeApi { .. } => Status::unavailable(self.to_string()),
            Self::RequestHeaderCa(_) | Self::ConfigMap { .. } | Self::NoKubeClient => {
                Status::internal(self.to_string())
            }
        }
    }
}

/// A kube client error as an [`AuthError::KubeApi`], telling the operator which RBAC grant
/// is missing when kube-apiserver refused the adapter itself.
pub(crate) fn kube_error(action: &'static str, e: kube::Error) -> AuthError {
    let detail = match &e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => format!(
            "{e}; the adapter's ServiceAccount needs the ClusterRole system:auth-delegator \
             (TokenReview, SubjectAccessReview) and the Role extension-apiserver-authentication-reader \
             in kube-system"
        ),
        _ => format!("{e}; retry later"),
    };
    AuthError::KubeApi { action, detail }
}

/// How to build an [`Auth`].
#[derive(Clone)]
pub struct AuthConfig {
    /// Front-proxy (aggregator) authentication; `None` accepts bearer tokens only.
    pub request_header: Option<RequestHeaderConfig>,
    /// For TokenReview and SubjectAccessReview; required unless `allow_anonymous`.
    pub client: Option<kube::Client>,
    /// Everything allowed to everyone: local testing only.
    pub allow_anonymous: bool,
    /// How long a TokenReview answer (accepted or rejected) is reused; Kubernetes' default
    /// `--authentication-token-webhook-cache-ttl` for delegated servers is 10 s.
    pub token_cache_ttl: Duration,
    /// How long an allowed SubjectAccessReview is reused.
    pub allow_cache_ttl: Duration,
    /// How long a denied one is reused (shorter, so a fixed RoleBinding takes effect fast).
    pub deny_cache_ttl: Duration,
    /// How long a TokenReview or SubjectAccessReview may take before the request gets a
    /// 503 (kube-apiserver's own webhook timeout is 10 s too); kube's default would wait
    /// minutes.
    pub review_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            request_header: None,
            client: None,
            allow_anonymous: false,
            token_cache_ttl: Duration::from_secs(10),
            allow_cache_ttl: Duration::from_secs(10),
            deny_cache_ttl: Duration::from_secs(5),
            review_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("request_header", &self.request_header)
            .field("client", &self.client.as_ref().map(|_| "kube::Client"))
            .field("allow_anonymous", &self.allow_anonymous)
            .field("token_cache_ttl", &self.token_cache_ttl)
            .field("allow_cache_ttl", &self.allow_cache_ttl)
            .field("deny_cache_ttl", &self.deny_cache_ttl)
            .field("review_timeout", &self.review_timeout)
            .finish()
    }
}

#[derive(Clone)]
enum TokenOutcome {
    Authenticated(UserInfo),
    Rejected(String),
}

#[derive(Clone)]
enum Decision {
    Allowed,
    Denied(String),
}

/// Authenticates and authorizes requests; share it as `Arc<Auth>`.
pub struct Auth {
    request_header: ArcSwapOption<RequestHeaderAuthenticator>,
    client: Option<kube::Client>,
    allow_anonymous: bool,
    token_cache_ttl: Duration,
    allow_cache_ttl: Duration,
    deny_cache_ttl: Duration,
    review_timeout: Duration,
    /// Keyed by the token's SHA-256: the raw token is never stored.
    tokens: TtlCache<[u8; 32], TokenOutcome>,
    decisions: TtlCache<(UserInfo, RequestAttributes), Decision>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field(
                "request_header",
                &self
                    .request_header
                    .load()
                    .as_ref()
                    .map(|a| a.config.clone()),
            )
            .field("allow_anonymous", &self.allow_anonymous)
            .finish_non_exhaustive()
    }
}

/// Logs the loud warning `--allow-anonymous` deserves; [`Auth::new`] calls it.
pub fn warn_anonymous() {
    tracing::warn!(
        "authentication and authorization are OFF: anyone who can reach this port can read \
         every metric; use only for local testing"
    );
}

impl Auth {
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        if config.allow_anonymous {
            warn_anonymous();
        } else if config.client.is_none() {
            return Err(AuthError::NoKubeClient);
        }
        if !config.allow_anonymous && config.request_header.is_none() {
            tracing::warn!(
                "no requestheader client CA: requests proxied by kube-apiserver's aggregator \
                 will get 401, only bearer tokens are accepted"
            );
        }
        let request_header = config
            .request_header
            .map(RequestHeaderAuthenticator::new)
            .transpose()?
            .map(Arc::new);
        Ok(Self {
            request_header: ArcSwapOption::new(request_header),
            client: config.client,
            allow_anonymous: config.allow_anonymous,
            token_cache_ttl: config.token_cache_ttl,
            allow_cache_ttl: config.allow_cache_ttl,
            deny_cache_ttl: config.deny_cache_ttl,
            review_timeout: config.review_timeout,
            tokens: TtlCache::new(CACHE_CAPACITY),
            decisions: TtlCache::new(CACHE_CAPACITY),
        })
    }

    /// Replaces the front-proxy settings (e.g. after the ConfigMap changed).
    pub fn set_request_header(&self, config: Option<RequestHeaderConfig>) -> Result<(), AuthError> {
        let next = config
            .map(RequestHeaderAuthenticator::new)
            .transpose()?
            .map(Arc::new);
        self.request_header.store(next);
        Ok(())
    }

    /// Re-reads `kube-system/extension-apiserver-authentication` every `every` and applies it
    /// when it changed, as delegated API servers follow a rotated front-proxy CA. A failed
    /// read keeps the current settings and logs a warning.
    pub fn spawn_request_header_refresh(
        self: &Arc<Self>,
        client: kube::Client,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let auth = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match RequestHeaderConfig::from_cluster(&client).await {
                    Ok(Some(config)) => {
                        let current = auth.request_header.load();
                        if current.as_ref().map(|a| &a.config) != Some(&config) {
                            match auth.set_request_header(Some(config)) {
                                Ok(()) => tracing::info!("requestheader settings reloaded"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "requestheader settings unusable; keeping the previous ones")
                                }
                            }
                        }
                    }
                    Ok(None) => tracing::warn!(
                        "the requestheader CA is gone from the ConfigMap; keeping the previous one"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot refresh requestheader settings"),
                }
            }
        })
    }

    /// Who sent a request, trying authenticators in Kubernetes' delegated order (front-proxy
    /// certificate, then bearer token) like its union authenticator: the first success wins;
    /// a rejection by one does not stop the next, so a client whose certificate is untrusted
    /// but whose token is valid is authenticated by the token. When all fail: 503 if the
    /// TokenReview could not be made, else 401 naming each rejection. With no credentials at
    /// all: anonymous if allowed, else 401. As in Kubernetes, a rejected credential is a 401
    /// even with anonymous access on (never downgraded to anonymous).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: &PeerCertificates,
    ) -> Result<UserInfo, AuthError> {
        let mut rejected: Vec<String> = Vec::new();
        let mut notes: Vec<&'static str> = Vec::new();
        let mut unavailable = None;

        if !peer.is_empty() {
            match self.request_header.load_full() {
                Some(front_proxy) => match front_proxy.authenticate(headers, peer) {
                    Ok(user) => return Ok(user.with_authenticated_group()),
                    Err(Rejection::Untrusted(why)) => rejected.push(format!(
                        "client certificate not trusted by the requestheader client CA ({why})"
                    )),
                    Err(Rejection::NameNotAllowed(cn)) => rejected.push(format!(
                        "client certificate CN {cn:?} is not in the requestheader allowed names"
                    )),
                    Err(Rejection::NoUser) => notes.push(
                        "the front-proxy certificate is trusted but no username header names a user",
                    ),
                },
                None => notes.push(
                    "a client certificate was sent but no requestheader client CA is configured",
                ),
            }
        }

        if let Some(token) = bearer_token(headers) {
            match &self.client {
                Some(client) => match self.review_token(client, token).await {
                    Ok(TokenOutcome::Authenticated(user)) => {
                        return Ok(user.with_authenticated_group());
                    }
                    Ok(TokenOutcome::Rejected(why)) => {
                        rejected.push(format!("bearer token rejected by TokenReview ({why})"))
                    }
                    Err(e) => unavailable = Some(e),
                },
                None => notes.push("a bearer token was sent but TokenReview is not configured"),
            }
        }

        if let Some(e) = unavailable {
            return Err(e);
        }
        if !rejected.is_empty() {
            return Err(AuthError::Unauthenticated(rejected.join("; ")));
        }
        if self.allow_anonymous {
            return Ok(UserInfo::anonymous());
        }
        if notes.is_empty() {
            Err(AuthError::NoCredentials)
        } else {
            Err(AuthError::Unauthenticated(notes.join("; ")))
        }
    }

    async fn review_token(
        &self,
        client: &kube::Client,
        token: &str,
    ) -> Result<TokenOutcome, AuthError> {
        let key = sha256(token.as_bytes());
        if let Some(hit) = self.tokens.get(&key) {
            return Ok(hit);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(client.clone());
        let answer = self
            .bounded("review a bearer token (TokenReview)", async {
                api.create(&PostParams::default(), &review).await
            })
            .await?;
        let status = answer.status.unwrap_or_default();
        let outcome = match (status.authenticated, status.user) {
            (Some(true), Some(user)) if user.username.as_deref().is_some_and(|u| !u.is_empty()) => {
                TokenOutcome::Authenticated(UserInfo {
                    username: user.username.unwrap_or_default(),
                    uid: user.uid.unwrap_or_default(),
                    groups: user.groups.unwrap_or_default(),
                    extra: user.extra.unwrap_or_default(),
                })
            }
            _ => TokenOutcome::Rejected(
                status
                    .error
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "not authenticated".into()),
            ),
        };
        self.tokens
            .insert(key, outcome.clone(), self.token_cache_ttl);
        Ok(outcome)
    }

    /// Whether `user` may do `attributes`, by SubjectAccessReview (cached: allowed answers
    /// for `allow_cache_ttl`, denied ones for `deny_cache_ttl`, failures not at all). Denied
    /// is a 403 with Kubernetes' forbidden message and the reviewer's reason. A review that
    /// cannot be made is a 503 (Kubernetes answers 500 there): it is transient and not the
    /// caller's fault, the HPA holds its replica count either way, and it matches how the
    /// adapter reports Prometheus being down. With anonymous access on, everything is
    /// allowed.
    pub async fn authorize(
        &self,
        user: &UserInfo,
        attributes: &RequestAttributes,
    ) -> Result<(), AuthError> {
        if self.allow_anonymous {
            return Ok(());
        }
        let Some(client) = &self.client else {
            return Err(AuthError::NoKubeClient);
        };
        let key = (user.clone(), attributes.clone());
        let decision = match self.decisions.get(&key) {
            Some(hit) => hit,
            None => {
                let decision = self.review_access(client, user, attributes).await?;
                let ttl = match decision {
                    Decision::Allowed => self.allow_cache_ttl,
                    Decision::Denied(_) => self.deny_cache_ttl,
                };
                self.decisions.insert(key, decision.clone(), ttl);
                decision
            }
        };
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Denied(reason) => Err(AuthError::Forbidden(forbidden_message(
                user, attributes, &reason,
            ))),
        }
    }

    async fn review_access(
        &self,
        client: &kube::Client,
        user: &UserInfo,
        attributes: &RequestAttributes,
    ) -> Result<Decision, AuthError> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let (resource_attributes, non_resource_attributes) = match attributes {
            RequestAttributes::Resource(r) => (
                Some(SarResourceAttributes {
                    verb: non_empty(&r.verb),
                    group: Some(r.group.clone()),
                    version: non_empty(&r.version),
                    resource: non_empty(&r.resource),
                    subresource: non_empty(&r.subresource),
                    namespace: non_empty(&r.namespace),
                    name: non_empty(&r.name),
                    ..SarResourceAttributes::default()
                }),
                None,
            ),
            RequestAttributes::NonResource { verb, path } => (
                None,
                Some(NonResourceAttributes {
                    path: Some(path.clone()),
                    verb: Some(verb.clone()),
                }),
            ),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.username.clone()),
                uid: non_empty(&user.uid),
                groups: Some(user.groups.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes,
                non_resource_attributes,
            },
            ..SubjectAccessReview::default()
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(client.clone());
        let answer = self
            .bounded("check access (SubjectAccessReview)", async {
                api.create(&PostParams::default(), &review).await
            })
            .await?;
        let status = answer.status.unwrap_or_default();
        if status.allowed {
            Ok(Decision::Allowed)
        } else {
            let reason = status
                .reason
                .filter(|r| !r.is_empty())
                .or(status.evaluation_error.filter(|e| !e.is_empty()))
                .unwrap_or_default();
            Ok(Decision::Denied(reason))
        }
    }

    /// `call` within `review_timeout`, its failure or lateness as [`AuthError::KubeApi`].
    async fn bounded<T>(
        &self,
        action: &'static str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, AuthError> {
        match tokio::time::timeout(self.review_timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(kube_error(action, e)),
            Err(_) => Err(AuthError::KubeApi {
                action,
                detail: format!("no answer within {:?}; retry later", self.review_timeout),
            }),
        }
    }

    /// Removes credentials and front-proxy identity headers so handlers never see (or log)
    /// them, as kube-apiserver strips them after authentication.
    fn strip_credentials(&self, headers: &mut HeaderMap) {
        headers.remove(header::AUTHORIZATION);
        if let Some(front_proxy) = self.request_header.load_full() {
            let identity: Vec<_> = headers
                .keys()
                .filter(|name| front_proxy.is_identity_header(name))
                .cloned()
                .collect();
            for name in identity {
                headers.remove(name);
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header, parsed as Kubernetes' bearertoken
/// authenticator does (scheme case-insensitive, an empty token is no token).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Kubernetes' forbidden message (`forbiddenMessage` + `NewForbidden`), so users see what
/// they would see from kube-apiserver itself.
fn forbidden_message(user: &UserInfo, attributes: &RequestAttributes, reason: &str) -> String {
    let mut message = match attributes {
        RequestAttributes::NonResource { verb, path } => format!(
            "forbidden: User {:?} cannot {verb} path {path:?}",
            user.username
        ),
        RequestAttributes::Resource(r) => {
            let mut resource = r.resource.clone();
            if !r.subresource.is_empty() {
                resource = format!("{resource}/{}", r.subresource);
            }
            let qualified = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            let named = if r.name.is_empty() {
                qualified
            } else {
                format!("{qualified} {:?}", r.name)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            format!(
                "{named} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                user.username, r.verb, r.group
            )
        }
    };
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

fn is_probe(path: &str) -> bool {
    PROBE_PATHS.contains(&path)
}

/// Authenticates and authorizes every request but the probes; on success the handler gets
/// the [`UserInfo`] as a request extension (and no credential headers), on failure the client
/// gets a Kubernetes `Status` (401, 403, or 503). Layer it with
/// `axum::middleware::from_fn_with_state(auth, auth::middleware)` around a router served by
/// `https::serve`, which supplies the [`PeerCertificates`].
pub async fn middleware(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_probe(path) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<PeerCertificates>()
        .cloned()
        .unwrap_or_default();
    let user = match auth.authenticate(request.headers(), &peer).await {
        Ok(user) => user,
        Err(e) => return refuse(&e, path),
    };
    let attributes = request_attributes(request.method(), path, request.uri().query());
    if let Err(e) = auth.authorize(&user, &attributes).await {
        return refuse(&e, path);
    }
    auth.strip_credentials(request.headers_mut());
    request.extensions_mut().insert(user);
    next.run(request).await
}

fn refuse(e: &AuthError, path: &str) -> Response {
    match e {
        AuthError::KubeApi { .. } => tracing::warn!(%path, error = %e, "request refused"),
        _ => tracing::debug!(%path, error = %e, "request refused"),
    }
    e.status().into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing_like_kubernetes() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("  Bearer abc  ", Some("abc")),
            ("Bearer abc extra", Some("abc")),
            ("Bearer ", None),
            ("Basic abc", None),
            ("Bearer", None),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_token(&h), want, "{value:?}");
        }
    }

    #[test]
    fn authenticated_group_added_once() {
        let u = UserInfo {
            username: "alice".into(),
            groups: vec!["devs".into()],
            ..UserInfo::default()
        }
        .with_authenticated_group();
        assert_eq!(u.groups, vec!["devs", AUTHENTICATED_GROUP]);
        assert_eq!(u.clone().with_authenticated_group().groups.len(), 2);
        assert_eq!(
            UserInfo::anonymous().with_authenticated_group().groups,
            vec![UNAUTHENTICATED_GROUP]
        );
    }

    #[test]
    fn forbidden_messages_match_kubernetes() {
        let user = UserInfo {
            username: "alice".into(),
            ..UserInfo::default()
        };
        let attrs = request_attributes(
            &axum::http::Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/gpu_util",
            None,
        );
        assert_eq!(
            forbidden_message(&user, &attrs, "no RBAC policy matched"),
            "gpu_util.external.metrics.k8s.io is forbidden: User \"alice\" cannot list resource \
             \"gpu_util\" in API group \"external.metrics.k8s.io\" in the namespace \"team-a\": \
             no RBAC policy matched"
        );
        let attrs = request_attributes(&axum::http::Method::GET, "/apis", None);
        assert_eq!(
            forbidden_message(&user, &attrs, ""),
            "forbidden: User \"alice\" cannot get path \"/apis\""
        );
    }

    #[tokio::test]
    async fn anonymous_mode_needs_no_cluster() {
        let auth = Auth::new(AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        })
        .expect("anonymous needs no client");
        let user = auth
            .authenticate(&HeaderMap::new(), &PeerCertificates::default())
            .await
            .expect("anonymous");
        assert_eq!(user, UserInfo::anonymous());
        let attrs = request_attributes(&axum::http::Method::GET, "/apis", None);
        auth.authorize(&user, &attrs).await.expect("allowed");
        assert!(matches!(
            Auth::new(AuthConfig::default()),
            Err(AuthError::NoKubeClient)
        ));
    }
}
