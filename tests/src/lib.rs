//! Helpers for the end-to-end suite: locating the built binaries and the NVML stand-in,
//! running processes on free loopback ports, a minimal HTTP/1.1 client, and a small parser of
//! the Prometheus exposition formats so tests can assert on exact series.
//!
//! The binaries must be built first (`make test` runs `cargo build --workspace` before
//! `cargo test`); the helpers say so when they are missing.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod alerting;
pub mod forecast_eval;
pub mod kube_standin;
pub mod kubelet_standin;
pub mod rulegen;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo target profile directory the tests were built into (`target/debug`).
pub fn target_dir() -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` (make test does) before the tests",
        path.display()
    );
    path
}

pub fn exporter_bin() -> PathBuf {
    built("gpuscale-exporter")
}

pub fn adapter_bin() -> PathBuf {
    built("gpuscale-adapter")
}

pub fn standin_lib() -> PathBuf {
    built("libnvidia_ml.so")
}

/// A scratch directory under target/, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir =
            target_dir()
                .join("e2e")
                .join(format!("{name}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped; its stderr goes to a file tests can read.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the exporter on a free port with the stand-in NVML and `scenario` (if any), plus
/// `extra` flags; waits until it answers `/readyz`.
pub fn start_exporter(scratch: &Scratch, scenario: Option<&Path>, extra: &[&str]) -> Proc {
    let lib = standin_lib();
    let mut args: Vec<String> = vec!["--nvml-library".into(), lib.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    start_exporter_raw(scratch, scenario, &args)
}

/// Starts the exporter with exactly `args` (plus a free listen address and node name).
pub fn start_exporter_raw(scratch: &Scratch, scenario: Option<&Path>, args: &[String]) -> Proc {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = scratch.path(&format!("exporter-{port}.log"));
    let mut cmd = Command::new(exporter_bin());
    cmd.arg("--listen-address")
        .arg(addr.to_string())
        .arg("--node-name")
        .arg("node-a")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("GPUSCALE_NVML_SCENARIO")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(s) = scenario {
        cmd.env("GPUSCALE_NVML_SCENARIO", s);
    }
    let child = cmd.spawn().unwrap();
    let mut proc = Proc { child, addr, log };
    let ok = wait_until(Duration::from_secs(20), || {
        http_get(addr, "/readyz", None)
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    assert!(
        ok,
        "exporter did not become ready; log:\n{}",
        proc.log_text()
    );
    assert!(proc.is_running());
    proc
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`; enough for loopback tests.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One sample of an exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses sample lines of text or OpenMetrics exposition (comments skipped). Label values
/// may hold escaped quotes and backslashes.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let mut key = String::new();
            let mut end = 0;
            while let Some((i, c)) = chars.next() {
                match c {
                    '}' => {
                        end = i + 1;
                        break;
                    }
                    ',' => {}
                    '=' => {
                        let mut value = String::new();
                        chars.next(); // opening quote
                        while let Some((_, c)) = chars.next() {
                            match c {
                                '\\' => {
                                    if let Some((_, e)) = chars.next() {
                                        value.push(if e == 'n' { '\n' } else { e });
                                    }
                                }
                                '"' => break,
                                c => value.push(c),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            }
            rest = &inner[end..];
        }
        let value = rest.split_whitespace().next().unwrap_or("");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// Samples named `name` whose labels include every pair in `with`.
pub fn find<'a>(samples: &'a [Sample], name: &str, with: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The single value of `name` with `with` labels; panics with the exposition when it is not
/// exactly one sample.
pub fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, with);
    assert_eq!(
        found.len(),
        1,
        "expected one {name}{with:?}, found {found:?}"
    );
    found[0].value
}

/// Fetches and parses `/metrics` (OpenMetrics, as Prometheus asks).
pub fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let r = http_get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    parse_exposition(&r.body)
}

/// Writes `content` to `path` atomically (write + rename), as a config tool would, so a
/// reader never sees half a file.
pub fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A real Prometheus server on a free port with `config` (YAML text), killed when dropped.
pub fn start_prometheus(scratch: &Scratch, config: &str, extra: &[&str]) -> Proc {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config_path = scratch.path("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = scratch.path("prometheus.log");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            scratch.path("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prometheus is not installed: run `make deps` (apt-get install prometheus)");
    let mut proc = Proc { child, addr, log };
    let ok = wait_until(Duration::from_secs(30), || {
        http_get(addr, "/-/ready", None)
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    assert!(ok, "prometheus did not become ready:\n{}", proc.log_text());
    assert!(proc.is_running());
    proc
}

/// Runs an instant query against Prometheus and returns `data.result`.
pub fn prom_query(addr: SocketAddr, query: &str) -> Vec<serde_json::Value> {
    let path = format!("/api/v1/query?query={}", url_encode(query));
    let r = http_get(addr, &path, None).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("bad JSON from prometheus ({e}): {}", r.body));
    assert_eq!(v["status"], "success", "{}", r.body);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Exporter (stand-in NVML with `scenario`) scraped every second by a real Prometheus that
/// also evaluates `rules` (YAML text of a rule file, may be empty) every second.
pub struct Pipeline {
    pub exporter: Proc,
    pub prometheus: Proc,
}

pub fn start_pipeline(scratch: &Scratch, scenario: &Path, rules: &str) -> Pipeline {
    let exporter = start_exporter(scratch, Some(scenario), &["--collect-interval", "200ms"]);
    let rules_file = scratch.path("rules.yml");
    std::fs::write(
        &rules_file,
        if rules.is_empty() {
            "groups: []\n"
        } else {
            rules
        },
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\n\
         scrape_configs:\n  - job_name: gpuscale-exporter\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
        rules_file.display(),
        exporter.addr
    );
    let prometheus = start_prometheus(scratch, &config, &[]);
    let ok = wait_until(Duration::from_secs(30), || {
        !prom_query(prometheus.addr, "gpu_utilization_ratio").is_empty()
    });
    assert!(
        ok,
        "prometheus never scraped the exporter:\n{}",
        prometheus.log_text()
    );
    Pipeline {
        exporter,
        prometheus,
    }
}

/// Writes an adapter config pointing at `prometheus` with `metrics` (YAML list items text).
pub fn write_adapter_config(
    scratch: &Scratch,
    prometheus: SocketAddr,
    cache_ttl: &str,
    metrics: &str,
) -> PathBuf {
    let path = scratch.path("adapter.yaml");
    std::fs::write(
        &path,
        format!("prometheus:\n  url: http://{prometheus}\n  timeout: 2s\ncache:\n  ttl: {cache_ttl}\nmetrics:\n{metrics}"),
    )
    .unwrap();
    path
}

/// Runs a built binary to completion, returning (exit code, stdout, stderr).
pub fn run_bin(bin: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `promtool check metrics` on an exposition (text format 0.0.4): (clean?, promtool's output).
pub fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run `make deps` (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
