//! Kubernetes `resource.Quantity` text for metric values, at milli precision, and RFC 3339
//! timestamps, without pulling in a date library.

/// Largest magnitude served: its milli-value (9e18) still fits an `int64` (max ≈ 9.22e18),
/// which is what the HPA controller converts every quantity to (`MilliValue()`); beyond it
/// the HPA would overflow. Exactly representable as an f64, unlike `i64::MAX / 1000`.
pub const MAX_ABS_VALUE: f64 = 9e15;

/// Formats a finite value as a Quantity: `42`, `1500m`, `-250m`. Values are rounded to the
/// nearest milli and clamped to ±[`MAX_ABS_VALUE`]; `None` for NaN or infinity, which must
/// never be served.
pub fn format(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    let clamped = value.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE);
    let milli = (clamped * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        Some((milli / 1000).to_string())
    } else {
        Some(format!("{milli}m"))
    }
}

/// Unix seconds → `2006-01-02T15:04:05Z` (metav1.Time has second precision).
pub fn rfc3339(unix_seconds: f64) -> String {
    let secs = if unix_seconds.is_finite() {
        unix_seconds.floor() as i64
    } else {
        0
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantities() {
        assert_eq!(format(42.0).as_deref(), Some("42"));
        assert_eq!(format(0.0).as_deref(), Some("0"));
        assert_eq!(format(0.42).as_deref(), Some("420m"));
        assert_eq!(format(1.5).as_deref(), Some("1500m"));
        assert_eq!(format(-0.25).as_deref(), Some("-250m"));
        assert_eq!(format(0.0004).as_deref(), Some("0"));
        assert_eq!(format(0.0006).as_deref(), Some("1m"));
        assert_eq!(format(f64::NAN), None);
        assert_eq!(format(f64::INFINITY), None);
        assert_eq!(format(1e300).as_deref(), Some("9000000000000000"));
        assert_eq!(format(-1e300).as_deref(), Some("-9000000000000000"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000.9), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_399.0), "2100-02-28T23:59:59Z");
    }

    proptest! {
        /// Whatever Prometheus returns, the served quantity parses back to an int64
        /// milli-value within half a milli of the (clamped) input.
        #[test]
        fn milli_value_fits_int64(v in proptest::num::f64::ANY) {
            match format(v) {
                None => prop_assert!(!v.is_finite()),
                Some(q) => {
                    let milli: i128 = match q.strip_suffix('m') {
                        Some(m) => m.parse().expect("int"),
                        None => q.parse::<i128>().expect("int") * 1000,
                    };
                    prop_assert!(milli <= i128::from(i64::MAX) && milli >= i128::from(i64::MIN));
                    let expect = v.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE) * 1000.0;
                    prop_assert!((milli as f64 - expect).abs() <= 0.5 + expect.abs() * 1e-15);
                }
            }
        }
    }
}
