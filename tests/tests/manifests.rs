//! Every kustomization renders with `kubectl kustomize`, and every object in it (and every
//! example manifest) decodes strictly into its `k8s-openapi` type: decoding then re-encoding
//! must give back the original object, so a misspelled or misplaced field (which the typed
//! decoder drops) fails here instead of being silently ignored by the API server.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

use gpuscale_tests::root;
use k8s_openapi::api::{apps, autoscaling, core, policy, rbac, scheduling};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The kustomizations a user can apply.
const KUSTOMIZATIONS: &[&str] = &[
    "manifests/base",
    "manifests/components/prewarm",
    "manifests/overlays/prometheus-operator",
    "manifests/overlays/plain-prometheus",
];

fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", &root().join(dir).display().to_string()])
        .output()
        .expect("kubectl is needed for the manifest tests");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_docs(&String::from_utf8_lossy(&out.stdout))
}

fn parse_docs(text: &str) -> Vec<Value> {
    text.split("\n---")
        .map(|d| d.trim_start_matches("---").trim())
        .filter(|d| {
            !d.is_empty()
                && d.lines()
                    .any(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        })
        .map(|d| {
            serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("bad YAML: {e}\n{d}"))
        })
        .collect()
}

/// Decodes `v` as `T` and checks nothing was lost on the way.
fn strict<T: DeserializeOwned + Serialize>(v: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(v.clone()).map_err(|e| format!("does not decode: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference(v, &back, String::new()) {
        None => Ok(()),
        Some(path) => Err(format!(
            "field {path} is unknown or mistyped (dropped by the typed decoder)"
        )),
    }
}

/// The first path where `original` has something `decoded` lacks or differs on.
fn first_difference(original: &Value, decoded: &Value, path: String) -> Option<String> {
    match (original, decoded) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, p) {
                            return Some(d);
                        }
                    }
                    // Empty objects/lists are omitted on encode: not a loss.
                    None if is_empty(va) => {}
                    None => return Some(p),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!("{path}[] (length)"));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]")))
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        // Quantities and IntOrString round-trip to an equal string form.
        (Value::Number(a), Value::String(b)) if a.to_string() == *b => None,
        _ => Some(path),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Strictly decodes one object by apiVersion/kind; `Ok(false)` for kinds k8s-openapi does
/// not model (custom resources), which other tests check.
fn check_object(v: &Value) -> Result<bool, String> {
    let api = v["apiVersion"].as_str().unwrap_or_default();
    let kind = v["kind"].as_str().unwrap_or_default();
    let r = match (api, kind) {
        ("v1", "Namespace") => strict::<core::v1::Namespace>(v),
        ("v1", "ServiceAccount") => strict::<core::v1::ServiceAccount>(v),
        ("v1", "Service") => strict::<core::v1::Service>(v),
        ("v1", "ConfigMap") => strict::<core::v1::ConfigMap>(v),
        ("v1", "Secret") => strict::<core::v1::Secret>(v),
        ("apps/v1", "Deployment") => strict::<apps::v1::Deployment>(v),
        ("apps/v1", "DaemonSet") => strict::<apps::v1::DaemonSet>(v),
        ("policy/v1", "PodDisruptionBudget") => strict::<policy::v1::PodDisruptionBudget>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<rbac::v1::ClusterRole>(v),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            strict::<rbac::v1::ClusterRoleBinding>(v)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<rbac::v1::Role>(v),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<rbac::v1::RoleBinding>(v),
        ("apiregistration.k8s.io/v1", "APIService") => strict::<apiregistration::v1::APIService>(v),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            strict::<autoscaling::v2::HorizontalPodAutoscaler>(v)
        }
        ("scheduling.k8s.io/v1", "PriorityClass") => strict::<scheduling::v1::PriorityClass>(v),
        _ => return Ok(false),
    };
    r.map(|()| true)
        .map_err(|e| format!("{kind} {}: {e}", v["metadata"]["name"]))
}

#[test]
fn every_kustomization_renders_and_decodes_strictly() {
    for dir in KUSTOMIZATIONS {
        let docs = render(dir);
        assert!(!docs.is_empty(), "{dir} renders nothing");
        let mut typed = 0;
        for d in &docs {
            match check_object(d) {
                Ok(true) => typed += 1,
                Ok(false) => {}
                Err(e) => panic!("{dir}: {e}"),
            }
        }
        assert!(
            typed >= docs.len() / 2,
            "{dir}: only {typed} of {} objects have a typed check",
            docs.len()
        );
    }
}

#[test]
fn example_manifests_decode_strictly() {
    let dir = root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for d in parse_docs(&std::fs::read_to_string(&path).unwrap()) {
            if check_object(&d).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no example was checked in {}", dir.display());
}

#[test]
fn the_strict_check_catches_a_misspelled_field() {
    let v: Value = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always"}]}}}
    });
    let e = check_object(&v).unwrap_err();
    assert!(e.contains("imagePullPolcy"), "{e}");
}
