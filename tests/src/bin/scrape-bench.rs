//! Loopback HTTP load generator for the benchmarks: keep-alive GETs from N connections for a
//! fixed time, reporting latency percentiles and throughput.
//!
//! Usage: scrape-bench ADDR PATH [--connections N] [--seconds S] [--accept VALUE]
//! Only ever point it at a server on this machine (127.0.0.1).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("scrape-bench: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: scrape-bench ADDR PATH [--connections N] [--seconds S] [--accept VALUE]";
    let addr = args.first().ok_or(usage)?.clone();
    let path = args.get(1).ok_or(usage)?.clone();
    let mut connections = 1usize;
    let mut seconds = 10.0f64;
    let mut accept = "application/openmetrics-text;version=1.0.0".to_string();
    let mut i = 2;
    while i < args.len() {
        let v = args.get(i + 1).ok_or(usage)?;
        match args[i].as_str() {
            "--connections" => connections = v.parse().map_err(|_| "bad --connections")?,
            "--seconds" => seconds = v.parse().map_err(|_| "bad --seconds")?,
            "--accept" => accept = v.clone(),
            other => return Err(format!("unknown flag {other}; {usage}")),
        }
        i += 2;
    }
    if !addr.starts_with("127.") && !addr.starts_with("localhost") && !addr.starts_with("[::1]") {
        return Err("only loopback targets are allowed".into());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, path, accept) = (addr.clone(), path.clone(), accept.clone());
            std::thread::spawn(move || worker(&addr, &path, &accept, deadline))
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    let mut bytes = 0usize;
    for h in handles {
        let (l, b) = h.join().map_err(|_| "worker panicked")??;
        lat.extend(l);
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if lat.is_empty() {
        return Err("no request completed".into());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "requests={} connections={} seconds={:.1} rps={:.0} body_bytes_avg={} p50_us={:.0} p90_us={:.0} p99_us={:.0} p999_us={:.0} max_us={:.0}",
        lat.len(),
        connections,
        elapsed,
        lat.len() as f64 / elapsed,
        bytes / lat.len(),
        us(pct(0.50)),
        us(pct(0.90)),
        us(pct(0.99)),
        us(pct(0.999)),
        us(lat[lat.len() - 1]),
    );
    Ok(())
}

fn worker(
    addr: &str,
    path: &str,
    accept: &str,
    deadline: Instant,
) -> Result<(Vec<Duration>, usize), String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
    let mut lat = Vec::with_capacity(100_000);
    let mut bytes = 0;
    let mut body = Vec::new();
    // Kept alive while the server allows it; HTTP/1.0 servers (Python's) get a new
    // connection per request, and that cost is part of what they are measured on.
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while Instant::now() < deadline {
        let t = Instant::now();
        if conn.is_none() {
            let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
            conn = Some((stream, reader));
        }
        let Some((writer, reader)) = conn.as_mut() else {
            continue;
        };
        writer
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut status = String::new();
        reader.read_line(&mut status).map_err(|e| e.to_string())?;
        if !status.contains(" 200 ") {
            return Err(format!("unexpected status: {}", status.trim()));
        }
        let mut keep_alive = status.starts_with("HTTP/1.1");
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    keep_alive = false;
                }
            }
        }
        match length {
            Some(n) => {
                body.resize(n, 0);
                reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            }
            None => {
                body.clear();
                reader.read_to_end(&mut body).map_err(|e| e.to_string())?;
                keep_alive = false;
            }
        }
        lat.push(t.elapsed());
        bytes += body.len();
        if !keep_alive {
            conn = None;
        }
    }
    Ok((lat, bytes))
}
