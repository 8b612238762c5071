//! Kubernetes label selectors (the `labelSelector` query parameter the HPA sends), parsed and
//! validated the way `k8s.io/apimachinery/pkg/labels` does it, so that what the API server
//! would accept we accept and what it would reject we reject with a message saying where.

use std::fmt;

/// Longest selector accepted. The HPA sends a few hundred bytes at most; anything far larger is
/// a mistake or an attack, and it would be echoed back in errors and logs.
pub const MAX_SELECTOR_BYTES: usize = 4096;

/// Longest label value (and name part of a key), as Kubernetes limits them.
const MAX_NAME_BYTES: usize = 63;

/// Longest DNS-1123 subdomain, the optional prefix of a key.
const MAX_PREFIX_BYTES: usize = 253;

/// How much of an over-long selector an error repeats.
const ECHO_CHARS: usize = 64;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value`, `key==value`
    Equals { key: String, value: String },
    /// `key!=value`
    NotEquals { key: String, value: String },
    /// `key in (a,b)`
    In { key: String, values: Vec<String> },
    /// `key notin (a,b)`
    NotIn { key: String, values: Vec<String> },
    /// `key`
    Exists { key: String },
    /// `!key`
    DoesNotExist { key: String },
}

impl Requirement {
    /// The Kubernetes label key this requirement constrains.
    pub fn key(&self) -> &str {
        match self {
            Requirement::Equals { key, .. }
            | Requirement::NotEquals { key, .. }
            | Requirement::In { key, .. }
            | Requirement::NotIn { key, .. }
            | Requirement::Exists { key }
            | Requirement::DoesNotExist { key } => key,
        }
    }
}

/// The canonical Kubernetes spelling (`labels.Requirement.String()`), so a parsed selector can be
/// logged, compared and used as a cache key independent of the client's spacing.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Equals { key, value } => write!(f, "{key}={value}"),
            Requirement::NotEquals { key, value } => write!(f, "{key}!={value}"),
            Requirement::In { key, values } => write!(f, "{key} in ({})", values.join(",")),
            Requirement::NotIn { key, values } => write!(f, "{key} notin ({})", values.join(",")),
            Requirement::Exists { key } => write!(f, "{key}"),
            Requirement::DoesNotExist { key } => write!(f, "!{key}"),
        }
    }
}

/// A selector that cannot be used; the message says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {message}")]
pub struct SelectorError {
    /// The selector as received (cut short when it is over-long).
    pub selector: String,
    /// What is wrong, with the 1-based character position where it was found.
    pub message: String,
}

/// Parses a selector; the empty string selects everything (no requirements).
///
/// The grammar and validation are those of `labels.Parse` in Kubernetes:
/// `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`, `key`,
/// `!key`, separated by commas, with spaces, tabs and newlines allowed between tokens. Keys are
/// qualified names (`[prefix/]name`), values are empty or label-value shaped, both as
/// Kubernetes validates them. As in Kubernetes, `key in ()` means the single empty value and
/// `key=` means `key` equal to the empty string. The result is sorted by key and each value set
/// is sorted and de-duplicated, as Kubernetes does, so equal selectors give equal results.
///
/// Differences, on purpose: `>` and `<` are rejected (a Prometheus label matcher cannot compare
/// numbers), and empty items in a value list are accepted wherever they appear (`(a,,)`), where
/// Kubernetes' parser rejects a few placements by accident of its implementation.
pub fn parse(selector: &str) -> Result<Vec<Requirement>, SelectorError> {
    let fail = |message: String| SelectorError {
        selector: echo(selector),
        message,
    };
    if selector.len() > MAX_SELECTOR_BYTES {
        return Err(fail(format!(
            "selector is {} bytes long; at most {MAX_SELECTOR_BYTES} are accepted",
            selector.len()
        )));
    }
    let mut requirements = Parser::new(selector).selector().map_err(fail)?;
    requirements.sort_by(|a, b| a.key().cmp(b.key()));
    Ok(requirements)
}

/// The selector as errors repeat it: whole unless it is over-long.
fn echo(selector: &str) -> String {
    if selector.chars().count() <= ECHO_CHARS {
        return selector.to_string();
    }
    let mut cut: String = selector.chars().take(ECHO_CHARS).collect();
    cut.push('…');
    cut
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Any run of characters that are neither whitespace nor one of `=!(),<>`; `in` and `notin`
    /// are keywords only where an operator is expected, as in Kubernetes.
    Ident(String),
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Open,
    Close,
    Comma,
    Greater,
    Less,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Bang => f.write_str("'!'"),
            Tok::Eq => f.write_str("'='"),
            Tok::DoubleEq => f.write_str("'=='"),
            Tok::NotEq => f.write_str("'!='"),
            Tok::Open => f.write_str("'('"),
            Tok::Close => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
            Tok::Greater => f.write_str("'>'"),
            Tok::Less => f.write_str("'<'"),
            Tok::End => f.write_str("the end of the selector"),
        }
    }
}

/// A token and the 1-based character position where it starts.
struct Token {
    tok: Tok,
    pos: usize,
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a selector into tokens the way the Kubernetes lexer does (longest operator wins).
fn tokenize(input: &str) -> Vec<Token> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_whitespace(c) {
            i += 1;
            continue;
        }
        let pos = i + 1;
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('=', Some('=')) => (Tok::DoubleEq, 2),
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('=', _) => (Tok::Eq, 1),
            ('!', _) => (Tok::Bang, 1),
            ('(', _) => (Tok::Open, 1),
            (')', _) => (Tok::Close, 1),
            (',', _) => (Tok::Comma, 1),
            ('>', _) => (Tok::Greater, 1),
            ('<', _) => (Tok::Less, 1),
            _ => {
                let start = i;
                let mut end = i;
                while end < chars.len() && !is_whitespace(chars[end]) && !is_special(chars[end]) {
                    end += 1;
                }
                (Tok::Ident(chars[start..end].iter().collect()), end - start)
            }
        };
        tokens.push(Token { tok, pos });
        i += len;
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: chars.len() + 1,
    });
    tokens
}

/// Recursive descent over the token list, one requirement at a time, as `labels.Parser` does.
struct Parser {
    tokens: Vec<Token>,
    next: usize,
}

enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
}

impl Parser {
    fn new(input: &str) -> Self {
        Parser {
            tokens: tokenize(input),
            next: 0,
        }
    }

    /// The next token, not consumed. The list always ends with `End`, which is never passed.
    fn peek(&self) -> (&Tok, usize) {
        let token = &self.tokens[self.next.min(self.tokens.len() - 1)];
        (&token.tok, token.pos)
    }

    fn bump(&mut self) -> (Tok, usize) {
        let at = self.next.min(self.tokens.len() - 1);
        if at < self.tokens.len() - 1 {
            self.next = at + 1;
        }
        (self.tokens[at].tok.clone(), self.tokens[at].pos)
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        if *self.peek().0 == Tok::End {
            return Ok(requirements);
        }
        loop {
            requirements.push(self.requirement()?);
            match self.bump() {
                (Tok::End, _) => return Ok(requirements),
                (Tok::Comma, _) => {}
                (other, pos) => {
                    return Err(format!(
                        "found {other} at position {pos}, expected ',' or the end of the selector"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (negated, (tok, pos)) = match self.bump() {
            (Tok::Bang, _) => (true, self.bump()),
            other => (false, other),
        };
        let key = match tok {
            Tok::Ident(key) => key,
            other if negated => {
                return Err(format!(
                    "found {other} at position {pos}, expected a label key after '!'"
                ));
            }
            other => {
                return Err(format!(
                    "found {other} at position {pos}, expected a label key or '!'"
                ));
            }
        };
        validate_key(&key)
            .map_err(|why| format!("invalid key {key:?} at position {pos}: {why}"))?;
        if negated {
            let (next, pos) = self.peek();
            if !matches!(next, Tok::End | Tok::Comma) {
                return Err(format!(
                    "found {next} at position {pos}: '!{key}' (key does not exist) takes no \
                     operator or value"
                ));
            }
            return Ok(Requirement::DoesNotExist { key });
        }
        if matches!(self.peek().0, Tok::End | Tok::Comma) {
            return Ok(Requirement::Exists { key });
        }
        let op = match self.bump() {
            (Tok::Eq | Tok::DoubleEq, _) => Op::Equals,
            (Tok::NotEq, _) => Op::NotEquals,
            (Tok::Ident(word), _) if word == "in" => Op::In,
            (Tok::Ident(word), _) if word == "notin" => Op::NotIn,
            (op @ (Tok::Greater | Tok::Less), pos) => {
                return Err(format!(
                    "operator {op} at position {pos} is not supported: Prometheus label matchers \
                     cannot compare numbers"
                ));
            }
            (other, pos) => {
                return Err(format!(
                    "found {other} at position {pos}, expected one of 'in', 'notin', '=', '==', '!='"
                ));
            }
        };
        Ok(match op {
            Op::Equals => Requirement::Equals {
                key,
                value: self.exact_value()?,
            },
            Op::NotEquals => Requirement::NotEquals {
                key,
                value: self.exact_value()?,
            },
            Op::In => {
                let values = self.value_set(&key)?;
                Requirement::In { key, values }
            }
            Op::NotIn => {
                let values = self.value_set(&key)?;
                Requirement::NotIn { key, values }
            }
        })
    }

    /// The value after `=`, `==` or `!=`; nothing before `,` or the end means the empty value.
    fn exact_value(&mut self) -> Result<String, String> {
        if matches!(self.peek().0, Tok::End | Tok::Comma) {
            return Ok(String::new());
        }
        match self.bump() {
            (Tok::Ident(value), pos) => {
                validate_value(&value)
                    .map_err(|why| format!("invalid value {value:?} at position {pos}: {why}"))?;
                Ok(value)
            }
            (other, pos) => Err(format!("found {other} at position {pos}, expected a value")),
        }
    }

    /// `( [v] {, [v]} )`: each item may be empty, which is the empty value; the result is sorted
    /// and de-duplicated, as Kubernetes keeps values in a set.
    fn value_set(&mut self, key: &str) -> Result<Vec<String>, String> {
        match self.bump() {
            (Tok::Open, _) => {}
            (other, pos) => {
                return Err(format!(
                    "found {other} at position {pos}, expected '(' after 'in' or 'notin'"
                ));
            }
        }
        let mut values = Vec::new();
        let mut item: Option<String> = None;
        loop {
            match self.bump() {
                (Tok::Ident(value), pos) if item.is_none() => {
                    validate_value(&value).map_err(|why| {
                        format!("invalid value {value:?} for key {key:?} at position {pos}: {why}")
                    })?;
                    item = Some(value);
                }
                (Tok::Comma, _) => values.push(item.take().unwrap_or_default()),
                (Tok::Close, _) => {
                    values.push(item.take().unwrap_or_default());
                    break;
                }
                (other, pos) if item.is_some() => {
                    return Err(format!(
                        "found {other} at position {pos}, expected ',' or ')' after a value"
                    ));
                }
                (other, pos) => {
                    return Err(format!(
                        "found {other} at position {pos}, expected a value, ',' or ')'"
                    ));
                }
            }
        }
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// Kubernetes' `IsQualifiedName`: an optional DNS-1123 subdomain prefix and `/`, then a name of at
/// most 63 characters of `[A-Za-z0-9._-]` that starts and ends alphanumeric.
fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        None => (None, key),
        Some((_, rest)) if rest.contains('/') => {
            return Err(
                "a qualified name is an optional DNS subdomain prefix and '/' followed by \
                 a name (e.g. 'example.com/MyName'); it has more than one '/'"
                    .into(),
            );
        }
        Some((prefix, name)) => (Some(prefix), name),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("prefix part must be non-empty".into());
        }
        validate_subdomain(prefix).map_err(|why| format!("prefix part {why}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "name part must be no more than {MAX_NAME_BYTES} characters"
        ));
    }
    if !is_name(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and \
             must start and end with an alphanumeric character (e.g. 'MyName', 'my.name' or \
             '123-abc')"
                .into(),
        );
    }
    Ok(())
}

/// Kubernetes' `IsValidLabelValue`: empty, or at most 63 characters of `[A-Za-z0-9._-]` that start
/// and end alphanumeric.
fn validate_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("must be no more than {MAX_NAME_BYTES} characters"));
    }
    if !value.is_empty() && !is_name(value) {
        return Err(
            "a valid label value must be an empty string or consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric character \
             (e.g. 'MyValue', 'my_value' or '12345')"
                .into(),
        );
    }
    Ok(())
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the shape of label names and values.
fn is_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Kubernetes' `IsDNS1123Subdomain`: dot-separated lowercase labels of `[a-z0-9-]`, each starting
/// and ending alphanumeric, 253 characters at most.
fn validate_subdomain(s: &str) -> Result<(), String> {
    if s.len() > MAX_PREFIX_BYTES {
        return Err(format!(
            "must be no more than {MAX_PREFIX_BYTES} characters"
        ));
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                (first.is_ascii_lowercase() || first.is_ascii_digit())
                    && (last.is_ascii_lowercase() || last.is_ascii_digit())
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            }
            _ => false,
        }
    };
    if !s.split('.').all(label_ok) {
        return Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
             characters, '-' or '.', and must start and end with an alphanumeric character \
             (e.g. 'example.com')"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(key: &str, value: &str) -> Requirement {
        Requirement::Equals {
            key: key.into(),
            value: value.into(),
        }
    }
    fn ne(key: &str, value: &str) -> Requirement {
        Requirement::NotEquals {
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
    fn not_in(key: &str, values: &[&str]) -> Requirement {
        Requirement::NotIn {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }
    fn exists(key: &str) -> Requirement {
        Requirement::Exists { key: key.into() }
    }
    fn absent(key: &str) -> Requirement {
        Requirement::DoesNotExist { key: key.into() }
    }

    #[track_caller]
    fn ok(selector: &str) -> Vec<Requirement> {
        match parse(selector) {
            Ok(r) => r,
            Err(e) => panic!("{selector:?} should parse: {e}"),
        }
    }

    #[track_caller]
    fn bad(selector: &str) -> String {
        match parse(selector) {
            Ok(r) => panic!("{selector:?} should be rejected, got {r:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_selects_everything() {
        assert_eq!(ok(""), vec![]);
        assert_eq!(ok("  \t\r\n"), vec![]);
    }

    #[test]
    fn every_operator() {
        assert_eq!(ok("x=a"), vec![eq("x", "a")]);
        assert_eq!(ok("x==a"), vec![eq("x", "a")]);
        assert_eq!(ok("x!=a"), vec![ne("x", "a")]);
        assert_eq!(ok("x in (a,b)"), vec![is_in("x", &["a", "b"])]);
        assert_eq!(ok("x notin (a,b)"), vec![not_in("x", &["a", "b"])]);
        assert_eq!(ok("x"), vec![exists("x")]);
        assert_eq!(ok("!x"), vec![absent("x")]);
    }

    #[test]
    fn conjunctions_are_sorted_by_key_like_kubernetes() {
        assert_eq!(
            ok("x=a,y=b,z=c"),
            vec![eq("x", "a"), eq("y", "b"), eq("z", "c")]
        );
        assert_eq!(ok("x=a,a=x"), ok("a=x,x=a"));
        assert_eq!(
            ok("x notin (abc,,def),bar,z in (),w"),
            vec![
                exists("bar"),
                exists("w"),
                not_in("x", &["", "abc", "def"]),
                is_in("z", &[""]),
            ]
        );
        assert_eq!(ok("x,y in (a)"), vec![exists("x"), is_in("y", &["a"])]);
    }

    /// The good cases of `TestSelectorParse` and `TestSetSelectorParser` in Kubernetes
    /// (`k8s.io/apimachinery/pkg/labels/selector_test.go`), less `>`/`<`.
    #[test]
    fn kubernetes_good_cases() {
        assert_eq!(ok("x!=a,y=b"), vec![ne("x", "a"), eq("y", "b")]);
        assert_eq!(ok("x="), vec![eq("x", "")]);
        assert_eq!(ok("x= "), vec![eq("x", "")]);
        assert_eq!(ok("x=,z= "), vec![eq("x", ""), eq("z", "")]);
        assert_eq!(ok("x= ,z= "), vec![eq("x", ""), eq("z", "")]);
        assert_eq!(ok("\rx"), vec![exists("x")]);
        assert_eq!(
            ok("this-is-a-dns.domain.com/key-with-dash"),
            vec![exists("this-is-a-dns.domain.com/key-with-dash")]
        );
        assert_eq!(
            ok("this-is-another-dns.domain.com/key-with-dash in (so,what)"),
            vec![is_in(
                "this-is-another-dns.domain.com/key-with-dash",
                &["so", "what"]
            )]
        );
        assert_eq!(
            ok("0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)"),
            vec![not_in(
                "0.1.2.domain/99",
                &["10.10.100.1", "tick.tack.clock"]
            )]
        );
        assert_eq!(ok("foo  in\t (abc)"), vec![is_in("foo", &["abc"])]);
        assert_eq!(ok("x notin\n (abc)"), vec![not_in("x", &["abc"])]);
        assert_eq!(
            ok("x  notin\t\t\t(abc,def)"),
            vec![not_in("x", &["abc", "def"])]
        );
        assert_eq!(ok("x in (abc,)"), vec![is_in("x", &["", "abc"])]);
        assert_eq!(ok("x in ()"), vec![is_in("x", &[""])]);
        assert_eq!(ok("x notin ( )"), vec![not_in("x", &[""])]);
        assert_eq!(ok("x notin (, a)"), vec![not_in("x", &["", "a"])]);
        assert_eq!(ok("a "), vec![exists("a")]);
        assert_eq!(
            ok("a in (x,y,notin, z,in)"),
            vec![is_in("a", &["in", "notin", "x", "y", "z"])]
        );
        assert_eq!(ok("notin=in"), vec![eq("notin", "in")]);
        assert_eq!(ok("in in (in)"), vec![is_in("in", &["in"])]);
        assert_eq!(
            ok("x=a,y!=b,z in (h,i,j)"),
            vec![eq("x", "a"), ne("y", "b"), is_in("z", &["h", "i", "j"])]
        );
    }

    /// The bad cases of the same Kubernetes tests.
    #[test]
    fn kubernetes_bad_cases() {
        for selector in [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,,y",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
        ] {
            bad(selector);
        }
    }

    #[test]
    fn value_sets_are_sorted_and_deduplicated() {
        assert_eq!(ok("x in (b,a,b)"), vec![is_in("x", &["a", "b"])]);
        assert_eq!(ok("x in (a,,)"), vec![is_in("x", &["", "a"])]);
        assert_eq!(ok("x in (,)"), vec![is_in("x", &[""])]);
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = bad("x=a,y=b c");
        assert!(e.contains("found \"c\" at position 9"), "{e}");
        let e = bad("x=a,");
        assert!(e.contains("the end of the selector at position 5"), "{e}");
        assert!(e.contains("expected a label key"), "{e}");
        let e = bad("x in a");
        assert!(e.contains("found \"a\" at position 6, expected '('"), "{e}");
        let e = bad("x in (a");
        assert!(e.contains("the end of the selector at position 8"), "{e}");
        let e = bad("x in (a b)");
        assert!(
            e.contains("found \"b\" at position 9, expected ',' or ')'"),
            "{e}"
        );
        let e = bad("x = (a)");
        assert!(
            e.contains("found '(' at position 5, expected a value"),
            "{e}"
        );
        let e = bad("x ~ a");
        assert!(
            e.contains("found \"~\" at position 3, expected one of 'in'"),
            "{e}"
        );
        let e = bad("!x=a");
        assert!(e.contains("position 3"), "{e}");
        assert!(e.contains("takes no operator"), "{e}");
        let e = bad("!");
        assert!(e.contains("expected a label key after '!'"), "{e}");
        let e = bad("x>1");
        assert!(e.contains("'>' at position 2 is not supported"), "{e}");
        let e = bad("a,x<1");
        assert!(e.contains("'<' at position 4 is not supported"), "{e}");
        let e = bad("x==a==b");
        assert!(e.contains("found '==' at position 5"), "{e}");
        // Positions count characters, not bytes.
        let e = bad("é=a b");
        assert!(e.contains("at position 1"), "{e}");
        let e = bad("x=a,é");
        assert!(e.contains("invalid key \"é\" at position 5"), "{e}");
    }

    #[test]
    fn keys_are_validated_like_kubernetes() {
        ok(&"a".repeat(63));
        let e = bad(&"a".repeat(64));
        assert!(
            e.contains("name part must be no more than 63 characters"),
            "{e}"
        );
        let prefix = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        ok(&format!("{prefix}/x"));
        let e = bad(&format!("{prefix}c/x"));
        assert!(e.contains("prefix part must be no more than 253"), "{e}");
        let e = bad("/x");
        assert!(e.contains("prefix part must be non-empty"), "{e}");
        let e = bad("example.com/");
        assert!(e.contains("name part must be non-empty"), "{e}");
        let e = bad("a/b/c");
        assert!(e.contains("more than one '/'"), "{e}");
        let e = bad("Example.com/x");
        assert!(e.contains("lowercase RFC 1123 subdomain"), "{e}");
        for good in [
            "a",
            "A",
            "1",
            "a.b",
            "a-b",
            "a_b",
            "MyName",
            "123-abc",
            "app.kubernetes.io/name",
            "k8s.io/x",
            "a-1.b-2/C_3",
        ] {
            assert_eq!(ok(good), vec![exists(good)], "{good}");
        }
        for bad_key in [
            "-a",
            "a-",
            ".a",
            "a.",
            "_a",
            "a_",
            "a b=c",
            "a..b/c/",
            "-a.com/x",
            "a-.com/x",
            "a..com/x",
            "a_b.com/x",
            "a:b",
            "a@b",
            "a\"b",
            "a{b}",
            "é",
        ] {
            bad(bad_key);
        }
    }

    #[test]
    fn values_are_validated_like_kubernetes() {
        ok(&format!("x={}", "v".repeat(63)));
        let e = bad(&format!("x={}", "v".repeat(64)));
        assert!(e.contains("no more than 63"), "{e}");
        let e = bad(&format!("x in (a,{})", "v".repeat(64)));
        assert!(e.contains("no more than 63"), "{e}");
        for good in ["x=A", "x=1", "x=a.b-c_d", "x=MyValue", "x=12345"] {
            ok(good);
        }
        for bad_value in [
            "x=-a",
            "x=a-",
            "x=_a",
            "x=a.",
            "x=a\"b",
            "x=a}",
            "x=é",
            "x in (a,-b)",
            "x!=#",
            "x=a/b",
            "x=a:b",
            "x=a\\b",
        ] {
            let e = bad(bad_value);
            assert!(e.contains("invalid value"), "{bad_value}: {e}");
        }
    }

    #[test]
    fn adversarial_values_never_get_through() {
        for s in [
            "x=a\"} or vector(1) #",
            "x=a\"}",
            "x in (a\"})",
            "x=a\nb",
            "x='a'",
            "x=`a`",
        ] {
            bad(s);
        }
    }

    #[test]
    fn over_long_selectors_are_rejected_and_not_echoed_whole() {
        let long = format!("x={}", "a,".repeat(3000));
        let err = match parse(&long) {
            Ok(r) => panic!("accepted {} requirements", r.len()),
            Err(e) => e,
        };
        assert!(err.message.contains("at most 4096"), "{err}");
        assert!(err.selector.chars().count() <= 65, "{}", err.selector);
        // Just under the limit still parses.
        let fits = format!("a{}", ",a".repeat(2047));
        assert!(fits.len() <= MAX_SELECTOR_BYTES);
        assert_eq!(ok(&fits), vec![exists("a"); 2048]);
    }

    #[test]
    fn canonical_spelling_parses_back() {
        let reqs = ok("b notin (y,x),  a in (q), !c, d, e==f, g!=h, i=");
        let canonical: Vec<String> = reqs.iter().map(ToString::to_string).collect();
        assert_eq!(
            canonical.join(","),
            "a in (q),b notin (x,y),!c,d,e=f,g!=h,i="
        );
        assert_eq!(ok(&canonical.join(",")), reqs);
    }
}
