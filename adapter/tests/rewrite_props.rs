//! Property tests for selector parsing and query rewriting: inputs here are adversarial (the HPA
//! relays whatever a user put in a label selector), so the invariants are checked on generated
//! selectors, keys, values and query shapes rather than on examples.

#[path = "support/invariants.rs"]
mod invariants;

use gpuscale_adapter::promql;
use gpuscale_adapter::selector::{self, Requirement};
use proptest::prelude::*;

/// A Kubernetes qualified-name name part (valid by construction).
fn k8s_name() -> BoxedStrategy<String> {
    "[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?".boxed()
}

/// A Kubernetes label key: a name, or a DNS-subdomain prefix, '/', and a name.
fn k8s_key() -> BoxedStrategy<String> {
    prop_oneof![
        k8s_name(),
        (
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}",
            k8s_name()
        )
            .prop_map(|(prefix, name)| format!("{prefix}/{name}")),
        Just("app.kubernetes.io/name".to_string()),
        Just("in".to_string()),
        Just("notin".to_string()),
    ]
    .boxed()
}

/// A Kubernetes label value: empty or name-shaped.
fn k8s_value() -> BoxedStrategy<String> {
    prop_oneof![Just(String::new()), k8s_name()].boxed()
}

/// Values no valid selector can carry but that `inject` must still keep inert.
fn hostile_value() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        "[\"'`\\\\{}()\\[\\]|.*+?^$#=~!, \n\r\ta-z0-9é☃😀\u{0}\u{7f}\u{2028}]{0,24}",
        Just(r#"a"} or vector(1) #"#.to_string()),
        Just(r#"\"#.to_string()),
        Just(r#"""#.to_string()),
        Just("} or {".to_string()),
        Just(r"\n".to_string()),
        Just(")|.*|(".to_string()),
    ]
    .boxed()
}

fn requirement(
    key: BoxedStrategy<String>,
    value: BoxedStrategy<String>,
) -> impl Strategy<Value = Requirement> {
    let values = proptest::collection::vec(value.clone(), 1..5);
    prop_oneof![
        (key.clone(), value.clone()).prop_map(|(key, value)| Requirement::Equals { key, value }),
        (key.clone(), value).prop_map(|(key, value)| Requirement::NotEquals { key, value }),
        (key.clone(), values.clone()).prop_map(|(key, values)| Requirement::In { key, values }),
        (key.clone(), values).prop_map(|(key, values)| Requirement::NotIn { key, values }),
        key.clone().prop_map(|key| Requirement::Exists { key }),
        key.prop_map(|key| Requirement::DoesNotExist { key }),
    ]
}

fn namespace() -> impl Strategy<Value = Option<(String, String)>> {
    proptest::option::of(("[a-zA-Z][a-zA-Z0-9_]{0,12}", hostile_value()))
}

fn query() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(invariants::QUERIES)
}

/// One way to spell a requirement, with the whitespace Kubernetes tolerates.
fn spell(r: &Requirement, pad: &str, double: bool) -> String {
    let list = |values: &[String]| values.join(&format!("{pad},{pad}"));
    match r {
        Requirement::Equals { key, value } => {
            format!("{key}{pad}{}{pad}{value}", if double { "==" } else { "=" })
        }
        Requirement::NotEquals { key, value } => format!("{key}{pad}!={pad}{value}"),
        Requirement::In { key, values } => format!("{key} in{pad}({pad}{}{pad})", list(values)),
        Requirement::NotIn { key, values } => {
            format!("{key} notin{pad}({pad}{}{pad})", list(values))
        }
        Requirement::Exists { key } => key.clone(),
        Requirement::DoesNotExist { key } => format!("!{pad}{key}"),
    }
}

/// What `selector::parse` must return for requirements spelled out: sorted by key (stably),
/// value sets sorted and de-duplicated.
fn normalized(mut reqs: Vec<Requirement>) -> Vec<Requirement> {
    for r in &mut reqs {
        if let Requirement::In { values, .. } | Requirement::NotIn { values, .. } = r {
            values.sort();
            values.dedup();
        }
    }
    reqs.sort_by(|a, b| a.key().cmp(b.key()));
    reqs
}

fn parsed(query: &str) -> Result<promql_parser::parser::Expr, TestCaseError> {
    promql::parse(query).map_err(|e| TestCaseError::fail(format!("{query:?}: {e}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any requirements (hostile values included) on any query shape keep every invariant.
    #[test]
    fn rewriting_keeps_every_invariant(
        query in query(),
        namespace in namespace(),
        reqs in proptest::collection::vec(requirement(k8s_key(), hostile_value()), 0..6),
        probes in proptest::collection::vec(hostile_value(), 0..8),
    ) {
        let original = parsed(query)?;
        let ns = namespace.as_ref().map(|(l, v)| (l.as_str(), v.as_str()));
        if let Err(e) = invariants::check_rewrite(&original, ns, &reqs, &probes) {
            return Err(TestCaseError::fail(format!("{query:?} with {ns:?} {reqs:?}: {e}")));
        }
    }

    /// Valid selectors, however spaced, parse to their requirements, and rewriting with what
    /// they parse to keeps every invariant.
    #[test]
    fn valid_selectors_parse_and_rewrite(
        query in query(),
        reqs in proptest::collection::vec(requirement(k8s_key(), k8s_value()), 1..6),
        pad in "[ \t\n]{0,2}",
        double in any::<bool>(),
    ) {
        let text = reqs
            .iter()
            .map(|r| spell(r, &pad, double))
            .collect::<Vec<_>>()
            .join(&format!("{pad},{pad}"));
        let got = selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&got, &normalized(reqs), "{:?}", text);

        let canonical = got.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        prop_assert_eq!(selector::parse(&canonical), Ok(got.clone()), "{:?}", canonical);

        let original = parsed(query)?;
        if let Err(e) = invariants::check_rewrite(&original, Some(("namespace", "ns-1")), &got, &[]) {
            return Err(TestCaseError::fail(format!("{query:?} with {text:?}: {e}")));
        }
    }

    /// Any Unicode input: an answer, never a panic; and an answer that says where.
    #[test]
    fn selector_parse_never_panics(input in any::<String>()) {
        if let Err(e) = selector::parse(&input) {
            prop_assert!(e.message.contains("position") || e.message.contains("bytes long"), "{}", e);
        }
    }

    /// Input made of selector tokens, so that the parser's deeper states are reached.
    #[test]
    fn selector_parse_never_panics_on_near_selectors(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("in"), Just("notin"), Just("="), Just("=="), Just("!="), Just("!"),
                Just("("), Just(")"), Just(","), Just(" "), Just(">"), Just("<"), Just("a"),
                Just("b.c/d"), Just("-"), Just("é"), Just("\t"), Just("x1"), Just("/"),
            ],
            0..24,
        ),
    ) {
        let input = parts.concat();
        match selector::parse(&input) {
            Ok(reqs) => {
                // What parses must survive its own canonical spelling.
                let canonical = reqs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
                prop_assert_eq!(selector::parse(&canonical), Ok(reqs), "{:?}", input);
            }
            Err(e) => prop_assert!(e.message.contains("position"), "{}", e),
        }
    }

    /// Any key either becomes a usable Prometheus label or is refused with a label error.
    #[test]
    fn any_key_maps_to_a_label_or_an_error(key in any::<String>()) {
        let label = promql::sanitize(&key);
        prop_assert_eq!(&label, &invariants::reference_label(&key));
        let original = parsed("up")?;
        let reqs = [Requirement::Exists { key: key.clone() }];
        match promql::inject(&original, None, &reqs) {
            Ok(_) => {
                prop_assert!(!label.is_empty() && !label.starts_with("__"), "{:?}", label);
                if let Err(e) = invariants::check_rewrite(&original, None, &reqs, &[]) {
                    return Err(TestCaseError::fail(e));
                }
            }
            Err(promql::Error::Label { .. }) => {
                prop_assert!(label.is_empty() || label.starts_with("__"), "{:?}", label);
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
        }
    }

    /// Every valid Kubernetes key maps to a valid classic Prometheus label name.
    #[test]
    fn valid_keys_always_map_to_valid_labels(key in k8s_key()) {
        let label = promql::sanitize(&key);
        let mut chars = label.chars();
        prop_assert!(chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_'));
        prop_assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'));
        prop_assert!(!label.starts_with("__"), "{:?}", label);
    }
}

#[test]
fn every_listed_query_is_valid() {
    for query in invariants::QUERIES {
        if let Err(e) = promql::parse(query) {
            panic!("{query:?}: {e}");
        }
    }
}
