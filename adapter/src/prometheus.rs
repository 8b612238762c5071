//! Client of the Prometheus HTTP API (`/api/v1/query`), also spoken by Thanos, Mimir and
//! VictoriaMetrics. One pooled keep-alive client; every query has a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::config::PrometheusConfig;

/// Why a query has no answer. `Unreachable` and `Timeout` become 503 for the HPA, which then
/// keeps its replica count instead of acting on a made-up value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("Prometheus at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("Prometheus did not answer within {0:?}; raise prometheus.timeout or check its load")]
    Timeout(Duration),
    #[error("Prometheus rejected the query ({error_type}): {message}")]
    Query { error_type: String, message: String },
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("cannot read Prometheus' answer: {0}")]
    Decode(String),
    #[error("cannot set up the Prometheus client: {0}")]
    Setup(String),
}

/// One series of an instant-vector result (or the scalar, with no labels).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    /// Unix seconds.
    pub timestamp: f64,
    pub value: f64,
}

/// A query's samples, with NaN and ±Inf dropped: such values must never reach an HPA.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    pub samples: Vec<Sample>,
    /// How many samples were dropped for being NaN or infinite.
    pub dropped_non_finite: usize,
}

/// A secret read from a file and re-read every minute, so rotated service-account tokens
/// and passwords are picked up without a restart.
#[derive(Debug)]
struct FileSecret {
    path: PathBuf,
    cached: Mutex<Option<(Instant, String)>>,
}

impl FileSecret {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new(None),
        }
    }

    fn get(&self) -> Result<String, Error> {
        let mut guard = match self.cached.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((at, value)) = guard.as_ref() {
            if at.elapsed() < Duration::from_secs(60) {
                return Ok(value.clone());
            }
        }
        let value = std::fs::read_to_string(&self.path)
            .map_err(|e| Error::Setup(format!("cannot read {}: {e}", self.path.display())))?
            .trim()
            .to_string();
        *guard = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

/// A Prometheus API client.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// The server's base URL (path without the trailing `/`).
    base_url: reqwest::Url,
    timeout: Duration,
    bearer: Option<FileSecret>,
    basic: Option<(String, FileSecret)>,
}

impl Client {
    pub fn new(config: &PrometheusConfig) -> Result<Self, Error> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| Error::Setup(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::Setup(format!("header {name}: {e}")))?;
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("gpuscale-adapter/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::Setup(format!("cannot read CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Setup(format!("CA file {}: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base_url: config.url.clone(),
            timeout: config.timeout,
            bearer: config.bearer_token_file.clone().map(FileSecret::new),
            basic: config
                .basic_auth
                .clone()
                .map(|(user, file)| (user, FileSecret::new(file))),
        })
    }

    /// The URL of an API path such as `/api/v1/query`.
    fn api_url(&self, api_path: &str) -> reqwest::Url {
        let mut url = self.base_url.clone();
        let path = format!("{}{api_path}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// POSTs a form to an API path with this client's auth, headers and pool; the HTTP status
    /// and body. `timeout` overrides the configured one (range queries take longer).
    pub async fn post_form(
        &self,
        api_path: &str,
        pairs: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), Error> {
        let url = self.api_url(api_path);
        let mut request = self
            .http
            .post(url.clone())
            .timeout(timeout.unwrap_or(self.timeout))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_encode(pairs));
        if let Some(token) = &self.bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.get()?));
        } else if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password.get()?));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        Ok((status, bytes))
    }

    /// Runs an instant query (POST, so long rewritten queries never hit URL limits).
    pub async fn query(&self, promql: &str) -> Result<QueryResult, Error> {
        let (status, bytes) = self
            .post_form("/api/v1/query", &[("query", promql)], None)
            .await?;
        // Prometheus answers 400/422 with a JSON error body; anything else non-2xx is
        // something in between (a proxy, an auth gateway).
        let parsed: Result<ApiResponse, _> = serde_json::from_slice(&bytes);
        match parsed {
            Ok(api) if api.status == "success" => decode(api.data),
            Ok(api) => Err(Error::Query {
                error_type: api.error_type.unwrap_or_else(|| "unknown".into()),
                message: api.error.unwrap_or_default(),
            }),
            Err(e) if status.is_success() => Err(Error::Decode(e.to_string())),
            Err(_) => Err(Error::Http {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }

    fn transport_error(&self, url: &reqwest::Url, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout(self.timeout)
        } else {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            Error::Unreachable {
                url: url.to_string(),
                message,
            }
        }
    }
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(
                    char::from_digit(u32::from(b >> 4), 16)
                        .unwrap_or('0')
                        .to_ascii_uppercase(),
                );
                out.push(
                    char::from_digit(u32::from(b & 0xf), 16)
                        .unwrap_or('0')
                        .to_ascii_uppercase(),
                );
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<ApiSample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct ApiSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

fn decode(data: Option<ApiData>) -> Result<QueryResult, Error> {
    let mut result = QueryResult::default();
    let mut push = |labels: BTreeMap<String, String>, ts: f64, text: &str| {
        // Prometheus writes NaN, +Inf, -Inf as strings; never pass them on.
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => result.samples.push(Sample {
                labels,
                timestamp: ts,
                value: v,
            }),
            _ => result.dropped_non_finite += 1,
        }
    };
    match data {
        Some(ApiData::Vector(samples)) => {
            for s in samples {
                let mut labels = s.metric;
                labels.remove("__name__");
                push(labels, s.value.0, &s.value.1);
            }
        }
        Some(ApiData::Scalar((ts, v))) => push(BTreeMap::new(), ts, &v),
        Some(ApiData::Matrix(_)) | Some(ApiData::String(_)) => {
            return Err(Error::Decode(
                "the query returned a range vector or string, not an instant vector or scalar"
                    .into(),
            ));
        }
        None => return Err(Error::Decode("success without data".into())),
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_vectors_and_scalars_dropping_non_finite() {
        let v: ApiResponse = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"__name__":"x","gpu":"0"},"value":[1700000000.5,"0.42"]},
                {"metric":{"gpu":"1"},"value":[1700000000.5,"NaN"]},
                {"metric":{"gpu":"2"},"value":[1700000000.5,"+Inf"]}]}}"#,
        )
        .expect("json");
        let r = decode(v.data).expect("decodes");
        assert_eq!(r.samples.len(), 1);
        assert_eq!(r.samples[0].value, 0.42);
        assert_eq!(
            r.samples[0].labels.get("gpu").map(String::as_str),
            Some("0")
        );
        assert!(!r.samples[0].labels.contains_key("__name__"));
        assert_eq!(r.dropped_non_finite, 2);
        let s: ApiResponse = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}"#,
        )
        .expect("json");
        assert_eq!(decode(s.data).expect("scalar").samples[0].value, 7.0);
    }

    #[test]
    fn form_encoding_escapes_everything_but_unreserved() {
        assert_eq!(
            form_encode(&[("query", "sum(x{a=\"b c\"}) & 1")]),
            "query=sum%28x%7Ba%3D%22b+c%22%7D%29+%26+1"
        );
    }
}
