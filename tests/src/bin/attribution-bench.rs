//! Attribution benchmark (BENCHMARKS.md): the release exporter on 8 simulated GPUs with 64
//! processes, 32 time-sliced vLLM pods (kubelet pod-resources stand-in, Kubernetes API
//! stand-in, one HTTP engine endpoint per pod on loopback) versus the same exporter with
//! attribution off. Reports CPU per collection cycle from `/proc/PID/stat` (network waits
//! cost no CPU, so they are excluded by construction) and runs `scrape-bench` on `/metrics`.
//!
//! Usage: attribution-bench [--seconds S] [--interval DURATION] [--scrape-seconds S]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gpuscale_tests::kube_standin::{KubeStandin, StandinConfig};
use gpuscale_tests::kubelet_standin::KubeletStandin;
use gpuscale_tests::kubelet_standin::{ContainerFixture, DevicesFixture, Fixture, PodFixture};
use gpuscale_tests::{free_port, http_get, parse_exposition, root, wait_until};
use serde_json::json;

const GPUS: usize = 8;
const PODS_PER_GPU: usize = 4;
const PROCS_PER_POD: usize = 2;

fn uuid(g: usize) -> String {
    format!("GPU-bench{g:03}-0000-4000-8000-{g:012}")
}

fn pod_uid(p: usize) -> String {
    format!("0000{p:04}-0000-4000-8000-{p:012}")
}

fn container_id(p: usize) -> String {
    format!("{p:064x}")
}

/// A vLLM page of realistic size: the fixture plus the families vLLM also exports.
fn vllm_page() -> String {
    let mut page =
        std::fs::read_to_string(root().join("tests/fixtures/attribution/engines/vllm.txt"))
            .expect("vllm fixture");
    let model = "meta-llama/Llama-3.1-8B-Instruct";
    for family in [
        "vllm:time_to_first_token_seconds",
        "vllm:time_per_output_token_seconds",
        "vllm:request_queue_time_seconds",
        "vllm:request_inference_time_seconds",
        "vllm:request_prefill_time_seconds",
        "vllm:request_decode_time_seconds",
        "vllm:request_prompt_tokens",
        "vllm:request_generation_tokens",
        "vllm:iteration_tokens_total",
    ] {
        page.push_str(&format!(
            "# HELP {family} Histogram.\n# TYPE {family} histogram\n"
        ));
        for (i, le) in [
            "0.001", "0.005", "0.01", "0.02", "0.04", "0.06", "0.08", "0.1", "0.25", "0.5", "0.75",
            "1.0", "2.5", "5.0", "7.5", "10.0", "20.0", "40.0", "80.0", "+Inf",
        ]
        .iter()
        .enumerate()
        {
            page.push_str(&format!(
                "{family}_bucket{{engine=\"0\",le=\"{le}\",model_name=\"{model}\"}} {}.0\n",
                i * 61
            ));
        }
        page.push_str(&format!(
            "{family}_sum{{engine=\"0\",model_name=\"{model}\"}} 4182.25\n{family}_count{{engine=\"0\",model_name=\"{model}\"}} 1159.0\n"
        ));
    }
    for i in 0..60 {
        page.push_str(&format!(
            "# HELP process_metric_{i} Process.\n# TYPE process_metric_{i} gauge\nprocess_metric_{i} {i}.0\n"
        ));
    }
    page
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("exporter running");
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

fn cycles(addr: std::net::SocketAddr) -> f64 {
    let Ok(response) = http_get(addr, "/metrics", None) else {
        return 0.0;
    };
    parse_exposition(&response.body)
        .iter()
        .find(|s| s.name == "gpuscale_exporter_collections_total")
        .map_or(0.0, |s| s.value)
}

fn run_exporter(
    bin: &Path,
    lib: &Path,
    scenario: &Path,
    args: &[String],
) -> (Exporter, std::net::SocketAddr) {
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let child = Command::new(bin.join("gpuscale-exporter"))
        .arg("--listen-address")
        .arg(addr.to_string())
        .arg("--node-name")
        .arg("bench")
        .arg("--nvml-library")
        .arg(lib)
        .args(args)
        .env("GPUSCALE_NVML_SCENARIO", scenario)
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(
                bin.join("bench-attribution")
                    .join(format!("exporter-{port}.log")),
            )
            .expect("log file"),
        )
        .spawn()
        .expect("start the exporter");
    (Exporter(child), addr)
}

fn measure(name: &str, exporter: &Exporter, addr: std::net::SocketAddr, seconds: u64) {
    let hz = 100.0; // CLK_TCK on Linux
    let pid = exporter.0.id();
    let (t0, c0) = (cpu_ticks(pid), cycles(addr));
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let (t1, c1) = (cpu_ticks(pid), cycles(addr));
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_s = (t1 - t0) as f64 / hz;
    let n = (c1 - c0).max(1.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    println!(
        "{name}: {n} cycles in {elapsed:.1}s, CPU {cpu_s:.2}s = {:.3} ms per cycle ({:.2} % of one core); resolution 10 ms / {n} cycles; RSS {:.1} MiB (peak {:.1})",
        cpu_s * 1000.0 / n,
        cpu_s / elapsed * 100.0,
        kib("VmRSS:") / 1024.0,
        kib("VmHWM:") / 1024.0
    );
}

fn main() {
    let mut seconds = 60u64;
    let mut interval = "1s".to_string();
    let mut scrape_seconds = 10u64;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--seconds" => seconds = args[i + 1].parse().expect("--seconds N"),
            "--interval" => interval = args[i + 1].clone(),
            "--scrape-seconds" => scrape_seconds = args[i + 1].parse().expect("--scrape-seconds N"),
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    let bin: PathBuf = std::env::current_exe()
        .expect("exe")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let lib = bin.join("libnvidia_ml.so");
    let dir = bin.join("bench-attribution");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("proc")).expect("bench dir");

    // 8 GPUs, 4 pods each (time-slicing replicas ::0..3), 2 processes per pod = 64.
    let mut gpus = Vec::new();
    let mut fixture = Fixture {
        allocatable: Some(vec![DevicesFixture {
            resource_name: "nvidia.com/gpu".into(),
            device_ids: (0..GPUS)
                .flat_map(|g| (0..PODS_PER_GPU).map(move |r| format!("{}::{r}", uuid(g))))
                .collect(),
        }]),
        ..Fixture::default()
    };
    for g in 0..GPUS {
        let mut processes = Vec::new();
        for r in 0..PODS_PER_GPU {
            let p = g * PODS_PER_GPU + r;
            fixture.pod_resources.push(PodFixture {
                name: format!("vllm-{g}-5d8f7b9c4-p{p:02}"),
                namespace: "serving".into(),
                containers: vec![ContainerFixture {
                    name: "vllm".into(),
                    devices: vec![DevicesFixture {
                        resource_name: "nvidia.com/gpu".into(),
                        device_ids: vec![format!("{}::{r}", uuid(g))],
                    }],
                }],
            });
            for k in 0..PROCS_PER_POD {
                let pid = 20000 + p * PROCS_PER_POD + k;
                processes.push(
                    json!({"pid": pid, "used_memory_bytes": 2147483648u64 * (k as u64 + 1),
                                      "sm_util_percent": 5 + p % 20}),
                );
                let cgroup = format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope\n",
                    pod_uid(p).replace('-', "_"),
                    container_id(p)
                );
                std::fs::create_dir_all(dir.join(format!("proc/{pid}"))).expect("proc dir");
                std::fs::write(dir.join(format!("proc/{pid}/cgroup")), cgroup).expect("cgroup");
            }
        }
        gpus.push(json!({"uuid": uuid(g), "name": "NVIDIA H100 80GB HBM3",
                         "utilization_gpu_percent": 70, "memory_used_bytes": 42949672960u64,
                         "processes": processes}));
    }
    let scenario = dir.join("scenario.json");
    std::fs::write(&scenario, json!({"gpus": gpus}).to_string()).expect("scenario");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let page = vllm_page();
    println!(
        "engine page: {} bytes, {} lines",
        page.len(),
        page.lines().count()
    );
    let kube = rt.block_on(KubeStandin::start(StandinConfig::default()));
    for g in 0..GPUS {
        let rs = format!("vllm-{g}-5d8f7b9c4");
        kube.put_object(
            &format!("/apis/apps/v1/namespaces/serving/replicasets/{rs}"),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": rs, "namespace": "serving", "uid": format!("rs-{g}"),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                       "name": format!("vllm-{g}"), "uid": format!("d-{g}"), "controller": true}]}}),
        );
        for r in 0..PODS_PER_GPU {
            let p = g * PODS_PER_GPU + r;
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("engine port");
            let port = listener.local_addr().expect("port").port();
            let body = page.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move { body }
                }),
            );
            rt.spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            kube.put_pod(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("vllm-{g}-5d8f7b9c4-p{p:02}"), "namespace": "serving",
                  "uid": pod_uid(p),
                  "annotations": {"gpuscale.io/metrics-port": port.to_string()},
                  "labels": {"pod-template-hash": "5d8f7b9c4"},
                  "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                       "uid": format!("rs-{g}"), "controller": true}]},
                "spec": {"nodeName": "bench", "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.6.3"}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1",
                  "containerStatuses": [{"name": "vllm", "containerID": format!("containerd://{}", container_id(p)),
                    "image": "", "imageID": "", "ready": true, "restartCount": 0}]}
            }));
        }
    }
    let kubeconfig = dir.join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig);
    let socket = dir.join("kubelet.sock");
    let _kubelet = KubeletStandin::start(&socket, fixture);

    let common = vec!["--collect-interval".to_string(), interval.clone()];
    // Attribution off: NVML only (processes still read), for the difference.
    let mut off = common.clone();
    off.extend(["--pod-resources-socket", "", "--kube-api", "off"].map(String::from));
    let (exporter, addr) = run_exporter(&bin, &lib, &scenario, &off);
    assert!(
        wait_until(Duration::from_secs(20), || cycles(addr) >= 2.0),
        "exporter did not start"
    );
    measure(
        "attribution off (8 GPUs, NVML only)",
        &exporter,
        addr,
        seconds,
    );
    drop(exporter);

    let mut on = common;
    on.extend([
        "--pod-resources-socket".to_string(),
        socket.display().to_string(),
        "--proc-root".to_string(),
        dir.join("proc").display().to_string(),
        "--kubeconfig".to_string(),
        kubeconfig.display().to_string(),
    ]);
    let (exporter, addr) = run_exporter(&bin, &lib, &scenario, &on);
    let ready = wait_until(Duration::from_secs(30), || {
        let body = http_get(addr, "/metrics", None)
            .map(|r| r.body)
            .unwrap_or_default();
        let s = parse_exposition(&body);
        s.iter()
            .filter(|x| x.name == "gpu_workload_requests_in_flight")
            .count()
            == GPUS * PODS_PER_GPU
            && s.iter()
                .filter(|x| x.name == "gpu_pod_utilization_ratio")
                .count()
                == GPUS * PODS_PER_GPU
    });
    if !ready {
        let body = http_get(addr, "/metrics", None)
            .map(|r| r.body)
            .unwrap_or_default();
        let ours: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("gpuscale_exporter") || l.starts_with("gpu_pod_gpus"))
            .take(40)
            .collect();
        panic!(
            "not every pod and engine series appeared:\n{}",
            ours.join("\n")
        );
    }
    let body = http_get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .expect("scrape")
    .body;
    println!(
        "exposition with attribution: {} bytes, {} samples",
        body.len(),
        parse_exposition(&body).len()
    );
    measure(
        "attribution on (8 GPUs, 64 processes, 32 pods, 32 engine endpoints)",
        &exporter,
        addr,
        seconds,
    );
    println!("scrape-bench, 1 connection, {scrape_seconds}s:");
    let status = Command::new(bin.join("scrape-bench"))
        .args([
            &addr.to_string(),
            "/metrics",
            "--connections",
            "1",
            "--seconds",
            &scrape_seconds.to_string(),
        ])
        .status()
        .expect("scrape-bench is built next to this binary");
    assert!(status.success());
}
