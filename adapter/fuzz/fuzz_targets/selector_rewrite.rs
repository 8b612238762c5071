//! Fuzzes label selector parsing and query rewriting end to end: arbitrary bytes as a
//! `labelSelector`, and as raw values no valid selector could carry, rewritten into each of a
//! fixed set of query shapes, rendered and parsed back, with every invariant checked.
#![no_main]

#[path = "../../tests/support/invariants.rs"]
mod invariants;

use gpuscale_adapter::promql;
use gpuscale_adapter::selector::{self, Requirement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let query = invariants::QUERIES[usize::from(pick) % invariants::QUERIES.len()];
    let original = match promql::parse(query) {
        Ok(expr) => expr,
        Err(e) => panic!("fixed query {query:?} no longer parses: {e}"),
    };
    let text = String::from_utf8_lossy(rest);

    // The input as the HPA would relay it.
    if let Ok(requirements) = selector::parse(&text) {
        if let Err(e) =
            invariants::check_rewrite(&original, Some(("namespace", "team-a")), &requirements, &[])
        {
            panic!("selector {text:?} on {query:?}: {e}");
        }
    }

    // The input as values, which selector validation would have refused: `inject` must keep
    // them inert on its own. NUL separates values of a set.
    let values: Vec<String> = text.split('\0').map(str::to_string).collect();
    let requirements = [
        Requirement::Equals {
            key: "app.kubernetes.io/name".into(),
            value: text.to_string(),
        },
        Requirement::NotEquals {
            key: "k".into(),
            value: text.to_string(),
        },
        Requirement::In {
            key: "k".into(),
            values: values.clone(),
        },
        Requirement::NotIn {
            key: "other".into(),
            values: values.clone(),
        },
    ];
    if let Err(e) = invariants::check_rewrite(
        &original,
        Some(("namespace", &text)),
        &requirements,
        &values,
    ) {
        panic!("values {values:?} on {query:?}: {e}");
    }
});
