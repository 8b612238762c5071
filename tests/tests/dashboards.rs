//! Grafana dashboards in `dashboards/`: importable as-is (datasource input and
//! `${datasource}` variable, `cluster`/`namespace`/`workload` variables, stable uid, recent
//! schemaVersion, no hard-coded datasource uid); every query parses with promql-parser once
//! Grafana's variables are substituted; every series a query names is in the metric
//! reference (docs/metrics.md), recorded by the rules, or a kube-state-metrics series listed
//! in docs/rules.md. Issue 5.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::path::PathBuf;

use gpuscale_tests::root;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

/// kube-state-metrics series the dashboards and rules may read (listed in docs/rules.md).
const KUBE_STATE_METRICS: &[&str] = &[
    "kube_pod_status_phase",
    "kube_pod_container_resource_requests",
    "kube_node_status_allocatable",
    "kube_node_labels",
    "kube_horizontalpodautoscaler_status_desired_replicas",
];

fn dashboards() -> Vec<(PathBuf, Value)> {
    let mut out: Vec<_> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 3, "fleet, autoscaling and cost dashboards");
    out
}

/// Series names the metric reference documents (first cell of its tables).
fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(cell) = line.strip_prefix("| ") else {
            continue;
        };
        let cell = cell.split(" |").next().unwrap_or("");
        for part in cell.split('`').skip(1).step_by(2) {
            names.insert(part.to_string());
        }
    }
    names
}

fn recorded() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in std::fs::read_dir(root().join("rules")).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".rules.yml") {
            continue;
        }
        let v: Value = serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for g in v["groups"].as_array().unwrap() {
            for r in g["rules"].as_array().unwrap() {
                if let Some(n) = r["record"].as_str() {
                    names.insert(n.to_string());
                }
            }
        }
    }
    names
}

/// Grafana's variables replaced by values of the right type, so the query parses.
fn substitute(q: &str) -> String {
    let mut s = q.to_string();
    for (from, to) in [
        ("$__rate_interval", "5m"),
        ("${__rate_interval}", "5m"),
        ("$__interval", "1m"),
        ("$__range", "1d"),
    ] {
        s = s.replace(from, to);
    }
    for var in ["cluster", "namespace", "workload", "node"] {
        s = s.replace(&format!("${{{var}}}"), ".*");
        s = s.replace(&format!("${var}"), ".*");
    }
    s
}

/// `label_values(QUERY, label)` in a variable: the query part.
fn variable_query(q: &str) -> Option<String> {
    let inner = q.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (expr, _label) = inner.rsplit_once(',')?;
    Some(expr.trim().to_string())
}

struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = ();
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
        match e {
            Expr::VectorSelector(vs) => {
                if let Some(n) = &vs.name {
                    self.0.insert(n.clone());
                }
            }
            Expr::MatrixSelector(ms) => {
                if let Some(n) = &ms.vs.name {
                    self.0.insert(n.clone());
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// Every PromQL query of a dashboard: (where, query).
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["query"]["query"].as_str().unwrap();
            let expr = variable_query(q)
                .unwrap_or_else(|| panic!("variable {}: not label_values(...): {q}", v["name"]));
            out.push((format!("variable {}", v["name"]), expr));
        }
    }
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    format!("panel {:?} target {}", p["title"], t["refId"]),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
            panels(&p["panels"], out);
        }
    }
    panels(&d["panels"], &mut out);
    out
}

#[test]
fn dashboards_are_importable() {
    let mut uids = BTreeSet::new();
    for (path, d) in dashboards() {
        let f = path.display();
        let uid = d["uid"].as_str().unwrap_or("");
        assert!(uid.starts_with("gpuscale-"), "{f}: stable uid, got `{uid}`");
        assert!(uids.insert(uid.to_string()), "{f}: duplicate uid {uid}");
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 39,
            "{f}: schemaVersion"
        );
        assert!(
            d["id"].is_null(),
            "{f}: an instance-specific `id` breaks import"
        );
        let inputs = d["__inputs"].as_array().unwrap();
        assert!(
            inputs
                .iter()
                .any(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus"),
            "{f}: a Prometheus datasource input"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| vars.iter().find(|v| v["name"] == n);
        let ds = var("datasource").unwrap_or_else(|| panic!("{f}: no `datasource` variable"));
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        for n in ["cluster", "namespace", "workload"] {
            assert!(var(n).is_some(), "{f}: no `{n}` variable");
        }
        // Every datasource reference goes through the variable.
        let mut refs = Vec::new();
        collect_datasources(&d, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            assert_eq!(
                r["uid"], "${datasource}",
                "{f}: hard-coded datasource {r} (use the ${{datasource}} variable)"
            );
        }
        // Panel ids unique.
        let mut ids = BTreeSet::new();
        fn panel_ids(list: &Value, ids: &mut BTreeSet<u64>, f: &str) {
            for p in list.as_array().into_iter().flatten() {
                assert!(
                    ids.insert(p["id"].as_u64().unwrap()),
                    "{f}: duplicate panel id"
                );
                panel_ids(&p["panels"], ids, f);
            }
        }
        panel_ids(&d["panels"], &mut ids, &f.to_string());
    }
}

fn collect_datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "datasource" && x.is_object() {
                    out.push(x);
                } else {
                    collect_datasources(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_datasources(x, out)),
        _ => {}
    }
}

#[test]
fn every_query_parses_and_names_known_series() {
    let known: BTreeSet<String> = documented()
        .into_iter()
        .chain(recorded())
        .chain(KUBE_STATE_METRICS.iter().map(|s| s.to_string()))
        .collect();
    let rules_doc = std::fs::read_to_string(root().join("docs/rules.md")).unwrap();
    for k in KUBE_STATE_METRICS {
        assert!(rules_doc.contains(k), "docs/rules.md does not list {k}");
    }
    let mut problems = Vec::new();
    for (path, d) in dashboards() {
        for (place, q) in queries(&d) {
            let expr = match parser::parse(&substitute(&q)) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("{}: {place}: {e}: {q}", path.display()));
                    continue;
                }
            };
            let mut names = Names(BTreeSet::new());
            walk_expr(&mut names, &expr).unwrap();
            assert!(!names.0.is_empty(), "{place}: names no series: {q}");
            for n in names.0 {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| n.strip_suffix(s))
                    .unwrap_or(&n);
                if !known.contains(&n) && !known.contains(base) {
                    problems.push(format!(
                        "{}: {place}: `{n}` is neither in docs/metrics.md, recorded by rules/, \
                         nor a listed kube-state-metrics series",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The substitution keeps the query a query: a typo in a series name is caught.
#[test]
fn a_misspelled_series_is_caught() {
    let expr = parser::parse(&substitute(
        "gpu_utilisation_ratio{cluster=~\"$cluster\"}[$__rate_interval]",
    ))
    .unwrap();
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &expr).unwrap();
    assert!(names.0.contains("gpu_utilisation_ratio"));
    assert!(!documented().contains("gpu_utilisation_ratio"));
}
