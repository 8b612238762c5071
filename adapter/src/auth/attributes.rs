//! What a request asks to do, in SubjectAccessReview terms, derived from its method and path
//! the way k8s.io/apiserver's `RequestInfoFactory` does, so RBAC rules written for
//! prometheus-adapter or KEDA (`external.metrics.k8s.io`, resource = metric name, verb `list`)
//! work unchanged.

use axum::http::Method;

/// The attributes of a request as SubjectAccessReview sees them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestAttributes {
    /// `/api/...` and `/apis/{group}/{version}/...` below the version: RBAC `rules` with
    /// `apiGroups`/`resources`/`verbs`.
    Resource(ResourceAttributes),
    /// Everything else (`/apis`, discovery of a group or version, `/openapi/v2`): RBAC
    /// `nonResourceURLs`.
    NonResource { verb: String, path: String },
}

/// `authorization.k8s.io/v1` `ResourceAttributes`; empty strings are "unset".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ResourceAttributes {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl RequestAttributes {
    pub fn verb(&self) -> &str {
        match self {
            Self::Resource(r) => &r.verb,
            Self::NonResource { verb, .. } => verb,
        }
    }
}

/// The attributes of a `method` request for `path` (raw, still percent-encoded) with `query`.
///
/// Differences from `RequestInfoFactory`, both on the safe side: path segments are split
/// before they are percent-decoded (as axum's router and `Path` extractor see them, so the
/// handler serves exactly what was authorized), and the resource is lower-cased, because
/// the HPA lower-cases metric names in the URL and RBAC rules are written lower-case.
pub fn request_attributes(method: &Method, path: &str, query: Option<&str>) -> RequestAttributes {
    let non_resource = || RequestAttributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    };
    let trimmed = path.trim_matches('/');
    let parts: Vec<String> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').map(percent_decode).collect()
    };
    // /api/{version}/... has no group; /apis/{group}/{version}/... needs one more part.
    let (group, rest) = match parts.first().map(String::as_str) {
        Some("api") if parts.len() >= 3 => (String::new(), &parts[1..]),
        Some("apis") if parts.len() >= 4 => (parts[1].clone(), &parts[2..]),
        _ => return non_resource(),
    };
    let version = rest[0].clone();
    let mut rest = &rest[1..];
    let mut verb = match rest.first().map(String::as_str) {
        Some(special @ ("watch" | "proxy")) if rest.len() >= 2 => {
            let special = special.to_string();
            rest = &rest[1..];
            special
        }
        _ => match *method {
            Method::POST => "create",
            Method::GET | Method::HEAD => "get",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "",
        }
        .to_string(),
    };
    let mut namespace = String::new();
    if rest.first().map(String::as_str) == Some("namespaces") {
        if let Some(ns) = rest.get(1) {
            namespace = ns.clone();
            // namespaces/{ns}/{resource}... ; namespaces/{ns} (and its status/finalize) is the
            // namespace object itself.
            if rest.len() > 2 && !matches!(rest[2].as_str(), "status" | "finalize") {
                rest = &rest[2..];
            }
        }
    }
    let mut attrs = ResourceAttributes {
        group,
        version,
        namespace,
        ..ResourceAttributes::default()
    };
    if rest.len() >= 3 && verb != "proxy" {
        attrs.subresource = rest[2].clone();
    }
    if rest.len() >= 2 {
        attrs.name = rest[1].clone();
    }
    if let Some(resource) = rest.first() {
        attrs.resource = resource.to_lowercase();
    }
    if attrs.name.is_empty() && verb == "get" {
        verb = if query_flag(query, "watch") {
            "watch"
        } else {
            "list"
        }
        .to_string();
    }
    if attrs.name.is_empty() && verb == "delete" {
        verb = "deletecollection".to_string();
    }
    attrs.verb = verb;
    RequestAttributes::Resource(attrs)
}

/// Whether `name` is set to a true value in the query, as Go's `strconv.ParseBool` reads it.
fn query_flag(query: Option<&str>, name: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(k, _)| *k == name)
        .any(|(_, v)| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// Decodes `%XX` escapes like Go's `url.PathUnescape`; malformed input (or bytes that are not
/// UTF-8 once decoded) is returned unchanged, as Kubernetes keeps it.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => return s.to_string(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: Method, path: &str, query: Option<&str>) -> ResourceAttributes {
        match request_attributes(&method, path, query) {
            RequestAttributes::Resource(r) => r,
            other => panic!("{path}: expected a resource request, got {other:?}"),
        }
    }

    #[test]
    fn external_metric_list() {
        let r = resource(
            Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/gpu_utilization_ratio",
            Some("labelSelector=app%3Dllm"),
        );
        assert_eq!(
            r,
            ResourceAttributes {
                verb: "list".into(),
                group: "external.metrics.k8s.io".into(),
                version: "v1beta1".into(),
                resource: "gpu_utilization_ratio".into(),
                namespace: "team-a".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn resource_is_lowercased_and_segments_decoded() {
        let r = resource(
            Method::GET,
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/a%2Fb/GPU_Util",
            None,
        );
        assert_eq!(r.namespace, "a/b");
        assert_eq!(r.resource, "gpu_util");
    }

    #[test]
    fn cluster_scope_names_watch_and_core() {
        let r = resource(Method::GET, "/apis/external.metrics.k8s.io/v1beta1/m", None);
        assert_eq!((r.verb.as_str(), r.namespace.as_str()), ("list", ""));
        let r = resource(
            Method::GET,
            "/apis/g/v1/namespaces/ns/things/x/status",
            None,
        );
        assert_eq!(
            (r.verb.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("get", "x", "status")
        );
        let r = resource(
            Method::GET,
            "/api/v1/namespaces/ns/pods",
            Some("watch=true"),
        );
        assert_eq!((r.verb.as_str(), r.group.as_str()), ("watch", ""));
        let r = resource(Method::GET, "/api/v1/namespaces/ns", None);
        assert_eq!((r.resource.as_str(), r.name.as_str()), ("namespaces", "ns"));
        let r = resource(Method::DELETE, "/api/v1/namespaces/ns/pods", None);
        assert_eq!(r.verb, "deletecollection");
        let r = resource(Method::POST, "/apis/g/v1/things", None);
        assert_eq!(r.verb, "create");
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource() {
        for path in [
            "/apis",
            "/apis/external.metrics.k8s.io",
            "/apis/external.metrics.k8s.io/v1beta1",
            "/openapi/v2",
            "/api",
            "/api/v1",
            "/",
        ] {
            assert_eq!(
                request_attributes(&Method::GET, path, None),
                RequestAttributes::NonResource {
                    verb: "get".into(),
                    path: path.into()
                },
                "{path}"
            );
        }
    }

    #[test]
    fn percent_decoding_like_go() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("trail%2"), "trail%2");
        assert_eq!(percent_decode("%ff"), "%ff");
    }
}
