//! Invariants of selector-driven query rewriting, shared by the property tests
//! (`tests/rewrite_props.rs`) and the fuzz target (`fuzz/fuzz_targets/selector_rewrite.rs`) so
//! both check exactly the same things.
#![allow(dead_code)]

use gpuscale_adapter::promql;
use gpuscale_adapter::selector::Requirement;
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;

/// Query shapes every rewrite is tried on: each kind of place a vector selector can sit.
pub const QUERIES: &[&str] = &[
    "gpu_utilization_ratio",
    "rate(gpu_requests_total[5m])",
    r#"sum by (namespace, pod) (rate(gpu_requests_total{code!~"5.."}[5m]))"#,
    "gpu_a / on (pod) group_left (model) gpu_b",
    r#"gpu_a or gpu_b{x="y"}"#,
    "max_over_time(rate(gpu_requests_total[1m])[10m:30s])",
    r#"{__name__=~"gpu_.+"}"#,
    r#"gpu_a{a="1" or b="2", c="3"}"#,
    r#"label_replace(gpu_a, "dst", "$1", "src", "(.*)")"#,
    r#"absent(gpu_up{gpu="0"})"#,
    "histogram_quantile(0.9, sum by (le) (rate(gpu_request_duration_seconds_bucket[5m]))) > bool 0.5",
    "topk(scalar(count(gpu_up)), gpu_a offset 5m) unless on () absent(gpu_b @ end())",
    "-(gpu_a) * 2 + vector(1)",
    r#"count_values("v", gpu_a)"#,
    r#"sum(rate({__name__="a", job=~"x|y"}[5m] offset 1m))"#,
    "1 + 2",
];

/// A matcher as (operator, label, value): what the printer writes and Prometheus reads.
pub type Spec = (String, String, String);

fn spec(m: &Matcher) -> Spec {
    (m.op.to_string(), m.name.clone(), m.value.clone())
}

/// Reference implementation of the key mapping, written independently of the crate's.
pub fn reference_label(key: &str) -> String {
    let mut out = String::new();
    if key.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out
}

/// Go's `regexp.QuoteMeta`, for the expected text of `in`/`notin` regexes.
fn quote_meta(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The matchers a rewrite must add, in order: namespace first, then one per requirement.
pub fn expected_matchers(
    namespace: Option<(&str, &str)>,
    requirements: &[Requirement],
) -> Vec<Spec> {
    let mut out = Vec::new();
    if let Some((label, value)) = namespace {
        out.push(("=".to_string(), label.to_string(), value.to_string()));
    }
    let set = |values: &[String]| {
        let alternatives: Vec<String> = values.iter().map(|v| quote_meta(v)).collect();
        format!("^(?:{})$", alternatives.join("|"))
    };
    for r in requirements {
        let label = reference_label(r.key());
        let (op, value) = match r {
            Requirement::Equals { value, .. } => ("=", value.clone()),
            Requirement::NotEquals { value, .. } => ("!=", value.clone()),
            Requirement::In { values, .. } => ("=~", set(values)),
            Requirement::NotIn { values, .. } => ("!~", set(values)),
            Requirement::Exists { .. } => ("=~", ".+".to_string()),
            Requirement::DoesNotExist { .. } => ("=", String::new()),
        };
        out.push((op.to_string(), label, value));
    }
    out
}

/// Every vector selector's matcher groups in tree order: a selector's plain matchers, or each of
/// its `or` groups. Read-only walk over every node kind.
pub fn groups(expr: &Expr) -> Vec<Vec<Matcher>> {
    let mut out = Vec::new();
    collect(expr, &mut out);
    out
}

fn collect(expr: &Expr, out: &mut Vec<Vec<Matcher>>) {
    let mut selector = |m: &promql_parser::label::Matchers| {
        if m.or_matchers.is_empty() {
            out.push(m.matchers.clone());
        } else {
            out.extend(m.or_matchers.iter().cloned());
        }
    };
    match expr {
        Expr::VectorSelector(vs) => selector(&vs.matchers),
        Expr::MatrixSelector(ms) => selector(&ms.vs.matchers),
        Expr::Aggregate(a) => {
            collect(&a.expr, out);
            if let Some(p) = &a.param {
                collect(p, out);
            }
        }
        Expr::Unary(u) => collect(&u.expr, out),
        Expr::Binary(b) => {
            collect(&b.lhs, out);
            collect(&b.rhs, out);
        }
        Expr::Paren(p) => collect(&p.expr, out),
        Expr::Subquery(s) => collect(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Node kinds in pre-order with the attributes that define a query's shape other than matchers.
pub fn shape(expr: &Expr) -> Vec<String> {
    let mut out = Vec::new();
    shape_into(expr, &mut out);
    out
}

fn shape_into(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(format!(
            "vector {:?} groups={} at={:?} offset={:?}",
            vs.name,
            vs.matchers.or_matchers.len(),
            vs.at,
            vs.offset
        )),
        Expr::MatrixSelector(ms) => out.push(format!(
            "matrix {:?} groups={} range={:?} at={:?} offset={:?}",
            ms.vs.name,
            ms.vs.matchers.or_matchers.len(),
            ms.range,
            ms.vs.at,
            ms.vs.offset
        )),
        Expr::Aggregate(a) => {
            out.push(format!("aggregate {} {:?}", a.op, a.modifier));
            shape_into(&a.expr, out);
            if let Some(p) = &a.param {
                shape_into(p, out);
            }
        }
        Expr::Unary(u) => {
            out.push("unary".into());
            shape_into(&u.expr, out);
        }
        Expr::Binary(b) => {
            out.push(format!("binary {} {:?}", b.op, b.modifier));
            shape_into(&b.lhs, out);
            shape_into(&b.rhs, out);
        }
        Expr::Paren(p) => {
            out.push("paren".into());
            shape_into(&p.expr, out);
        }
        Expr::Subquery(s) => {
            out.push(format!(
                "subquery {:?}:{:?} at={:?} offset={:?}",
                s.range, s.step, s.at, s.offset
            ));
            shape_into(&s.expr, out);
        }
        Expr::Call(c) => {
            out.push(format!("call {} args={}", c.func.name, c.args.args.len()));
            c.args.args.iter().for_each(|a| shape_into(a, out));
        }
        Expr::NumberLiteral(n) => out.push(format!("number {:?}", n.val)),
        Expr::StringLiteral(s) => out.push(format!("string {:?}", s.val)),
        Expr::Extension(e) => out.push(format!("extension {:?}", e.expr.name())),
    }
}

/// Removes one occurrence of each of `specs` from every matcher group (as a rewrite added them).
fn strip(expr: &mut Expr, specs: &[Spec]) -> Result<(), String> {
    let strip_group = |group: &mut Vec<Matcher>| -> Result<(), String> {
        for s in specs {
            let Some(i) = group.iter().rposition(|m| &spec(m) == s) else {
                return Err(format!(
                    "injected matcher {s:?} missing from group {group:?}"
                ));
            };
            group.remove(i);
        }
        Ok(())
    };
    let selector = |m: &mut promql_parser::label::Matchers| -> Result<(), String> {
        if m.or_matchers.is_empty() {
            strip_group(&mut m.matchers)
        } else {
            if !m.matchers.is_empty() {
                return Err("plain matchers next to 'or' groups".into());
            }
            m.or_matchers.iter_mut().try_for_each(strip_group)
        }
    };
    match expr {
        Expr::VectorSelector(vs) => selector(&mut vs.matchers),
        Expr::MatrixSelector(ms) => selector(&mut ms.vs.matchers),
        Expr::Aggregate(a) => {
            strip(&mut a.expr, specs)?;
            match &mut a.param {
                Some(p) => strip(p, specs),
                None => Ok(()),
            }
        }
        Expr::Unary(u) => strip(&mut u.expr, specs),
        Expr::Binary(b) => {
            strip(&mut b.lhs, specs)?;
            strip(&mut b.rhs, specs)
        }
        Expr::Paren(p) => strip(&mut p.expr, specs),
        Expr::Subquery(s) => strip(&mut s.expr, specs),
        Expr::Call(c) => c.args.args.iter_mut().try_for_each(|a| strip(a, specs)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
    }
}

/// Strings an `in` regex over `values` must reject unless they are themselves in `values`:
/// near misses that a wrongly anchored, unescaped or unparenthesised regex would accept.
fn near_misses(values: &[String]) -> Vec<String> {
    let mut out = vec![String::new(), "x".into(), "\n".into(), ".".into()];
    for v in values {
        out.push(format!("{v}x"));
        out.push(format!("x{v}"));
        out.push(format!("{v}\n"));
        out.push(format!("\n{v}"));
        out.push(format!("{v}{v}"));
        let mut shorter = v.clone();
        shorter.pop();
        out.push(shorter);
        out.push(v.chars().skip(1).collect());
        out.push(v.replace(|c: char| !c.is_alphanumeric(), "x"));
        // Pairs of the first few values only: enough for anchoring and alternation mistakes,
        // without going quadratic on the long sets the fuzzer builds.
        for w in values.iter().take(8) {
            out.push(format!("{v}{w}"));
            out.push(format!("{v}|{w}"));
        }
    }
    out
}

/// Rewrites `original` and checks every invariant; the error says which one broke.
///
/// - the rewritten query renders, and the text parses (with the crate's own validation) back to
///   exactly the rewritten tree, which renders to the same text again;
/// - its shape is the original's: same node kinds and attributes, and removing the injected
///   matchers gives back exactly the original tree;
/// - every vector selector (every `or` group) carries exactly the original matchers plus exactly
///   the expected injected ones, in count and content;
/// - each `in`/`notin` regex, as parsed back, accepts exactly its values (and the near misses and
///   `probes` that are not values are decided the other way).
pub fn check_rewrite(
    original: &Expr,
    namespace: Option<(&str, &str)>,
    requirements: &[Requirement],
    probes: &[String],
) -> Result<(), String> {
    let rewritten = promql::inject(original, namespace, requirements)
        .map_err(|e| format!("inject failed: {e}"))?;
    let text = promql::render(&rewritten);
    let reparsed =
        promql::parse(&text).map_err(|e| format!("rendered query {text:?} does not parse: {e}"))?;
    if reparsed != rewritten {
        return Err(format!(
            "{text:?} parses to a different tree:\n{reparsed:?}\nnot\n{rewritten:?}"
        ));
    }
    let again = promql::render(&reparsed);
    if again != text {
        return Err(format!("render is not stable: {text:?} then {again:?}"));
    }

    if shape(&reparsed) != shape(original) {
        return Err(format!(
            "shape changed: {:?} became {:?}",
            shape(original),
            shape(&reparsed)
        ));
    }
    let expected = expected_matchers(namespace, requirements);
    let before = groups(original);
    let after = groups(&reparsed);
    if before.len() != after.len() {
        return Err(format!(
            "{} matcher groups became {}",
            before.len(),
            after.len()
        ));
    }
    for (old, new) in before.iter().zip(&after) {
        let mut want: Vec<Spec> = old
            .iter()
            .map(spec)
            .chain(expected.iter().cloned())
            .collect();
        let mut got: Vec<Spec> = new.iter().map(spec).collect();
        want.sort();
        got.sort();
        if want != got {
            return Err(format!(
                "a selector's matchers are {got:?}, expected {want:?}"
            ));
        }
    }
    let mut stripped = reparsed.clone();
    strip(&mut stripped, &expected)?;
    if &stripped != original {
        return Err(format!(
            "without the injected matchers the tree is\n{stripped:?}\nnot\n{original:?}"
        ));
    }

    // Regex semantics, on the matchers as parsed back from the text.
    let offset = usize::from(namespace.is_some());
    for (i, r) in requirements.iter().enumerate() {
        let (values, negated) = match r {
            Requirement::In { values, .. } => (values, false),
            Requirement::NotIn { values, .. } => (values, true),
            _ => continue,
        };
        let want = &expected[offset + i];
        for group in &after {
            let Some(m) = group.iter().find(|m| &spec(m) == want) else {
                return Err(format!("{want:?} missing after parsing back"));
            };
            let candidates = values
                .iter()
                .cloned()
                .chain(near_misses(values))
                .chain(probes.iter().cloned());
            for s in candidates {
                let member = values.contains(&s);
                if m.is_match(&s) != (member != negated) {
                    return Err(format!(
                        "{want:?} decides {s:?} wrongly (member of the set: {member})"
                    ));
                }
            }
        }
    }
    Ok(())
}
