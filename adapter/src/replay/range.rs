//! Range queries (`POST /api/v1/query_range`) for replay: demand from any Prometheus the
//! adapter config points at, and the forecast read back from the replay's own Prometheus.
//! Kept here rather than in `prometheus.rs` because serving never needs ranges.

use std::time::Duration;

use super::trace::Trace;
use crate::config::PrometheusConfig;

/// Prometheus refuses more than 11,000 points per series in one query.
const MAX_POINTS: f64 = 10_000.0;

/// Why a range query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("prometheus client setup: {0}")]
    Setup(String),
    #[error("{url}: {message} (is Prometheus running there?)")]
    Unreachable { url: String, message: String },
    #[error("prometheus answered {status}: {body}")]
    Http { status: u16, body: String },
    #[error("range query {query:?} failed: {message}")]
    Query { query: String, message: String },
    #[error(
        "range query {query:?} returned {series} series; demand must be one series (wrap it in sum())"
    )]
    NotOneSeries { query: String, series: usize },
}

/// One series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: std::collections::BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

#[derive(serde::Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Data {
    result: Vec<RawSeries>,
}

#[derive(serde::Deserialize)]
struct RawSeries {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Range queries through the adapter's Prometheus client (same auth, headers, CA and pool).
pub struct RangeClient {
    client: crate::prometheus::Client,
    timeout: Duration,
}

impl RangeClient {
    pub fn new(config: &PrometheusConfig) -> Result<Self, Error> {
        Ok(Self {
            client: crate::prometheus::Client::new(config)
                .map_err(|e| Error::Setup(e.to_string()))?,
            timeout: config.timeout.max(Duration::from_secs(30)),
        })
    }

    /// A client for a local, unauthenticated Prometheus.
    pub fn local(url: &str) -> Result<Self, Error> {
        let url = reqwest::Url::parse(url).map_err(|e| Error::Setup(format!("{url}: {e}")))?;
        Self::new(&PrometheusConfig {
            url,
            timeout: Duration::from_secs(60),
            bearer_token_file: None,
            ca_file: None,
            basic_auth: None,
            headers: Default::default(),
        })
    }

    /// Every series of `query` over [start, end] at `step`, fetched in chunks below the
    /// server's per-query point limit and concatenated.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, Error> {
        let mut all: Vec<Series> = Vec::new();
        let mut from = start;
        while from <= end {
            let to = (from + step * MAX_POINTS).min(end);
            for s in self.chunk(query, from, to, step).await? {
                match all.iter_mut().find(|a| a.labels == s.labels) {
                    Some(a) => a.points.extend(s.points),
                    None => all.push(s),
                }
            }
            from = to + step;
        }
        Ok(all)
    }

    async fn chunk(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, Error> {
        let (start, end, step) = (
            format!("{start:.3}"),
            format!("{end:.3}"),
            format!("{step}"),
        );
        let pairs = [
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ];
        let (status, bytes) = self
            .client
            .post_form("/api/v1/query_range", &pairs, Some(self.timeout))
            .await
            .map_err(|e| match e {
                crate::prometheus::Error::Unreachable { url, message } => {
                    Error::Unreachable { url, message }
                }
                timeout @ crate::prometheus::Error::Timeout(_) => Error::Unreachable {
                    url: "prometheus".into(),
                    message: timeout.to_string(),
                },
                other => Error::Setup(other.to_string()),
            })?;
        match serde_json::from_slice::<ApiResponse>(&bytes) {
            Ok(api) if api.status == "success" => Ok(api
                .data
                .map(|d| d.result)
                .unwrap_or_default()
                .into_iter()
                .map(|r| Series {
                    labels: r.metric,
                    // Prometheus encodes NaN/Inf as strings; they are dropped, not replayed.
                    points: r
                        .values
                        .into_iter()
                        .filter_map(|(t, v)| {
                            v.parse::<f64>()
                                .ok()
                                .filter(|v| v.is_finite())
                                .map(|v| (t, v))
                        })
                        .collect(),
                })
                .collect()),
            Ok(api) => Err(Error::Query {
                query: query.to_string(),
                message: api.error.unwrap_or_default(),
            }),
            Err(_) => Err(Error::Http {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }
}

/// Demand from a range query: exactly one series, on the simulation grid.
pub async fn demand(
    config: &PrometheusConfig,
    query: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<Trace, Error> {
    let client = RangeClient::new(config)?;
    let series = client.query_range(query, start, end, step).await?;
    if series.len() != 1 {
        return Err(Error::NotOneSeries {
            query: query.to_string(),
            series: series.len(),
        });
    }
    let n = ((end - start) / step).floor() as usize + 1;
    let grid = on_grid(&series[0].points, start, step, n, step * 20.0);
    Ok(Trace {
        name: "prometheus".into(),
        start,
        step,
        // A gap in the series is no demand seen, which the replay must not invent.
        values: grid.into_iter().map(|v| v.unwrap_or(0.0)).collect(),
        warmup: 0.0,
    })
}

/// Sample-and-hold of sorted points onto `n` grid times from `start`: the latest point at
/// or before each time, if not older than `lookback` (Prometheus' staleness rule).
pub fn on_grid(
    points: &[(f64, f64)],
    start: f64,
    step: f64,
    n: usize,
    lookback: f64,
) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(n);
    let mut j = 0usize;
    for k in 0..n {
        let t = start + k as f64 * step;
        while j < points.len() && points[j].0 <= t + 1e-6 {
            j += 1;
        }
        out.push(
            j.checked_sub(1)
                .map(|i| points[i])
                .filter(|(pt, _)| t - pt <= lookback)
                .map(|(_, v)| v),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_holds_latest_within_lookback() {
        let pts = [(0.0, 1.0), (10.0, 2.0)];
        assert_eq!(
            on_grid(&pts, -5.0, 5.0, 6, 10.0),
            vec![None, Some(1.0), Some(1.0), Some(2.0), Some(2.0), Some(2.0)]
        );
        assert_eq!(on_grid(&pts, 0.0, 25.0, 2, 10.0), vec![Some(1.0), None]);
    }
}
