//! A small reader of the Prometheus text exposition (0.0.4, and the OpenMetrics subset
//! engines serve): only the sample lines a profile wants are split into labels and value, so
//! a 1,000-line vLLM page costs one name lookup per line.

use std::borrow::Cow;

/// Calls `f(name, labels, value)` for every sample whose name `wants` accepts. `labels` is
/// the text between `{` and `}` (empty without labels); read it with [`label`]. Malformed
/// lines are skipped: one bad line must not hide the rest of the page.
pub fn scan<'a>(
    text: &'a str,
    mut wants: impl FnMut(&str) -> bool,
    mut f: impl FnMut(&'a str, &'a str, f64),
) {
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let name = &line[..name_end];
        if !wants(name) {
            continue;
        }
        let rest = &line[name_end..];
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(inner) => match closing_brace(inner) {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => continue,
            },
            None => ("", rest),
        };
        let Some(value) = rest.split_whitespace().next().and_then(parse_value) else {
            continue;
        };
        f(name, labels, value);
    }
}

/// Index of the `}` closing a label set, skipping quoted values with escapes.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// The value of label `key` in a label set's text, unescaped.
pub fn label<'a>(labels: &'a str, key: &str) -> Option<Cow<'a, str>> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut end = None;
        let mut escaped = false;
        let mut has_escape = false;
        for (i, c) in after.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    has_escape = true;
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        let raw = &after[..end];
        if name == key {
            return Some(if has_escape {
                Cow::Owned(unescape(raw))
            } else {
                Cow::Borrowed(raw)
            });
        }
        rest = &after[end + 1..];
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_labels_and_special_values() {
        let text = "# HELP x X.\n# TYPE x gauge\nx{a=\"1\",b=\"q\\\"}\"} 2.5\nx 3 1700000000\n\
                    y{le=\"+Inf\"} +Inf\nbroken{a=\"1\" 4\nx{a=\"z\"} NaN\n";
        let mut seen = Vec::new();
        scan(
            text,
            |n| n == "x" || n == "y",
            |n, l, v| seen.push((n.to_string(), l.to_string(), v)),
        );
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[0].2, 2.5);
        assert_eq!(label(&seen[0].1, "b").as_deref(), Some("q\"}"));
        assert_eq!(label(&seen[0].1, "a").as_deref(), Some("1"));
        assert_eq!(label(&seen[0].1, "c"), None);
        assert_eq!(seen[1].2, 3.0);
        assert_eq!(seen[2].2, f64::INFINITY);
        assert_eq!(label(&seen[2].1, "le").as_deref(), Some("+Inf"));
        assert!(seen[3].2.is_nan());
    }

    #[test]
    fn unwanted_lines_are_not_split() {
        let mut n = 0;
        scan("a{x=\"1\"} 1\nb 2\n", |name| name == "b", |_, _, _| n += 1);
        assert_eq!(n, 1);
    }
}
