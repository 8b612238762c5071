//! Profiles against fixtures in each engine's real exposition format.

use std::collections::BTreeMap;

use super::*;
use crate::pods::ContainerMeta;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/attribution/engines")
        .join(name);
    std::fs::read_to_string(path).expect("fixture exists")
}

fn pod(image: &str, annotations: &[(&str, &str)]) -> PodMeta {
    PodMeta {
        uid: "u".into(),
        namespace: "ns".into(),
        name: "p".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        containers: vec![ContainerMeta {
            name: "server".into(),
            image: image.into(),
            id: None,
        }],
        ..PodMeta::default()
    }
}

fn builtin(engine: Engine) -> Profile {
    let empty = BTreeMap::new();
    Profile::new(engine, 1, "/metrics".into(), &HashMapLike(&empty))
}

#[test]
fn vllm_sums_engines_and_keeps_buckets() {
    let v = builtin(Engine::Vllm).extract(&fixture("vllm.txt"));
    assert_eq!(v.in_flight, Some(7.0));
    assert_eq!(v.waiting, Some(5.0));
    assert_eq!(v.requests_total, Some(1300.0));
    let h = v.duration_seconds.expect("histogram");
    assert_eq!(h.count, 1300.0);
    assert_eq!(h.sum, 1520.75);
    assert_eq!(h.buckets.len(), 22);
    assert_eq!(h.buckets[0], (0.3, 10.0));
    assert_eq!(h.buckets[1], (0.5, 56.0));
    assert_eq!(h.buckets.last(), Some(&(f64::INFINITY, 1300.0)));
}

#[test]
fn triton_summary_becomes_an_inf_only_histogram_in_seconds() {
    let v = builtin(Engine::Triton).extract(&fixture("triton.txt"));
    assert_eq!(v.in_flight, None);
    assert_eq!(v.waiting, Some(9.0));
    assert_eq!(v.requests_total, Some(5010.0));
    let h = v.duration_seconds.expect("histogram");
    assert_eq!(h.buckets, vec![(f64::INFINITY, 5000.0)]);
    assert_eq!(h.count, 5000.0);
    assert!((h.sum - 197.0).abs() < 1e-9);

    // Without summaries (the default): the cumulative µs counter over successes.
    let text: String = fixture("triton.txt")
        .lines()
        .filter(|l| !l.contains("summary"))
        .map(|l| format!("{l}\n"))
        .collect();
    let h = builtin(Engine::Triton)
        .extract(&text)
        .duration_seconds
        .expect("histogram");
    assert_eq!(h.count, 5000.0);
    assert!((h.sum - 200.0).abs() < 1e-9);
}

#[test]
fn tgi_and_sglang() {
    let v = builtin(Engine::Tgi).extract(&fixture("tgi.txt"));
    assert_eq!(
        (v.in_flight, v.waiting, v.requests_total),
        (Some(6.0), Some(4.0), Some(500.0))
    );
    let h = v.duration_seconds.expect("histogram");
    assert_eq!(h.count, 490.0);
    assert_eq!(h.buckets.len(), 37);
    let v = builtin(Engine::Sglang).extract(&fixture("sglang.txt"));
    assert_eq!(
        (v.in_flight, v.waiting, v.requests_total),
        (Some(2.0), Some(1.0), Some(77.0))
    );
    assert_eq!(v.duration_seconds.expect("histogram").sum, 123.25);
    // Newer SGLang: underscore names.
    let v = builtin(Engine::Sglang).extract(&fixture("sglang.txt").replace("sglang:", "sglang_"));
    assert_eq!(
        (v.in_flight, v.waiting, v.requests_total),
        (Some(2.0), Some(1.0), Some(77.0))
    );
    assert!(v.duration_seconds.is_some());
}

#[test]
fn generic_mapping_from_annotations_with_unit() {
    let p = pod(
        "registry.example/my-server:1",
        &[
            (ANN_PORT, "9090"),
            (ANN_IN_FLIGHT, "app_requests_in_flight"),
            (ANN_WAITING, "app_queue_depth"),
            (ANN_LATENCY, "app_request_latency_ms"),
            (ANN_LATENCY_UNIT, "ms"),
            (ANN_REQUESTS, "app_requests_total"),
        ],
    );
    let profile = Profile::for_pod(&p).expect("generic");
    assert_eq!(profile.engine, Engine::Generic);
    assert_eq!((profile.port, profile.path.as_str()), (9090, "/metrics"));
    let v = profile.extract(&fixture("generic.txt"));
    assert_eq!(
        (v.in_flight, v.waiting, v.requests_total),
        (Some(10.0), Some(12.0), Some(100.0))
    );
    let h = v.duration_seconds.expect("histogram");
    assert_eq!(h.buckets[0], (0.05, 10.0));
    assert_eq!(h.sum, 30.0);
}

#[test]
fn detection_ports_and_paths() {
    let v = Profile::for_pod(&pod("vllm/vllm-openai:v0.6.3", &[])).expect("vllm");
    assert_eq!((v.engine, v.port), (Engine::Vllm, 8000));
    let t = Profile::for_pod(&pod("nvcr.io/nvidia/tritonserver:24.08-py3", &[])).expect("triton");
    assert_eq!((t.engine, t.port), (Engine::Triton, 8002));
    let g = Profile::for_pod(&pod(
        "ghcr.io/huggingface/text-generation-inference:2.3",
        &[(ANN_PROM_PORT, "8080"), (ANN_PROM_PATH, "/prom")],
    ))
    .expect("tgi");
    assert_eq!(
        (g.engine, g.port, g.path.as_str()),
        (Engine::Tgi, 8080, "/prom")
    );
    let s =
        Profile::for_pod(&pod("lmsysorg/sglang:latest", &[(ANN_PORT, "31000")])).expect("sglang");
    assert_eq!((s.engine, s.port), (Engine::Sglang, 31000));
    assert!(Profile::for_pod(&pod("nginx:1.27", &[])).is_none());
    // The annotation wins over the image, and can opt a pod out.
    let a = Profile::for_pod(&pod("nginx", &[(ANN_ENGINE, "vllm")])).expect("annotated");
    assert_eq!(a.engine, Engine::Vllm);
    assert!(Profile::for_pod(&pod("vllm/vllm-openai", &[(ANN_ENGINE, "none")])).is_none());
    // A generic server without a port cannot be scraped.
    assert!(Profile::for_pod(&pod("x", &[(ANN_WAITING, "q")])).is_none());
}

#[test]
fn page_without_engine_metrics_is_empty() {
    assert!(builtin(Engine::Vllm).extract("up 1\n").is_empty());
}
