//! Alerting end-to-end helpers: a real Alertmanager on a free port, and a tiny HTTP server
//! that plays both the webhook receiver (records every POST body) and a static `/metrics`
//! target (a kube-state-metrics stand-in speaking the text exposition format).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Proc, Scratch, free_port, http_get, wait_until};

/// Records POST bodies; answers GET /metrics with `metrics`.
pub struct StubServer {
    pub addr: SocketAddr,
    posts: Arc<Mutex<Vec<String>>>,
}

impl StubServer {
    pub fn start(metrics: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let (p, metrics) = (posts.clone(), metrics.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let reply = if request_line.starts_with("POST") {
                    p.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).to_string());
                    String::new()
                } else {
                    metrics.clone()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Self { addr, posts }
    }

    /// Every POST body received so far.
    pub fn posts(&self) -> Vec<String> {
        self.posts.lock().unwrap().clone()
    }
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) with `config`, clustering off.
pub fn start_alertmanager(scratch: &Scratch, config: &str) -> Proc {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config_path = scratch.path("alertmanager.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = scratch.path("alertmanager.log");
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.path={}", scratch.path("am-data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("alertmanager is not installed: run `make deps` (apt-get install prometheus-alertmanager)");
    let mut proc = Proc { child, addr, log };
    let ok = wait_until(Duration::from_secs(30), || {
        http_get(addr, "/-/ready", None)
            .map(|r| r.status == 200)
            .unwrap_or(false)
    });
    assert!(
        ok,
        "alertmanager did not become ready:\n{}",
        proc.log_text()
    );
    assert!(proc.is_running());
    proc
}
