//! Demand input: a `timestamp,value` CSV (NAB style) or the Azure LLM per-request CSV
//! (`TIMESTAMP,ContextTokens,GeneratedTokens`), turned into load on the simulation's regular
//! time grid. Per-request traces become concurrency (requests in flight) because that, not
//! the arrival rate, is what occupies a GPU replica.

use std::path::Path;

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "{file}: no usable rows (expected a header `timestamp,value` or `TIMESTAMP,ContextTokens,GeneratedTokens`)"
    )]
    Empty { file: String },
}

/// Load on a regular grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub name: String,
    /// Unix seconds of `values[0]`.
    pub start: f64,
    /// Seconds between values.
    pub step: f64,
    pub values: Vec<f64>,
    /// Seconds at the start that under-count demand: a per-request trace misses the
    /// requests that started before it, so concurrency ramps up from zero for about the
    /// longest request (the 99th percentile of request durations). `replay` skips them.
    pub warmup: f64,
}

impl Trace {
    pub fn end(&self) -> f64 {
        self.start + self.step * self.values.len().saturating_sub(1) as f64
    }

    pub fn peak(&self) -> f64 {
        self.values.iter().copied().fold(0.0, f64::max)
    }

    /// Multiplies every value (units: whatever one replica's capacity is expressed in).
    pub fn scale(&mut self, factor: f64) {
        for v in &mut self.values {
            *v *= factor;
        }
    }

    /// Drops the first `seconds` (at least `warmup`, rounded up to whole steps).
    pub fn skip(&mut self, seconds: f64) {
        let n = ((seconds / self.step).ceil() as usize).min(self.values.len().saturating_sub(1));
        self.values.drain(..n);
        self.start += n as f64 * self.step;
        self.warmup = 0.0;
    }

    /// Keeps the first `seconds` of the trace.
    pub fn truncate(&mut self, seconds: f64) {
        let n = (seconds / self.step).floor() as usize + 1;
        self.values.truncate(n.max(1));
    }
}

/// How per-request traces turn into time spent on a GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceModel {
    /// Prompt tokens processed per second for one request.
    pub prefill_tokens_per_second: f64,
    /// Generated tokens per second for one request (the decode speed a user sees).
    pub decode_tokens_per_second: f64,
}

impl ServiceModel {
    fn seconds(&self, context: f64, generated: f64) -> f64 {
        context / self.prefill_tokens_per_second + generated / self.decode_tokens_per_second
    }
}

/// Reads a trace file and samples it every `step` seconds.
pub fn load(path: &Path, step: f64, service: ServiceModel) -> Result<Trace, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        file: file.clone(),
        source,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    parse(&name, &file, &text, step, service)
}

/// [`load`] on text already read; `file` only names errors.
pub fn parse(
    name: &str,
    file: &str,
    text: &str,
    step: f64,
    service: ServiceModel,
) -> Result<Trace, Error> {
    let (per_request, rows) = read_rows(file, text)?;
    let (values, warmup) = if per_request {
        let intervals: Vec<(f64, f64)> = rows
            .iter()
            .map(|&(t, ctx, generated)| (t, t + service.seconds(ctx, generated)))
            .collect();
        let mut durations: Vec<f64> = intervals.iter().map(|(a, b)| b - a).collect();
        durations.sort_by(f64::total_cmp);
        let p99 = durations
            [((durations.len() as f64 * 0.99).ceil() as usize).clamp(1, durations.len()) - 1];
        (in_flight(&intervals, rows[0].0, step), p99)
    } else {
        (interpolate(&rows, step), 0.0)
    };
    Ok(Trace {
        name: name.to_string(),
        start: rows[0].0,
        step,
        values,
        warmup,
    })
}

/// Time-averaged number of open intervals in each `[start + k·step, start + (k+1)·step)`:
/// the concurrency a scrape-and-average pipeline would see.
fn in_flight(intervals: &[(f64, f64)], start: f64, step: f64) -> Vec<f64> {
    let last_arrival = intervals.iter().map(|i| i.0).fold(start, f64::max);
    let n = ((last_arrival - start) / step).floor() as usize + 1;
    let mut busy = vec![0.0; n];
    for &(a, b) in intervals {
        let b = b.min(start + n as f64 * step);
        let mut k = ((a - start) / step).floor() as usize;
        while k < n {
            let lo = start + k as f64 * step;
            let hi = lo + step;
            if lo >= b {
                break;
            }
            busy[k] += (b.min(hi) - a.max(lo)).max(0.0);
            k += 1;
        }
    }
    busy.iter().map(|s| s / step).collect()
}

/// One row of a trace file: timestamp and up to two values.
type Row = (f64, f64, f64);

/// The rows of a trace file, sorted by time: `(timestamp, value, 0)` for `timestamp,value`,
/// `(timestamp, context tokens, generated tokens)` for the Azure per-request format (then
/// `true`). A bad row is an error naming its line; no row at all is [`Error::Empty`].
fn read_rows(file: &str, text: &str) -> Result<(bool, Vec<Row>), Error> {
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let per_request = header.starts_with("timestamp,contexttokens,generatedtokens");
    if !per_request && !header.starts_with("timestamp,value") {
        return Err(Error::Empty {
            file: file.to_string(),
        });
    }
    let mut rows: Vec<Row> = Vec::new();
    for (i, line) in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| Error::Line {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let expected = if per_request { 3 } else { 2 };
        if fields.len() != expected {
            return Err(bad(format!(
                "expected {expected} fields, found {}",
                fields.len()
            )));
        }
        let t = parse_timestamp(fields[0]).ok_or_else(|| {
            bad(format!(
                "timestamp {:?} is neither `YYYY-MM-DD HH:MM:SS[.frac]` nor unix seconds",
                fields[0]
            ))
        })?;
        let number = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad(format!("{s:?} is not a finite non-negative number")))
        };
        let a = number(fields[1])?;
        let b = if per_request { number(fields[2])? } else { 0.0 };
        rows.push((t, a, b));
    }
    if rows.is_empty() {
        return Err(Error::Empty {
            file: file.to_string(),
        });
    }
    rows.sort_by(|x, y| x.0.total_cmp(&y.0));
    Ok((per_request, rows))
}

/// Reads `timestamp,value` points as they are (sorted, not resampled): a forecast made
/// elsewhere, e.g. forecast replicas exported from Prometheus or another model.
pub fn load_points(path: &Path) -> Result<Vec<(f64, f64)>, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        file: file.clone(),
        source,
    })?;
    parse_points(&file, &text)
}

fn parse_points(file: &str, text: &str) -> Result<Vec<(f64, f64)>, Error> {
    let (per_request, rows) = read_rows(file, text)?;
    if per_request {
        return Err(Error::Line {
            file: file.to_string(),
            line: 1,
            message: "a forecast is `timestamp,value` (forecast replicas), not per-request rows"
                .into(),
        });
    }
    Ok(rows.into_iter().map(|(t, v, _)| (t, v)).collect())
}

/// Linear interpolation of sorted points onto the grid starting at the first point.
fn interpolate(rows: &[(f64, f64, f64)], step: f64) -> Vec<f64> {
    let start = rows[0].0;
    let end = rows[rows.len() - 1].0;
    let n = ((end - start) / step).floor() as usize + 1;
    let mut out = Vec::with_capacity(n);
    let mut j = 0;
    for k in 0..n {
        let t = start + k as f64 * step;
        while j + 1 < rows.len() && rows[j + 1].0 <= t {
            j += 1;
        }
        let (t0, v0, _) = rows[j];
        let v = match rows.get(j + 1) {
            Some(&(t1, v1, _)) if t1 > t0 => v0 + (v1 - v0) * (t - t0) / (t1 - t0),
            _ => v0,
        };
        out.push(v);
    }
    out
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.frac][Z]` (UTC, as the traces are) or unix seconds.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next().map_or(Some(0.0), |x| x.parse().ok())?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec >= 61.0 {
        return None;
    }
    Some((days_from_civil(y, m, day) * 86400 + h * 3600 + min * 60) as f64 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: ServiceModel = ServiceModel {
        prefill_tokens_per_second: 1000.0,
        decode_tokens_per_second: 10.0,
    };

    /// Forecast points are kept as given (sorted), and a bad row names its line.
    #[test]
    fn forecast_points() {
        let p = parse_points(
            "f.csv",
            "timestamp,value\n1700000060,3\n\n2023-11-14 22:13:20,2.5\n",
        )
        .expect("points");
        assert_eq!(p, vec![(1_700_000_000.0, 2.5), (1_700_000_060.0, 3.0)]);
        let err = parse_points("f.csv", "timestamp,value\n1700000000,-1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.csv:2: \"-1\" is not a finite non-negative number"
        );
        let err = parse_points("f.csv", "timestamp,value\n1700000000\n").unwrap_err();
        assert_eq!(err.to_string(), "f.csv:2: expected 2 fields, found 1");
        assert!(matches!(
            parse_points("f.csv", "time,replicas\n1,2\n"),
            Err(Error::Empty { .. })
        ));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(
            parse_timestamp("2014-04-10 00:04:00"),
            Some(1_397_088_240.0)
        );
        assert_eq!(
            parse_timestamp("2023-11-16 18:15:46.5"),
            Some(1_700_158_546.5)
        );
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000.0));
        assert_eq!(parse_timestamp("2014-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn series_is_interpolated() {
        let t = parse(
            "x",
            "x.csv",
            "timestamp,value\n1970-01-01 00:00:00,0\n1970-01-01 00:01:00,60\n",
            15.0,
            SERVICE,
        )
        .expect("parses");
        assert_eq!(t.values, vec![0.0, 15.0, 30.0, 45.0, 60.0]);
        assert_eq!((t.start, t.end()), (0.0, 60.0));
    }

    /// One request of 100 prompt + 100 generated tokens lasts 0.1 + 10 s: a 5 s grid sees
    /// it fully busy twice, then 0.1 s of the third bucket.
    #[test]
    fn requests_become_concurrency() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\n0,100,100\n12,0,10\n";
        let t = parse("a", "a.csv", text, 5.0, SERVICE).expect("parses");
        // second request: 12..13 s, in bucket [10, 15)
        assert_eq!(t.values.len(), 3);
        assert!((t.values[0] - 1.0).abs() < 1e-9);
        assert!((t.values[1] - 1.0).abs() < 1e-9);
        assert!((t.values[2] - (0.1 + 1.0) / 5.0).abs() < 1e-9);
        // p99 of the durations (10.1 s, 1 s): the first 10.1 s under-count.
        assert!((t.warmup - 10.1).abs() < 1e-9);
        let mut t = t;
        t.skip(t.warmup);
        // At least one value stays.
        assert_eq!((t.start, t.values.len(), t.warmup), (10.0, 1, 0.0));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("x", "x.csv", "timestamp,value\n0,1\n60,-3\n", 15.0, SERVICE)
            .expect_err("negative");
        assert_eq!(
            e.to_string(),
            "x.csv:3: \"-3\" is not a finite non-negative number"
        );
        assert!(matches!(
            parse("x", "x.csv", "a,b\n", 15.0, SERVICE),
            Err(Error::Empty { .. })
        ));
    }
}
