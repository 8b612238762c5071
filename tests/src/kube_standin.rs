//! A Kubernetes API stand-in for tests that need kube-apiserver's delegated-auth endpoints
//! without a cluster: TokenReview, SubjectAccessReview and the
//! `kube-system/extension-apiserver-authentication` ConfigMap, speaking the real
//! `authentication.k8s.io/v1` / `authorization.k8s.io/v1` / `v1` JSON so `kube::Client` and
//! the adapter's production code run unchanged. It counts the calls it gets (to prove
//! caching) and records each SubjectAccessReview spec (to prove what was asked). Plus test
//! PKI minted with rcgen (`pki`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The token the adapter's own client presents (its ServiceAccount token in a cluster); the
/// stand-in refuses other callers with 401, as kube-apiserver would.
pub const ADAPTER_TOKEN: &str = "adapter-serviceaccount-token";

/// Who a known bearer token belongs to.
#[derive(Debug, Clone, Default)]
pub struct TokenUser {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl TokenUser {
    pub fn new(username: &str, groups: &[&str]) -> Self {
        Self {
            username: username.into(),
            uid: format!("uid-{username}"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
        }
    }
}

/// An RBAC-like grant: the subject may do `verbs` on `resources` of `api_groups` in
/// `namespaces`, or `verbs` on `non_resource_paths` (`/openapi/*` style prefixes). `"*"`
/// matches anything; an empty namespace list means cluster-wide.
#[derive(Debug, Clone)]
pub struct Rule {
    pub user: Option<String>,
    pub group: Option<String>,
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub namespaces: Vec<String>,
    pub non_resource_paths: Vec<String>,
    /// Name put in the `reason` of allowed answers, like RBAC's "allowed by ClusterRoleBinding".
    pub binding: String,
}

impl Rule {
    fn subject(user: Option<&str>, group: Option<&str>) -> Self {
        Self {
            user: user.map(str::to_string),
            group: group.map(str::to_string),
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: Vec::new(),
            namespaces: Vec::new(),
            non_resource_paths: Vec::new(),
            binding: "test-binding".into(),
        }
    }
    pub fn user(name: &str) -> Self {
        Self::subject(Some(name), None)
    }
    pub fn group(name: &str) -> Self {
        Self::subject(None, Some(name))
    }
    pub fn verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = verbs.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn resources(mut self, resources: &[&str]) -> Self {
        self.resources = resources.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn api_groups(mut self, groups: &[&str]) -> Self {
        self.api_groups = groups.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn paths(mut self, paths: &[&str]) -> Self {
        self.non_resource_paths = paths.iter().map(|s| s.to_string()).collect();
        self
    }

    fn applies_to(&self, user: &str, groups: &[String]) -> bool {
        self.user.as_deref() == Some(user)
            || self
                .group
                .as_ref()
                .is_some_and(|g| groups.iter().any(|x| x == g))
    }

    fn allows(&self, spec: &Value) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        if let Some(r) = spec.get("resourceAttributes") {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            any(&self.verbs, s("verb"))
                && any(&self.api_groups, s("group"))
                && any(&self.resources, s("resource"))
                && (self.namespaces.is_empty() || any(&self.namespaces, s("namespace")))
        } else if let Some(n) = spec.get("nonResourceAttributes") {
            let s = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("");
            any(&self.verbs, s("verb"))
                && self
                    .non_resource_paths
                    .iter()
                    .any(|p| match p.strip_suffix('*') {
                        Some(prefix) => s("path").starts_with(prefix),
                        None => s("path") == p,
                    })
        } else {
            false
        }
    }
}

/// What the stand-in knows.
#[derive(Debug, Clone, Default)]
pub struct StandinConfig {
    /// Bearer token → user, for TokenReview.
    pub tokens: BTreeMap<String, TokenUser>,
    /// Grants for SubjectAccessReview; anything not granted is denied.
    pub rules: Vec<Rule>,
    /// `data` of kube-system/extension-apiserver-authentication; `None` → 404.
    pub configmap: Option<BTreeMap<String, String>>,
}

#[derive(Default)]
struct Shared {
    config: Mutex<StandinConfig>,
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    configmap_reads: AtomicUsize,
    failing: AtomicBool,
    delay_ms: AtomicU64,
    access_review_specs: Mutex<Vec<Value>>,
    pods: Mutex<PodStore>,
    /// Objects served by GET at their API path (ReplicaSets, Jobs...).
    objects: Mutex<BTreeMap<String, Value>>,
    pod_lists: AtomicUsize,
    pod_watches: AtomicUsize,
}

/// Pods with a resourceVersion counter and the log of watch events, so a watch from any
/// version replays exactly what happened after it, as kube-apiserver does.
#[derive(Debug, Default)]
struct PodStore {
    version: u64,
    pods: BTreeMap<(String, String), Value>,
    events: Vec<(u64, &'static str, Value)>,
}

impl PodStore {
    fn record(&mut self, kind: &'static str, mut pod: Value) -> Value {
        self.version += 1;
        pod["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.events.push((self.version, kind, pod.clone()));
        pod
    }
}

fn pod_key(pod: &Value) -> (String, String) {
    let m = &pod["metadata"];
    (
        m["namespace"].as_str().unwrap_or("default").to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

impl Shared {
    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

/// A running stand-in on 127.0.0.1 (plain HTTP, which kube-rs accepts for `http://`
/// servers); stops when dropped.
pub struct KubeStandin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeStandin {
    /// Starts it on a free loopback port (inside a tokio runtime).
    pub async fn start(config: StandinConfig) -> Self {
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            ..Shared::default()
        });
        let app = axum::Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(access_review),
            )
            .route(
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                get(configmap),
            )
            .route("/api/v1/pods", get(pods))
            .route(
                "/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}",
                get(object),
            )
            .fallback(|| async {
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the stand-in does not serve this path",
                )
            })
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at the stand-in with [`ADAPTER_TOKEN`], for
    /// `kube::config::Kubeconfig::from_yaml` / `Config::from_custom_kubeconfig`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: adapter\n\
             current-context: standin\nusers:\n- name: adapter\n  user:\n    token: {ADAPTER_TOKEN}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path` (for `KUBECONFIG` or `--kubeconfig`).
    pub fn write_kubeconfig(&self, path: &Path) {
        std::fs::write(path, self.kubeconfig_yaml()).unwrap();
    }

    pub fn token_reviews(&self) -> usize {
        self.shared.token_reviews.load(Ordering::SeqCst)
    }
    pub fn access_reviews(&self) -> usize {
        self.shared.access_reviews.load(Ordering::SeqCst)
    }
    pub fn configmap_reads(&self) -> usize {
        self.shared.configmap_reads.load(Ordering::SeqCst)
    }
    /// The `spec` of every SubjectAccessReview received, in order.
    pub fn access_review_specs(&self) -> Vec<Value> {
        self.shared.access_review_specs.lock().unwrap().clone()
    }
    /// While set, reviews answer 500 InternalError, as an overloaded kube-apiserver might.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }
    /// Every review answers only after `delay`, as a kube-apiserver under load might.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.config.lock().unwrap().rules = rules;
    }
    pub fn set_configmap(&self, data: Option<BTreeMap<String, String>>) {
        self.shared.config.lock().unwrap().configmap = data;
    }

    /// Adds or replaces a pod (a `v1` Pod as JSON); watchers get ADDED or MODIFIED.
    pub fn put_pod(&self, pod: Value) {
        let mut store = self.shared.pods.lock().unwrap();
        let key = pod_key(&pod);
        let kind = if store.pods.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let pod = store.record(kind, pod);
        store.pods.insert(key, pod);
    }

    /// Deletes a pod; watchers get DELETED with its last state.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut store = self.shared.pods.lock().unwrap();
        if let Some(pod) = store
            .pods
            .remove(&(namespace.to_string(), name.to_string()))
        {
            store.record("DELETED", pod);
        }
    }

    /// Serves `object` at its API path, e.g.
    /// `/apis/apps/v1/namespaces/ml/replicasets/llm-7d9f8b6c5d`.
    pub fn put_object(&self, path: &str, object: Value) {
        self.shared
            .objects
            .lock()
            .unwrap()
            .insert(path.to_string(), object);
    }

    pub fn pod_lists(&self) -> usize {
        self.shared.pod_lists.load(Ordering::SeqCst)
    }
    pub fn pod_watches(&self) -> usize {
        self.shared.pod_watches.load(Ordering::SeqCst)
    }
}

/// `spec.nodeName=<node>` from a field selector; other selectors match everything.
fn node_of_selector(selector: Option<&String>) -> Option<String> {
    selector?
        .split(',')
        .find_map(|term| term.strip_prefix("spec.nodeName="))
        .map(str::to_string)
}

fn on_node(pod: &Value, node: Option<&str>) -> bool {
    node.is_none_or(|n| pod["spec"]["nodeName"].as_str() == Some(n))
}

/// `GET /api/v1/pods`: a PodList, or with `watch=true` a stream of watch events (one JSON
/// object per line) from `resourceVersion` on, kept open like kube-apiserver's.
async fn pods(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = refuse_caller(&headers) {
        return r;
    }
    if shared.failing.load(Ordering::SeqCst) {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "failing on purpose",
        );
    }
    let node = node_of_selector(query.get("fieldSelector"));
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watch {
        shared.pod_lists.fetch_add(1, Ordering::SeqCst);
        let store = shared.pods.lock().unwrap();
        let items: Vec<Value> = store
            .pods
            .values()
            .filter(|p| on_node(p, node.as_deref()))
            .cloned()
            .collect();
        return Json(json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": store.version.to_string()},
            "items": items
        }))
        .into_response();
    }
    shared.pod_watches.fetch_add(1, Ordering::SeqCst);
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stream = futures::stream::unfold(
        (shared, from, node),
        |(shared, mut cursor, node)| async move {
            loop {
                let next: Vec<String> = {
                    let store = shared.pods.lock().unwrap();
                    let from = cursor;
                    cursor = store.version.max(cursor);
                    store
                        .events
                        .iter()
                        .filter(|(v, _, _)| *v > from)
                        .filter(|(_, _, pod)| on_node(pod, node.as_deref()))
                        .map(|(_, kind, pod)| format!("{}\n", json!({"type": kind, "object": pod})))
                        .collect()
                };
                if !next.is_empty() {
                    let chunk = axum::body::Bytes::from(next.concat());
                    return Some((
                        Ok::<_, std::convert::Infallible>(chunk),
                        (shared, cursor, node),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        },
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /apis/<group>/<version>/namespaces/<ns>/<resource>/<name>` from the stored objects.
async fn object(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if let Some(r) = refuse_caller(&headers) {
        return r;
    }
    match shared.objects.lock().unwrap().get(uri.path()) {
        Some(object) => Json(object.clone()).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} not found", uri.path()),
        ),
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()
        })),
    )
        .into_response()
}

/// kube-apiserver refuses callers it cannot authenticate before anything else.
fn refuse_caller(headers: &HeaderMap) -> Option<Response> {
    let expected = format!("Bearer {ADAPTER_TOKEN}");
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => None,
        _ => Some(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        )),
    }
}

fn refuse_kind(body: &Value, api_version: &str, kind: &str) -> Option<Response> {
    if body["apiVersion"] == api_version && body["kind"] == kind {
        None
    } else {
        Some(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "expected {api_version} {kind}, got {} {}",
                body["apiVersion"], body["kind"]
            ),
        ))
    }
}

async fn token_review(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = refuse_caller(&headers) {
        return r;
    }
    if let Some(r) = refuse_kind(&body, "authentication.k8s.io/v1", "TokenReview") {
        return r;
    }
    shared.token_reviews.fetch_add(1, Ordering::SeqCst);
    shared.delay().await;
    if shared.failing.load(Ordering::SeqCst) {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "stand-in failing",
        );
    }
    let Some(token) = body["spec"]["token"].as_str().filter(|t| !t.is_empty()) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value",
        );
    };
    let user = shared.config.lock().unwrap().tokens.get(token).cloned();
    let review_status = match user {
        Some(u) => json!({
            "authenticated": true,
            "user": {"username": u.username, "uid": u.uid, "groups": u.groups, "extra": u.extra},
            "audiences": ["https://kubernetes.default.svc.cluster.local"]
        }),
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    };
    Json(json!({
        "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": body["spec"], "status": review_status
    }))
    .into_response()
}

async fn access_review(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = refuse_caller(&headers) {
        return r;
    }
    if let Some(r) = refuse_kind(&body, "authorization.k8s.io/v1", "SubjectAccessReview") {
        return r;
    }
    shared.access_reviews.fetch_add(1, Ordering::SeqCst);
    shared.delay().await;
    let spec = body["spec"].clone();
    shared
        .access_review_specs
        .lock()
        .unwrap()
        .push(spec.clone());
    if shared.failing.load(Ordering::SeqCst) {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "stand-in failing",
        );
    }
    let has_resource = spec.get("resourceAttributes").is_some();
    let has_non_resource = spec.get("nonResourceAttributes").is_some();
    if has_resource == has_non_resource {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: \
             Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        );
    }
    let user = spec["user"].as_str().unwrap_or("").to_string();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
        );
    }
    let allowed_by = shared
        .config
        .lock()
        .unwrap()
        .rules
        .iter()
        .find(|r| r.applies_to(&user, &groups) && r.allows(&spec))
        .map(|r| r.binding.clone());
    let review_status = match allowed_by {
        Some(binding) => json!({
            "allowed": true,
            "reason": format!("RBAC: allowed by ClusterRoleBinding \"{binding}\" of ClusterRole \"gpuscale-metrics-reader\" to User \"{user}\"")
        }),
        None => json!({"allowed": false, "reason": "no RBAC policy matched"}),
    };
    Json(json!({
        "kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec, "status": review_status
    }))
    .into_response()
}

async fn configmap(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse_caller(&headers) {
        return r;
    }
    shared.configmap_reads.fetch_add(1, Ordering::SeqCst);
    let data = shared.config.lock().unwrap().configmap.clone();
    match data {
        Some(data) => Json(json!({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {
                "name": "extension-apiserver-authentication", "namespace": "kube-system",
                "uid": "00000000-0000-0000-0000-000000000001", "resourceVersion": "1"
            },
            "data": data
        }))
        .into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "configmaps \"extension-apiserver-authentication\" not found",
        ),
    }
}

/// Test PKI minted with rcgen: a requestheader CA and the aggregator's front-proxy client
/// certificate, an unrelated CA for untrusted clients, and serving certificates.
pub mod pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A CA that can issue certificates.
    pub struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        pub cert_pem: String,
        pub cert_der: CertificateDer<'static>,
    }

    /// An issued certificate and its key, as PEM and DER.
    pub struct Issued {
        pub cert_pem: String,
        pub key_pem: String,
        pub cert_der: CertificateDer<'static>,
        key_pkcs8: Vec<u8>,
    }

    impl Issued {
        pub fn key_der(&self) -> PrivateKeyDer<'static> {
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
        }
        /// The chain a client presents: just the leaf (the CA is the verifier's trust root).
        pub fn chain(&self) -> Vec<CertificateDer<'static>> {
            vec![self.cert_der.clone()]
        }
    }

    impl TestCa {
        pub fn new(cn: &str) -> Self {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params.self_signed(&key).unwrap();
            Self {
                cert_pem: cert.pem(),
                cert_der: cert.der().clone(),
                issuer: Issuer::new(params, key),
            }
        }

        fn issue(&self, params: CertificateParams) -> Issued {
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Issued {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                cert_der: cert.der().clone(),
                key_pkcs8: key.serialize_der(),
            }
        }

        /// A client certificate (EKU clientAuth) with this CN and organizations.
        pub fn client(&self, cn: &str, organizations: &[&str]) -> Issued {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            for o in organizations {
                params.distinguished_name.push(DnType::OrganizationName, *o);
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            self.issue(params)
        }

        /// A serving certificate (EKU serverAuth) for these DNS names / IPs.
        pub fn server(&self, hosts: &[&str]) -> Issued {
            let mut params =
                CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(
                DnType::CommonName,
                hosts.first().copied().unwrap_or("server"),
            );
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            self.issue(params)
        }
    }

    /// kube-apiserver's `--requestheader-client-ca-file` CA.
    pub fn requestheader_ca() -> TestCa {
        TestCa::new("front-proxy-ca")
    }

    /// The aggregator's `--proxy-client-cert-file` pair (CN `front-proxy-client`).
    pub fn front_proxy_client(ca: &TestCa) -> Issued {
        ca.client("front-proxy-client", &[])
    }
}
