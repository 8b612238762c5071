//! The adapter's HTTPS server with authentication and authorization, end to end: a real
//! `https::serve` on loopback, real TLS clients (reqwest and tokio-rustls), and the Kubernetes
//! API stand-in answering TokenReview / SubjectAccessReview / the requestheader ConfigMap.
//! Every refusal is checked by status code and the `Status` JSON `reason`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Json, Router};
use gpuscale_adapter::auth::{self, Auth, AuthConfig, RequestHeaderConfig, UserInfo};
use gpuscale_adapter::{https, tls};
use gpuscale_tests::Scratch;
use gpuscale_tests::kube_standin::pki::{self, Issued, TestCa};
use gpuscale_tests::kube_standin::{KubeStandin, Rule, StandinConfig, TokenUser};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METRIC_PATH: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/gpu_util";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The cluster: its kube API stand-in and the two CAs kube-apiserver would have.
struct Cluster {
    standin: KubeStandin,
    requestheader_ca: TestCa,
    front_proxy: Issued,
    serving_ca: TestCa,
}

impl Cluster {
    async fn start() -> Self {
        init();
        let requestheader_ca = pki::requestheader_ca();
        let front_proxy = pki::front_proxy_client(&requestheader_ca);
        let mut config = StandinConfig::default();
        config
            .tokens
            .insert("alice-token".into(), TokenUser::new("alice", &["devs"]));
        config
            .tokens
            .insert("bob-token".into(), TokenUser::new("bob", &[]));
        config.rules = vec![
            Rule::user("alice")
                .verbs(&["get", "list"])
                .api_groups(&["external.metrics.k8s.io"])
                .resources(&["gpu_util"])
                .namespaces(&["team-a"]),
            Rule::group("metrics-readers")
                .verbs(&["list"])
                .api_groups(&["external.metrics.k8s.io"])
                .resources(&["*"]),
            Rule::group("system:authenticated").verbs(&["get"]).paths(&[
                "/apis",
                "/apis/*",
                "/openapi/*",
            ]),
        ];
        config.configmap = Some(
            [
                (
                    "requestheader-client-ca-file",
                    requestheader_ca.cert_pem.clone(),
                ),
                (
                    "requestheader-allowed-names",
                    r#"["front-proxy-client"]"#.to_string(),
                ),
                (
                    "requestheader-username-headers",
                    r#"["X-Remote-User"]"#.to_string(),
                ),
                (
                    "requestheader-group-headers",
                    r#"["X-Remote-Group"]"#.to_string(),
                ),
                (
                    "requestheader-extra-headers-prefix",
                    r#"["X-Remote-Extra-"]"#.to_string(),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        );
        Self {
            standin: KubeStandin::start(config).await,
            requestheader_ca,
            front_proxy,
            serving_ca: TestCa::new("serving-ca"),
        }
    }

    async fn kube_client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(&self.standin.kubeconfig_yaml()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// The production configuration: requestheader from the ConfigMap, reviews via kube.
    async fn auth_config(&self) -> AuthConfig {
        let client = self.kube_client().await;
        let request_header = RequestHeaderConfig::from_cluster(&client).await.unwrap();
        assert!(request_header.is_some());
        AuthConfig {
            request_header,
            client: Some(client),
            ..AuthConfig::default()
        }
    }

    /// Serving files for 127.0.0.1 signed by the serving CA.
    fn serving_files(&self, scratch: &Scratch) -> tls::CertSource {
        let pair = self.serving_ca.server(&["localhost", "127.0.0.1"]);
        let cert = scratch.path("tls.crt");
        let key = scratch.path("tls.key");
        std::fs::write(&cert, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        tls::CertSource::Files { cert, key }
    }

    fn client(&self, identity: Option<&Issued>) -> reqwest::Client {
        https_client(
            std::slice::from_ref(&self.serving_ca.cert_der),
            identity,
            false,
        )
    }
}

fn https_client(
    roots: &[CertificateDer<'static>],
    identity: Option<&Issued>,
    h2: bool,
) -> reqwest::Client {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(store);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain(), id.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .no_proxy()
        .build()
        .unwrap()
}

/// A tiny stand-in for the adapter's router: what the handler saw, as JSON.
fn app(auth: Arc<Auth>) -> Router {
    async fn metric(
        Extension(user): Extension<UserInfo>,
        Path((ns, metric)): Path<(String, String)>,
        headers: HeaderMap,
    ) -> Json<Value> {
        Json(json!({
            "user": user.username, "groups": user.groups, "extra": user.extra,
            "namespace": ns, "metric": metric,
            "saw_authorization": headers.contains_key("authorization"),
            "saw_remote_user": headers.contains_key("x-remote-user"),
        }))
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(600)).await;
        "done"
    }
    Router::new()
        .route(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}",
            get(metric),
        )
        .route(
            "/apis",
            get(|| async { Json(json!({"kind": "APIGroupList"})) }),
        )
        .route("/slow", get(slow))
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(auth, auth::middleware))
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(source: &tls::CertSource, auth: AuthConfig) -> Self {
        Self::start_with(source, Arc::new(Auth::new(auth).unwrap())).await
    }

    async fn start_with(source: &tls::CertSource, auth: Arc<Auth>) -> Self {
        let tls = tls::server_config(source).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(https::serve(listener, tls, app(auth), async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

/// Status code and body; the body must be JSON.
async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "text": text }));
    (code, body)
}

fn assert_status(got: &(u16, Value), code: u16, reason: &str) {
    assert_eq!(got.0, code, "{}", got.1);
    assert_eq!(got.1["kind"], "Status", "{}", got.1);
    assert_eq!(got.1["reason"], reason, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
}

#[tokio::test]
async fn no_credentials_is_401() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-nocreds");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let got = call(cluster.client(None).get(server.url(METRIC_PATH))).await;
    assert_status(&got, 401, "Unauthorized");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("no credentials")
    );
    // Unknown paths are refused before they are found missing, as in kube-apiserver.
    let got = call(cluster.client(None).get(server.url("/nope"))).await;
    assert_status(&got, 401, "Unauthorized");
    assert_eq!(cluster.standin.access_reviews(), 0);
}

#[tokio::test]
async fn probes_need_no_credentials() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-probes");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    for probe in ["/healthz", "/livez", "/readyz"] {
        let resp = cluster
            .client(None)
            .get(server.url(probe))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{probe}");
    }
    assert_status(
        &call(cluster.client(None).get(server.url("/apis"))).await,
        401,
        "Unauthorized",
    );
    assert_eq!(cluster.standin.access_reviews(), 0);
    assert_eq!(cluster.standin.token_reviews(), 0);
}

#[tokio::test]
async fn client_certificate_from_an_untrusted_ca_is_401() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-untrusted");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let rogue_ca = TestCa::new("front-proxy-ca");
    let rogue = pki::front_proxy_client(&rogue_ca);
    let got = call(
        cluster
            .client(Some(&rogue))
            .get(server.url(METRIC_PATH))
            .header("X-Remote-User", "alice"),
    )
    .await;
    assert_status(&got, 401, "Unauthorized");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("not trusted by the requestheader client CA"),
        "{}",
        got.1
    );
    assert_eq!(cluster.standin.access_reviews(), 0);

    // Kubernetes' union authenticator tries the next authenticator after a failed one: the
    // same untrusted certificate with a valid token is the token's user (not X-Remote-User).
    let got = call(
        cluster
            .client(Some(&rogue))
            .get(server.url(METRIC_PATH))
            .header("X-Remote-User", "mallory")
            .bearer_auth("alice-token"),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["user"], "alice");
}

#[tokio::test]
async fn trusted_certificate_with_a_cn_not_allowed_is_401() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-cn");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let other = cluster.requestheader_ca.client("not-the-aggregator", &[]);
    let got = call(
        cluster
            .client(Some(&other))
            .get(server.url(METRIC_PATH))
            .header("X-Remote-User", "alice"),
    )
    .await;
    assert_status(&got, 401, "Unauthorized");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("\"not-the-aggregator\" is not in the requestheader allowed names"),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn front_proxy_user_allowed_by_sar_is_200_and_denied_is_403() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-proxy");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let proxy = cluster.client(Some(&cluster.front_proxy));

    let got = call(
        proxy
            .get(server.url(&format!("{METRIC_PATH}?labelSelector=app%3Dllm")))
            .header("X-Remote-User", "carol")
            .header("X-Remote-Group", "metrics-readers")
            .header("X-Remote-Group", "team,with,commas")
            .header("X-Remote-Extra-Acme.com%2Fproject", "p1"),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["user"], "carol");
    assert_eq!(
        got.1["groups"],
        json!([
            "metrics-readers",
            "team,with,commas",
            "system:authenticated"
        ])
    );
    assert_eq!(got.1["extra"], json!({"acme.com/project": ["p1"]}));
    assert_eq!(
        got.1["saw_remote_user"], false,
        "identity headers are stripped"
    );
    // What SubjectAccessReview was asked: the shape RBAC rules for external metrics expect.
    let spec = &cluster.standin.access_review_specs()[0];
    assert_eq!(spec["user"], "carol");
    assert_eq!(
        spec["resourceAttributes"],
        json!({
            "group": "external.metrics.k8s.io", "version": "v1beta1", "resource": "gpu_util",
            "namespace": "team-a", "verb": "list"
        })
    );
    assert_eq!(spec["extra"], json!({"acme.com/project": ["p1"]}));

    // The same user without the group RBAC grants: denied, with the reviewer's reason.
    let got = call(
        proxy
            .get(server.url(METRIC_PATH))
            .header("X-Remote-User", "carol"),
    )
    .await;
    assert_status(&got, 403, "Forbidden");
    assert_eq!(
        got.1["message"],
        "gpu_util.external.metrics.k8s.io is forbidden: User \"carol\" cannot list resource \
         \"gpu_util\" in API group \"external.metrics.k8s.io\" in the namespace \"team-a\": \
         no RBAC policy matched"
    );

    // A trusted proxy that names nobody: 401.
    let got = call(proxy.get(server.url(METRIC_PATH))).await;
    assert_status(&got, 401, "Unauthorized");

    // Discovery is a non-resource request.
    let got = call(
        proxy
            .get(server.url("/apis"))
            .header("X-Remote-User", "carol"),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    let specs = cluster.standin.access_review_specs();
    assert_eq!(
        specs.last().unwrap()["nonResourceAttributes"],
        json!({"path": "/apis", "verb": "get"})
    );
}

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_cached() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-token");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let client = cluster.client(None);

    let got = call(
        client
            .get(server.url(METRIC_PATH))
            .bearer_auth("alice-token"),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["user"], "alice");
    assert_eq!(got.1["groups"], json!(["devs", "system:authenticated"]));
    assert_eq!(got.1["saw_authorization"], false, "the token is stripped");
    // X-Remote-User from a client without the front-proxy certificate is ignored.
    let got = call(
        client
            .get(server.url(METRIC_PATH))
            .bearer_auth("bob-token")
            .header("X-Remote-User", "alice"),
    )
    .await;
    assert_status(&got, 403, "Forbidden");
    assert!(got.1["message"].as_str().unwrap().contains("User \"bob\""));

    let got = call(
        client
            .get(server.url(METRIC_PATH))
            .bearer_auth("wrong-token"),
    )
    .await;
    assert_status(&got, 401, "Unauthorized");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("rejected by TokenReview")
    );

    let reviews = cluster.standin.token_reviews();
    let access = cluster.standin.access_reviews();
    assert_eq!((reviews, access), (3, 2));
    // Within the TTLs every answer comes from the caches, accepted, rejected and denied.
    for _ in 0..5 {
        let got = call(
            client
                .get(server.url(METRIC_PATH))
                .bearer_auth("alice-token"),
        )
        .await;
        assert_eq!(got.0, 200);
        let got = call(
            client
                .get(server.url(METRIC_PATH))
                .bearer_auth("wrong-token"),
        )
        .await;
        assert_status(&got, 401, "Unauthorized");
        let got = call(client.get(server.url(METRIC_PATH)).bearer_auth("bob-token")).await;
        assert_status(&got, 403, "Forbidden");
    }
    assert_eq!(cluster.standin.token_reviews(), reviews);
    assert_eq!(cluster.standin.access_reviews(), access);
}

#[tokio::test]
async fn cached_answers_expire() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-ttl");
    let config = AuthConfig {
        token_cache_ttl: Duration::from_millis(300),
        allow_cache_ttl: Duration::from_millis(300),
        deny_cache_ttl: Duration::from_millis(300),
        ..cluster.auth_config().await
    };
    let server = Server::start(&cluster.serving_files(&scratch), config).await;
    let client = cluster.client(None);
    let bob = || client.get(server.url(METRIC_PATH)).bearer_auth("bob-token");
    assert_status(&call(bob()).await, 403, "Forbidden");
    // Granting access takes effect once the denial expires.
    cluster
        .standin
        .set_rules(vec![Rule::user("bob").resources(&["*"])]);
    assert_status(&call(bob()).await, 403, "Forbidden");
    assert_eq!(cluster.standin.access_reviews(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(bob()).await.0, 200);
    assert_eq!(cluster.standin.access_reviews(), 2);
    assert_eq!(cluster.standin.token_reviews(), 2);
}

#[tokio::test]
async fn kube_api_failures_are_503() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-503");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    cluster.standin.set_failing(true);
    let client = cluster.client(None);
    let got = call(
        client
            .get(server.url(METRIC_PATH))
            .bearer_auth("alice-token"),
    )
    .await;
    assert_status(&got, 503, "ServiceUnavailable");
    assert!(got.1["message"].as_str().unwrap().contains("TokenReview"));
    let got = call(
        cluster
            .client(Some(&cluster.front_proxy))
            .get(server.url(METRIC_PATH))
            .header("X-Remote-User", "alice"),
    )
    .await;
    assert_status(&got, 503, "ServiceUnavailable");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("SubjectAccessReview")
    );
    // Failures are not cached: the next request after recovery succeeds.
    cluster.standin.set_failing(false);
    let got = call(
        client
            .get(server.url(METRIC_PATH))
            .bearer_auth("alice-token"),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
}

#[tokio::test]
async fn allow_anonymous_serves_without_credentials() {
    init();
    let scratch = Scratch::new("auth-anon");
    let cluster_ca = TestCa::new("serving-ca");
    let pair = cluster_ca.server(&["127.0.0.1"]);
    std::fs::write(scratch.path("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(scratch.path("tls.key"), &pair.key_pem).unwrap();
    let source = tls::CertSource::Files {
        cert: scratch.path("tls.crt"),
        key: scratch.path("tls.key"),
    };
    let server = Server::start(
        &source,
        AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        },
    )
    .await;
    let client = https_client(std::slice::from_ref(&cluster_ca.cert_der), None, false);
    let got = call(client.get(server.url(METRIC_PATH))).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["user"], "system:anonymous");
    assert_eq!(got.1["groups"], json!(["system:unauthenticated"]));
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_not_served() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-plain");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    // And the server keeps serving TLS clients.
    let resp = cluster
        .client(None)
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn h2_is_served() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-h2");
    let server = Server::start(
        &cluster.serving_files(&scratch),
        cluster.auth_config().await,
    )
    .await;
    let client = https_client(
        std::slice::from_ref(&cluster.serving_ca.cert_der),
        None,
        true,
    );
    let resp = client
        .get(server.url(METRIC_PATH))
        .bearer_auth("alice-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status().as_u16(), 200);
}

/// Accepts any server certificate (signatures still checked), to look at what is served.
#[derive(Debug)]
struct AnyServerCert;

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The leaf certificate a new connection to `addr` is served.
async fn served_leaf(addr: SocketAddr) -> CertificateDer<'static> {
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn replaced_certificate_files_are_served_without_restart() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-rotate");
    let source = cluster.serving_files(&scratch);
    let server = Server::start(&source, cluster.auth_config().await).await;
    let first = served_leaf(server.addr).await;
    let tls::CertSource::Files { cert, key } = &source else {
        unreachable!()
    };

    // A broken pair (key of another certificate) is not picked up.
    let other = cluster.serving_ca.server(&["127.0.0.1"]);
    gpuscale_tests::write_atomic(key, &other.key_pem);
    tokio::time::sleep(tls::RELOAD_CHECK_INTERVAL + Duration::from_millis(500)).await;
    assert_eq!(served_leaf(server.addr).await, first);

    // The matching certificate arrives: served from the next handshake on.
    gpuscale_tests::write_atomic(cert, &other.cert_pem);
    let deadline = Instant::now() + tls::RELOAD_CHECK_INTERVAL * 3;
    loop {
        let now_served = served_leaf(server.addr).await;
        if now_served == other.cert_der {
            break;
        }
        assert_eq!(now_served, first);
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And it verifies as a normal client would.
    let resp = cluster
        .client(None)
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn self_signed_certificate_works() {
    init();
    let source = tls::CertSource::SelfSigned {
        hosts: vec!["localhost".into(), "127.0.0.1".into()],
    };
    let server = Server::start(
        &source,
        AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        },
    )
    .await;
    let leaf = served_leaf(server.addr).await;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    assert_eq!(parsed.issuer(), parsed.subject(), "self-signed");
    // Trusting that certificate (an APIService caBundle) is enough for a verifying client.
    let client = https_client(&[leaf], None, false);
    let resp = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    init();
    let source = tls::CertSource::SelfSigned {
        hosts: vec!["127.0.0.1".into()],
    };
    let mut server = Server::start(
        &source,
        AuthConfig {
            allow_anonymous: true,
            ..AuthConfig::default()
        },
    )
    .await;
    let leaf = served_leaf(server.addr).await;
    let client = https_client(&[leaf], None, false);
    let slow = tokio::spawn(client.get(server.url("/slow")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop.take().unwrap().send(()).unwrap();
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn requestheader_config_comes_from_the_cluster() {
    let cluster = Cluster::start().await;
    let client = cluster.kube_client().await;
    let config = RequestHeaderConfig::from_cluster(&client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(config.allowed_names, vec!["front-proxy-client"]);
    assert_eq!(
        config.client_ca,
        vec![cluster.requestheader_ca.cert_der.clone()]
    );
    assert_eq!(cluster.standin.configmap_reads(), 1);
    cluster.standin.set_configmap(None);
    let e = RequestHeaderConfig::from_cluster(&client)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("extension-apiserver-authentication"),
        "{e}"
    );
}

#[tokio::test]
async fn slow_reviews_are_503_after_the_timeout() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-slow");
    let config = AuthConfig {
        review_timeout: Duration::from_millis(200),
        ..cluster.auth_config().await
    };
    let server = Server::start(&cluster.serving_files(&scratch), config).await;
    cluster.standin.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    let got = call(
        cluster
            .client(None)
            .get(server.url(METRIC_PATH))
            .bearer_auth("alice-token"),
    )
    .await;
    assert_status(&got, 503, "ServiceUnavailable");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("no answer within")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn requestheader_changes_in_the_cluster_are_followed() {
    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-refresh");
    let config = cluster.auth_config().await;
    let client = config.client.clone().unwrap();
    let auth = Arc::new(Auth::new(config).unwrap());
    let refresh = auth.spawn_request_header_refresh(client, Duration::from_millis(100));
    let server = Server::start_with(&cluster.serving_files(&scratch), auth).await;
    let proxy = cluster.client(Some(&cluster.front_proxy));
    let carol = || {
        proxy
            .get(server.url(METRIC_PATH))
            .header("X-Remote-User", "carol")
            .header("X-Remote-Group", "metrics-readers")
    };
    assert_eq!(call(carol()).await.0, 200);

    // kube-apiserver now names another front-proxy client.
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        "requestheader-client-ca-file".to_string(),
        cluster.requestheader_ca.cert_pem.clone(),
    );
    data.insert(
        "requestheader-allowed-names".to_string(),
        r#"["aggregator"]"#.to_string(),
    );
    cluster.standin.set_configmap(Some(data));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = call(carol()).await;
        if got.0 == 401 {
            assert_status(&got, 401, "Unauthorized");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new allowed names were not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refresh.abort();
}

/// Collects everything logged, at every level, on this thread.
#[derive(Clone, Default)]
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_and_keys_never_reach_the_logs() {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let cluster = Cluster::start().await;
    let scratch = Scratch::new("auth-logs");
    let source = cluster.serving_files(&scratch);
    let server = Server::start(&source, cluster.auth_config().await).await;
    let client = cluster.client(None);
    for token in ["alice-token", "wrong-token"] {
        let _ = call(client.get(server.url(METRIC_PATH)).bearer_auth(token)).await;
    }
    let _ = tls::server_config(&tls::CertSource::SelfSigned { hosts: vec![] }).unwrap();

    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("SELF-SIGNED"),
        "the logs are captured:\n{logs}"
    );
    // The kube client's own request traces are among them.
    assert!(
        logs.contains("tokenreviews"),
        "kube client traces are captured"
    );
    for secret in ["alice-token", "wrong-token", "PRIVATE KEY"] {
        assert!(!logs.contains(secret), "{secret} was logged:\n{logs}");
    }
    let tls::CertSource::Files { key, .. } = &source else {
        unreachable!()
    };
    let key_pem = std::fs::read_to_string(key).unwrap();
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(!logs.contains(key_body));
}
