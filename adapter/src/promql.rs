//! Query rewriting on the PromQL syntax tree (promql-parser): the HPA's label selector and
//! namespace become matchers on every vector selector, so no value can change a query's shape.

use std::time::SystemTime;

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::token::{T_EQL_REGEX, T_NEQ_REGEX};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, VectorSelector};

use crate::selector::Requirement;

/// Longest query for which a syntax error's position is searched for (by re-parsing prefixes,
/// as promql-parser reports none); longer ones get their error without a position.
const LOCATE_MAX_BYTES: usize = 4096;

/// The message promql-parser gives for every grammar error.
const GRAMMAR_ERROR: &str = "invalid promql query";

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The query does not parse: fix it at the position given.
    #[error("invalid PromQL at {position}: {message}")]
    Parse { position: String, message: String },
    /// A label name or a requirement cannot become a matcher.
    #[error("label {label:?} cannot be used in a matcher: {message}")]
    Label { label: String, message: String },
    /// The query parses but cannot be served or sent on faithfully: rewrite it as the message says.
    #[error("unsupported query: {message}")]
    Unsupported { message: String },
}

/// Parses and validates a configured query.
///
/// The tree comes back with each selector's matchers in the order promql-parser prints them
/// (sorted), so that `parse(&render(&e)) == Ok(e)` holds exactly for what this returns.
///
/// Beyond parsing, a query must return an instant vector or a scalar (an external metric is a
/// value per series, not a range), and must print back to itself: the rewritten query goes to
/// Prometheus as text, so anything promql-parser cannot print faithfully is refused here, when
/// the configuration loads, instead of silently querying something else later.
pub fn parse(query: &str) -> Result<Expr, Error> {
    let mut expr = promql_parser::parser::parse(query).map_err(|message| Error::Parse {
        position: locate(query, &message),
        message,
    })?;
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            return Err(Error::Unsupported {
                message: format!(
                    "the query returns a {other}; an external metric needs an instant vector or \
                     a scalar (wrap a range in a function such as rate() or max_over_time())"
                ),
            });
        }
    }
    walk(&mut expr, &mut |selector| {
        sort_matchers(&mut selector.matchers);
        Ok(())
    })?;
    let printed = render(&expr);
    // Debug, not PartialEq: a NaN literal is the same query as itself.
    let same = promql_parser::parser::parse(&printed)
        .map(|again| format!("{again:?}") == format!("{expr:?}"))
        .unwrap_or(false);
    if !same {
        return Err(Error::Unsupported {
            message: format!(
                "promql-parser prints this query as {printed:?}, which does not mean the same; \
                 please spell it differently"
            ),
        });
    }
    Ok(expr)
}

/// Adds `namespace` (label, value) and every selector requirement as matchers to every vector
/// and matrix selector of `expr`, in every `or` group and subquery.
///
/// Every selector anywhere in the tree gets the same matchers: inside functions, aggregations,
/// both sides of binary operators, subqueries, and each `or` group of a `{a="1" or b="2"}`
/// selector (promql-parser's own `append` would only touch the last group). Matchers are added
/// next to the query's own, never in their place, so a query that already constrains a label
/// keeps its constraint and gains the HPA's (AND). Values go into the tree verbatim and are
/// escaped by the printer, so no value can change the query's shape.
///
/// Plain matchers end up in printed (sorted) order, as [`parse`] returns them, so the result
/// equals what Prometheus-bound text parses back to.
///
/// Requirement keys become Prometheus label names through [`sanitize`]. `namespace`'s label is
/// used as given and must be a plain Prometheus label name.
pub fn inject(
    expr: &Expr,
    namespace: Option<(&str, &str)>,
    requirements: &[Requirement],
) -> Result<Expr, Error> {
    let mut added = Vec::with_capacity(requirements.len() + 1);
    if let Some((label, value)) = namespace {
        check_label(label)?;
        added.push(Matcher::new(MatchOp::Equal, label, value));
    }
    for requirement in requirements {
        added.push(matcher_for(requirement)?);
    }
    let mut out = expr.clone();
    walk(&mut out, &mut |selector| {
        add_matchers(&mut selector.matchers, &added);
        sort_matchers(&mut selector.matchers);
        Ok(())
    })?;
    Ok(out)
}

/// The query text sent to Prometheus.
///
/// This is promql-parser's printer, which escapes label values (`"`, `\`, newlines) since 0.10;
/// [`parse`] refuses the few trees it prints wrongly, and [`inject`] only adds matchers, which it
/// prints correctly for any value.
pub fn render(expr: &Expr) -> String {
    expr.to_string()
}

/// Maps a Kubernetes label key to a Prometheus label name the way Prometheus' Kubernetes service
/// discovery and kube-state-metrics do, so HPA selectors line up with the labels those put on
/// series: every character outside `[a-zA-Z0-9_]` becomes `_`, and a name starting with a digit
/// gets a leading `_` (Prometheus label names cannot start with one).
///
/// `app.kubernetes.io/name` becomes `app_kubernetes_io_name`. Distinct keys can map to one name
/// (`a.b` and `a-b`); a selector on either then constrains that one label, as it would in
/// kube-state-metrics' output.
pub fn sanitize(key: &str) -> String {
    let mut name = String::with_capacity(key.len() + 1);
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        name.push('_');
    }
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// A Prometheus label name we may add a matcher for: the classic `[a-zA-Z_][a-zA-Z0-9_]*` shape
/// (what Prometheus 2 accepts), and not `__`-prefixed, since those are reserved and `__name__`
/// would turn the matcher into a metric name.
fn check_label(label: &str) -> Result<(), Error> {
    let fail = |message: &str| {
        Err(Error::Label {
            label: label.to_string(),
            message: message.to_string(),
        })
    };
    let mut chars = label.chars();
    match chars.next() {
        None => return fail("a label name cannot be empty"),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return fail("a label name must start with a letter or '_'");
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return fail("a label name may only contain letters, digits and '_'");
    }
    if label.starts_with("__") {
        return fail("label names starting with '__' are reserved for Prometheus");
    }
    Ok(())
}

/// The matcher a requirement becomes. `In`/`NotIn` use an explicitly anchored alternation of the
/// escaped values (Prometheus anchors regexes anyway; being explicit keeps the intent visible and
/// survives any engine that does not); `Exists` is `=~".+"` and `DoesNotExist` is `=""`, since
/// Prometheus treats an empty label as an absent one.
fn matcher_for(requirement: &Requirement) -> Result<Matcher, Error> {
    let label = sanitize(requirement.key());
    check_label(&label)?;
    let regex = |token, pattern: String| {
        Matcher::new_matcher(token, label.clone(), pattern).map_err(|message| Error::Label {
            label: label.clone(),
            message,
        })
    };
    match requirement {
        Requirement::Equals { value, .. } => Ok(Matcher::new(MatchOp::Equal, &label, value)),
        Requirement::NotEquals { value, .. } => Ok(Matcher::new(MatchOp::NotEqual, &label, value)),
        Requirement::In { values, .. } => regex(T_EQL_REGEX, one_of(&label, values)?),
        Requirement::NotIn { values, .. } => regex(T_NEQ_REGEX, one_of(&label, values)?),
        Requirement::Exists { .. } => regex(T_EQL_REGEX, ".+".to_string()),
        Requirement::DoesNotExist { .. } => Ok(Matcher::new(MatchOp::Equal, &label, "")),
    }
}

/// `^(?:v1|v2|...)$` with every value matched literally.
fn one_of(label: &str, values: &[String]) -> Result<String, Error> {
    if values.is_empty() {
        return Err(Error::Label {
            label: label.to_string(),
            message: "for 'in' and 'notin', the set of values cannot be empty".into(),
        });
    }
    let mut pattern = String::from("^(?:");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            pattern.push('|');
        }
        quote_meta(value, &mut pattern);
    }
    pattern.push_str(")$");
    Ok(pattern)
}

/// Go's `regexp.QuoteMeta`: backslash before each of `\.+*?()|[]{}^$`. Those escapes mean the
/// literal character in both RE2 (Prometheus) and the `regex` crate (promql-parser), and every
/// other character is literal in both.
fn quote_meta(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Adds matchers to a selector: to its plain matchers, or to each of its `or` groups when it has
/// them (the printer shows only the groups then).
fn add_matchers(matchers: &mut Matchers, added: &[Matcher]) {
    if matchers.or_matchers.is_empty() {
        matchers.matchers.extend_from_slice(added);
    } else {
        for group in &mut matchers.or_matchers {
            group.extend_from_slice(added);
        }
    }
}

/// Puts plain matchers in the order promql-parser prints them (sorted by their text; `or` groups
/// print as they are), so a tree and its printed-and-parsed-again copy are equal.
fn sort_matchers(matchers: &mut Matchers) {
    matchers.matchers.sort_by_cached_key(ToString::to_string);
}

/// Calls `f` on every vector selector (including those of matrix selectors) anywhere in `expr`,
/// refusing on the way what cannot be printed faithfully.
fn walk(
    expr: &mut Expr,
    f: &mut dyn FnMut(&mut VectorSelector) -> Result<(), Error>,
) -> Result<(), Error> {
    match expr {
        Expr::Aggregate(aggregate) => {
            walk(&mut aggregate.expr, f)?;
            if let Some(param) = &mut aggregate.param {
                walk(param, f)?;
            }
        }
        Expr::Unary(unary) => walk(&mut unary.expr, f)?,
        Expr::Binary(binary) => {
            walk(&mut binary.lhs, f)?;
            walk(&mut binary.rhs, f)?;
        }
        Expr::Paren(paren) => walk(&mut paren.expr, f)?,
        Expr::Subquery(subquery) => {
            check_at(subquery.at.as_ref())?;
            walk(&mut subquery.expr, f)?;
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::VectorSelector(selector) => visit(selector, f)?,
        Expr::MatrixSelector(matrix) => visit(&mut matrix.vs, f)?,
        Expr::Call(call) => {
            for arg in &mut call.args.args {
                walk(arg, f)?;
            }
        }
        Expr::Extension(extension) => {
            return Err(Error::Unsupported {
                message: format!(
                    "extension node {:?} cannot be rewritten or sent to Prometheus",
                    extension.expr.name()
                ),
            });
        }
    }
    Ok(())
}

fn visit(
    selector: &mut VectorSelector,
    f: &mut dyn FnMut(&mut VectorSelector) -> Result<(), Error>,
) -> Result<(), Error> {
    check_at(selector.at.as_ref())?;
    if !selector.matchers.matchers.is_empty() && !selector.matchers.or_matchers.is_empty() {
        // promql-parser never builds this; its printer would drop the plain matchers.
        return Err(Error::Unsupported {
            message: "a selector with both plain and 'or' matchers cannot be printed".into(),
        });
    }
    f(selector)
}

/// promql-parser prints an `@` time before 1970 as `@ 0.000`, so such a query would silently
/// ask Prometheus for a different time.
fn check_at(at: Option<&AtModifier>) -> Result<(), Error> {
    match at {
        Some(AtModifier::At(time)) if *time < SystemTime::UNIX_EPOCH => Err(Error::Unsupported {
            message: "'@' times before 1970 (negative timestamps) are printed wrongly by \
                      promql-parser; use a non-negative timestamp, start() or end()"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// The best position promql-parser's error lets us give, as `line L, column C` (1-based,
/// columns in characters).
///
/// promql-parser reports no positions. A lexer error happens at the first prefix of the query
/// that fails with the same message, found by bisection. An error the lexer only notices at the
/// end (an unclosed parenthesis or string) is placed there. A grammar error is placed after the
/// longest prefix that parses, which is where the parser can first have failed: "or later".
fn locate(query: &str, message: &str) -> String {
    if query.trim().is_empty() {
        return "line 1, column 1".into();
    }
    if query.len() > LOCATE_MAX_BYTES {
        return "an unknown position (promql-parser reports none)".into();
    }
    // Byte offsets just past each character: the prefixes worth trying.
    let ends: Vec<usize> = query
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .collect();
    match promql_parser::parser::lexer(query) {
        Err(lex_error) => {
            let at_end = [
                "unclosed left parenthesis",
                "unexpected end of input",
                "unterminated quoted string",
                "escape sequence not terminated",
                "can not be at the end",
            ];
            if at_end.iter().any(|m| lex_error.contains(m)) {
                return format!("the end of the query ({})", line_column(query, query.len()));
            }
            let fails_alike = |end: usize| {
                promql_parser::parser::lexer(&query[..end]).err().as_deref() == Some(&*lex_error)
            };
            let (mut lo, mut hi) = (0, ends.len() - 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if fails_alike(ends[mid]) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let end = ends[lo];
            let start = query[..end]
                .char_indices()
                .next_back()
                .map_or(0, |(i, _)| i);
            line_column(query, start)
        }
        Ok(_) => {
            let parses = |end: usize| promql_parser::parser::parse(&query[..end]).is_ok();
            let Some(end) = ends.iter().rev().skip(1).copied().find(|&end| parses(end)) else {
                return if message == GRAMMAR_ERROR {
                    "line 1, column 1 or later".into()
                } else {
                    "an unknown position (promql-parser reports none)".into()
                };
            };
            match query[end..]
                .char_indices()
                .find(|(_, c)| !c.is_whitespace())
            {
                Some((i, _)) => format!("{} or later", line_column(query, end + i)),
                None => format!("the end of the query ({})", line_column(query, query.len())),
            }
        }
    }
}

/// `line L, column C` of a byte offset.
fn line_column(query: &str, offset: usize) -> String {
    let before = &query[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, tail)| tail)
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn q(query: &str) -> Expr {
        match parse(query) {
            Ok(e) => e,
            Err(e) => panic!("{query:?} should parse: {e}"),
        }
    }

    #[track_caller]
    fn rewrite(query: &str, namespace: Option<(&str, &str)>, reqs: &[Requirement]) -> String {
        match inject(&q(query), namespace, reqs) {
            Ok(e) => render(&e),
            Err(e) => panic!("{query:?} should be rewritten: {e}"),
        }
    }

    #[track_caller]
    fn parse_err(query: &str) -> Error {
        match parse(query) {
            Ok(e) => panic!("{query:?} should be rejected, parsed as {e:?}"),
            Err(e) => e,
        }
    }

    fn eq(key: &str, value: &str) -> Requirement {
        Requirement::Equals {
            key: key.into(),
            value: value.into(),
        }
    }

    fn is_in(key: &str, values: &[&str]) -> Requirement {
        Requirement::In {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    const NS: Option<(&str, &str)> = Some(("namespace", "team-a"));

    #[test]
    fn sanitize_maps_keys_like_kubernetes_sd() {
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(sanitize("app"), "app");
        assert_eq!(sanitize("my-label_2"), "my_label_2");
        assert_eq!(sanitize("1foo"), "_1foo");
        assert_eq!(sanitize("0.1.2.domain/99"), "_0_1_2_domain_99");
        assert_eq!(sanitize("é"), "_");
        assert_eq!(sanitize(""), "");
    }

    #[test]
    fn every_operator_becomes_its_matcher() {
        let reqs = [
            eq("a", "1"),
            Requirement::NotEquals {
                key: "b".into(),
                value: "2".into(),
            },
            is_in("c", &["x", "y.z"]),
            Requirement::NotIn {
                key: "d".into(),
                values: vec!["w".into()],
            },
            Requirement::Exists { key: "e".into() },
            Requirement::DoesNotExist { key: "f".into() },
        ];
        assert_eq!(
            rewrite("up", NS, &reqs),
            r#"up{a="1",b!="2",c=~"^(?:x|y\\.z)$",d!~"^(?:w)$",e=~".+",f="",namespace="team-a"}"#
        );
    }

    #[test]
    fn keys_are_sanitized_and_matchers_added_not_replaced() {
        assert_eq!(
            rewrite(
                r#"up{app_kubernetes_io_name="x", namespace="other"}"#,
                NS,
                &[eq("app.kubernetes.io/name", "y")]
            ),
            r#"up{app_kubernetes_io_name="x",app_kubernetes_io_name="y",namespace="other",namespace="team-a"}"#
        );
    }

    #[test]
    fn every_selector_in_the_tree_is_scoped() {
        let cases = [
            (
                "sum by (pod) (rate(x_total[5m]))",
                r#"sum by (pod) (rate(x_total{k="v",namespace="team-a"}[5m]))"#,
            ),
            (
                "a / on (pod) group_left b",
                r#"a{k="v",namespace="team-a"} / on (pod) group_left () b{k="v",namespace="team-a"}"#,
            ),
            (
                "a or b or c",
                r#"a{k="v",namespace="team-a"} or b{k="v",namespace="team-a"} or c{k="v",namespace="team-a"}"#,
            ),
            (
                "max_over_time(rate(x[1m])[10m:30s])",
                r#"max_over_time(rate(x{k="v",namespace="team-a"}[1m])[10m:30s])"#,
            ),
            (
                r#"{__name__=~"gpu_.+"}"#,
                r#"{__name__=~"gpu_.+",k="v",namespace="team-a"}"#,
            ),
            (
                r#"x{a="1" or b="2", c="3"}"#,
                r#"x{a="1", namespace="team-a", k="v" or b="2", c="3", namespace="team-a", k="v"}"#,
            ),
            (
                r#"label_replace(x, "dst", "$1", "src", "(.*)")"#,
                r#"label_replace(x{k="v",namespace="team-a"}, "dst", "$1", "src", "(.*)")"#,
            ),
            ("absent(x)", r#"absent(x{k="v",namespace="team-a"})"#),
            (
                "topk(scalar(count(y)), x offset 5m)",
                r#"topk(scalar(count(y{k="v",namespace="team-a"})), x{k="v",namespace="team-a"} offset 5m)"#,
            ),
            ("-(x @ end())", r#"-(x{k="v",namespace="team-a"} @ end())"#),
            ("vector(1)", "vector(1)"),
            ("1 + 2", "1 + 2"),
        ];
        for (query, want) in cases {
            assert_eq!(rewrite(query, NS, &[eq("k", "v")]), want, "{query}");
        }
    }

    #[test]
    fn nothing_to_add_leaves_the_query_alone() {
        let e = q("sum(rate(x[5m]))");
        assert_eq!(inject(&e, None, &[]), Ok(e));
    }

    #[test]
    fn hostile_values_stay_values() {
        let hostile = "a\"} or vector(1) #";
        let out = rewrite("up", Some(("namespace", hostile)), &[eq("k", hostile)]);
        assert_eq!(
            out,
            r#"up{k="a\"} or vector(1) #",namespace="a\"} or vector(1) #"}"#
        );
        let again = q(&out);
        let Expr::VectorSelector(vs) = &again else {
            panic!("shape changed: {again:?}");
        };
        assert_eq!(vs.matchers.matchers[0].value, hostile);
        assert_eq!(vs.matchers.matchers[1].value, hostile);
    }

    #[test]
    fn render_round_trips_escapes_and_unicode() {
        for value in [
            "plain",
            "quote\"quote",
            "back\\slash",
            "trailing\\",
            "new\nline",
            "cr\rtab\t",
            "nul\0bell\u{7}del\u{7f}",
            "é☃😀\u{2028}",
            "'single'`back`",
            "}{)(][",
            "",
        ] {
            let rewritten = match inject(
                &q("rate(x[5m])"),
                Some(("namespace", value)),
                &[
                    eq("k", value),
                    is_in("i", &[value, "other"]),
                    Requirement::NotIn {
                        key: "n".into(),
                        values: vec![value.into()],
                    },
                ],
            ) {
                Ok(e) => e,
                Err(e) => panic!("{value:?}: {e}"),
            };
            let text = render(&rewritten);
            let again = match parse(&text) {
                Ok(e) => e,
                Err(e) => panic!("{value:?} rendered as {text:?}, which does not parse: {e}"),
            };
            assert_eq!(again, rewritten, "{value:?} via {text:?}");
            assert_eq!(render(&again), text);
        }
    }

    #[test]
    fn in_regexes_match_exactly_the_values() {
        let values = ["a.b", "x|y", "(", "^$", "a\nb", "*", "", "é"];
        let Ok(m) = matcher_for(&is_in("k", &values)) else {
            panic!("regex did not build");
        };
        for v in values {
            assert!(m.is_match(v), "{v:?}");
        }
        for v in [
            "axb", "x", "y", "x|", "a", "b", "a.bb", "ab", "\n", "a\nbc", "**", "e",
        ] {
            assert!(!m.is_match(v), "{v:?}");
        }
        let Ok(m) = matcher_for(&Requirement::NotIn {
            key: "k".into(),
            values: vec!["a".into()],
        }) else {
            panic!("regex did not build");
        };
        assert!(!m.is_match("a") && m.is_match("aa") && m.is_match(""));
    }

    #[test]
    fn bad_labels_and_requirements_are_refused() {
        let e = q("up");
        for label in ["", "1a", "a-b", "__name__", "__x", "é"] {
            assert!(
                matches!(
                    inject(&e, Some((label, "v")), &[]),
                    Err(Error::Label { .. })
                ),
                "{label:?}"
            );
        }
        assert!(matches!(
            inject(&e, None, &[is_in("k", &[])]),
            Err(Error::Label { .. })
        ));
        assert!(matches!(
            inject(&e, None, &[eq("__name__", "x")]),
            Err(Error::Label { .. })
        ));
        assert!(matches!(
            inject(&e, None, &[eq("", "x")]),
            Err(Error::Label { .. })
        ));
    }

    #[test]
    fn queries_that_cannot_be_served_or_printed_are_refused() {
        // A range vector is not a value per series.
        let e = parse_err("x[5m]");
        assert!(e.to_string().contains("returns a matrix"), "{e}");
        let e = parse_err(r#""text""#);
        assert!(e.to_string().contains("returns a string"), "{e}");
        // promql-parser prints `@ -1.5` as `@ 0.000`.
        let e = parse_err("x @ -1.5");
        assert!(e.to_string().contains("before 1970"), "{e}");
        let e = parse_err("rate(x[5m:1m] @ -100)");
        assert!(e.to_string().contains("before 1970"), "{e}");
        // What it does print right is kept.
        q("x @ 1.5");
        q("x @ start()");
        q("rate(x[5m:1m] @ 0)");
    }

    #[test]
    fn printing_quirks_we_rely_on() {
        // Pinned so that an upgrade of promql-parser that changes them fails here first.
        let printed = |query: &str| match promql_parser::parser::parse(query) {
            Ok(e) => render(&e),
            Err(e) => panic!("{query:?}: {e}"),
        };
        // Plain matchers print sorted, `or` groups as written.
        assert_eq!(printed(r#"x{b="1",a="2"}"#), r#"x{a="2",b="1"}"#);
        assert_eq!(
            printed(r#"x{b="1" or a="2",c="3"}"#),
            r#"x{b="1" or a="2", c="3"}"#
        );
        // Values are escaped (promql-parser >= 0.10).
        assert_eq!(printed(r#"x{a="\"\\\n"}"#), r#"x{a="\"\\\n"}"#);
        assert_eq!(printed("x @ 1.2345"), "x @ 1.235");
        assert_eq!(printed("sum(x) by (a)"), "sum by (a) (x)");
        assert_eq!(
            printed("x[90s:] offset 1m @ end()"),
            "x[1m30s:] @ end() offset 1m"
        );
        assert_eq!(
            printed("x @ -1.5"),
            "x @ 0.000",
            "if this is fixed, lift the check_at refusal"
        );
    }

    #[test]
    fn parse_errors_have_positions() {
        let position = |query: &str| match parse_err(query) {
            Error::Parse { position, .. } => position,
            other => panic!("{query:?}: {other}"),
        };
        assert_eq!(position("x $ y"), "line 1, column 3");
        assert_eq!(position("sum(x)\n  + rate(y[5x])"), "line 2, column 13");
        assert_eq!(position("x{a=\"\\q\"}"), "line 1, column 7");
        assert_eq!(position("x +\n y +\n )"), "line 3, column 2");
        assert_eq!(
            position("sum(rate(x[5m])"),
            "the end of the query (line 1, column 16)"
        );
        assert_eq!(
            position("foo{a=\"b\""),
            "the end of the query (line 1, column 10)"
        );
        assert_eq!(position("rate(x[5m]) +"), "line 1, column 13 or later");
        assert_eq!(position("foo bar"), "line 1, column 5 or later");
        assert_eq!(position(""), "line 1, column 1");
        let e = parse_err("sum(x) by (a) + é");
        assert!(
            e.to_string()
                .starts_with("invalid PromQL at line 1, column 17"),
            "{e}"
        );
    }
}
