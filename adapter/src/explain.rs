//! `gpuscale-adapter explain HPA.yaml`: what a stock HPA would do right now with the values
//! this adapter serves. The arithmetic mirrors the HPA controller's replica calculator
//! (pkg/controller/podautoscaler/replica_calculator.go) for External metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The HPA controller's default `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: not an autoscaling/v2 HorizontalPodAutoscaler: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// How an External metric's target is expressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// `type: Value`: the metric's total should equal the target.
    Value(f64),
    /// `type: AverageValue`: the total divided by the replica count should equal the target.
    AverageValue(f64),
}

/// One External metric of an HPA.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalMetric {
    pub name: String,
    /// The selector as the HPA controller sends it (`labelSelector` query parameter).
    pub selector: String,
    pub target: Target,
}

/// What explain needs from an HPA manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaSpec {
    pub name: String,
    pub namespace: String,
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub external: Vec<ExternalMetric>,
    /// Metrics of other types (Resource, Pods, Object, ContainerResource), which this
    /// adapter does not serve; listed so the reader knows the HPA also weighs them.
    pub other_metrics: Vec<String>,
}

/// Parses an autoscaling/v2 HPA manifest (YAML or JSON).
pub fn parse_hpa(file: &str, text: &str) -> Result<HpaSpec, Error> {
    let hpa: HorizontalPodAutoscaler = serde_saphyr::from_str(text).map_err(|e| Error::Parse {
        file: file.to_string(),
        message: e.to_string().lines().next().unwrap_or_default().to_string(),
    })?;
    let invalid = |message: String| Error::Invalid {
        file: file.to_string(),
        message,
    };
    let spec = hpa
        .spec
        .ok_or_else(|| invalid("the HPA has no spec".into()))?;
    let mut external = Vec::new();
    let mut other_metrics = Vec::new();
    for (i, m) in spec.metrics.unwrap_or_default().into_iter().enumerate() {
        let MetricSpec {
            type_,
            external: ext,
            ..
        } = m;
        let Some(ext) = ext.filter(|_| type_ == "External") else {
            other_metrics.push(type_);
            continue;
        };
        let target = match ext.target.type_.as_str() {
            "Value" => ext
                .target
                .value
                .map(|q| Target::Value(parse_quantity(&q.0))),
            "AverageValue" => ext
                .target
                .average_value
                .map(|q| Target::AverageValue(parse_quantity(&q.0))),
            other => {
                return Err(invalid(format!(
                    "metrics[{i}] ({}): target type {other:?} is not valid for External metrics; use Value or AverageValue",
                    ext.metric.name
                )));
            }
        };
        let target = match target {
            Some(Target::Value(v)) | Some(Target::AverageValue(v))
                if !v.is_finite() || v <= 0.0 =>
            {
                return Err(invalid(format!(
                    "metrics[{i}] ({}): the target must be a positive quantity",
                    ext.metric.name
                )));
            }
            Some(t) => t,
            None => {
                return Err(invalid(format!(
                    "metrics[{i}] ({}): target type {} needs its `{}` field",
                    ext.metric.name,
                    ext.target.type_,
                    if ext.target.type_ == "Value" {
                        "value"
                    } else {
                        "averageValue"
                    }
                )));
            }
        };
        external.push(ExternalMetric {
            selector: ext
                .metric
                .selector
                .as_ref()
                .map(selector_string)
                .unwrap_or_default(),
            name: ext.metric.name,
            target,
        });
    }
    Ok(HpaSpec {
        name: hpa.metadata.name.unwrap_or_default(),
        namespace: hpa.metadata.namespace.unwrap_or_else(|| "default".into()),
        min_replicas: spec.min_replicas.unwrap_or(1),
        max_replicas: spec.max_replicas,
        external,
        other_metrics,
    })
}

/// A `metav1.LabelSelector` as the `labelSelector` string the HPA controller sends
/// (`metav1.LabelSelectorAsSelector(...).String()`): requirements sorted by key.
pub fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<(String, String)> = Vec::new();
    for (k, v) in s.match_labels.clone().unwrap_or_default() {
        parts.push((k.clone(), format!("{k}={v}")));
    }
    for e in s.match_expressions.clone().unwrap_or_default() {
        let mut values = e.values.unwrap_or_default();
        values.sort();
        let text = match e.operator.as_str() {
            "In" => format!("{} in ({})", e.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", e.key, values.join(",")),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            other => format!("{} {other} ({})", e.key, values.join(",")),
        };
        parts.push((e.key, text));
    }
    parts.sort();
    parts
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

/// A Kubernetes quantity (`500m`, `2`, `1.5k`, `1Gi`, `2e3`) as a number.
pub fn parse_quantity(q: &str) -> f64 {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", -1e9),
        ("u", -1e6),
        ("m", -1e3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    // A negative factor divides, so `700m` is exactly 0.7 (700 × 1e-3 is not).
    for (suffix, factor) in suffixes {
        if let Some(number) = q.strip_suffix(suffix) {
            return number
                .parse::<f64>()
                .map(|n| {
                    if factor < 0.0 {
                        n / -factor
                    } else {
                        n * factor
                    }
                })
                .unwrap_or(f64::NAN);
        }
    }
    q.parse().unwrap_or(f64::NAN)
}

/// The replica count one External metric asks for, as the HPA controller computes it.
///
/// - `Value` (GetExternalMetricReplicas): ratio = usage / target; within tolerance keep
///   `current`; else `ceil(ratio × current)`; from zero replicas `ceil(ratio)`.
/// - `AverageValue` (GetExternalPerPodMetricReplicas): ratio = usage / (target × current);
///   within tolerance keep `current`; else `ceil(usage / target)`.
///
/// Values are compared at milli precision, as the controller works on `MilliValue()`s.
pub fn replicas_for(usage: f64, target: Target, current: i32) -> i32 {
    let milli = |v: f64| (v * 1000.0).round();
    let usage = milli(usage);
    match target {
        Target::Value(t) => {
            let ratio = usage / milli(t);
            if current == 0 {
                return ratio.ceil() as i32;
            }
            if (1.0 - ratio).abs() <= TOLERANCE {
                current
            } else {
                (ratio * f64::from(current)).ceil() as i32
            }
        }
        Target::AverageValue(t) => {
            let t = milli(t);
            let ratio = usage / (t * f64::from(current.max(1)));
            if current > 0 && (1.0 - ratio).abs() <= TOLERANCE {
                current
            } else {
                (usage / t).ceil() as i32
            }
        }
    }
}

/// The HPA's choice: the largest proposal across metrics, clamped to [min, max]
/// (before `behavior` rate limits and the scale-down stabilization window, which act over
/// time; `replay` simulates those).
pub fn desired_replicas(proposals: &[i32], min: i32, max: i32, current: i32) -> i32 {
    let wanted = proposals.iter().copied().max().unwrap_or(current);
    wanted.clamp(min.min(max), max)
}

/// One line of the explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: String,
    pub selector: String,
    pub value: Result<f64, String>,
    pub target: Target,
    pub proposal: Option<i32>,
    pub labels: Vec<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_target_uses_ratio_times_current() {
        // usage 90 vs target 60 with 4 replicas: ratio 1.5 → ceil(6.0) = 6.
        assert_eq!(replicas_for(90.0, Target::Value(60.0), 4), 6);
        // within the 10 % tolerance: no change.
        assert_eq!(replicas_for(63.0, Target::Value(60.0), 4), 4);
        assert_eq!(replicas_for(54.0, Target::Value(60.0), 4), 4);
        // just outside it: scale.
        assert_eq!(replicas_for(53.0, Target::Value(60.0), 4), 4); // ceil(3.53) = 4
        assert_eq!(replicas_for(30.0, Target::Value(60.0), 4), 2);
        // from zero replicas the ratio itself is the count.
        assert_eq!(replicas_for(150.0, Target::Value(60.0), 0), 3);
    }

    #[test]
    fn average_value_target_divides_usage_by_target() {
        // 10 in-flight requests, target 2 per replica, 3 replicas: ratio 10/6 → ceil(10/2) = 5.
        assert_eq!(replicas_for(10.0, Target::AverageValue(2.0), 3), 5);
        // 6.3 vs 2×3 = 6: ratio 1.05, inside tolerance.
        assert_eq!(replicas_for(6.3, Target::AverageValue(2.0), 3), 3);
        assert_eq!(replicas_for(0.5, Target::AverageValue(2.0), 3), 1);
        // milli-valued targets, as an HPA writes them (500m).
        assert_eq!(replicas_for(2.6, Target::AverageValue(0.5), 2), 6);
    }

    #[test]
    fn largest_proposal_wins_then_min_max_clamp() {
        assert_eq!(desired_replicas(&[3, 7, 5], 1, 10, 4), 7);
        assert_eq!(desired_replicas(&[30], 1, 10, 4), 10);
        assert_eq!(desired_replicas(&[0], 2, 10, 4), 2);
        assert_eq!(desired_replicas(&[], 2, 10, 4), 4);
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("500m"), 0.5);
        assert_eq!(parse_quantity("2"), 2.0);
        assert_eq!(parse_quantity("1.5k"), 1500.0);
        assert_eq!(parse_quantity("1Gi"), 1073741824.0);
        assert!(parse_quantity("lots").is_nan());
    }

    #[test]
    fn hpa_manifest_parses_with_selector_string() {
        let yaml = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: llm, namespace: serving}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm}
  minReplicas: 2
  maxReplicas: 12
  metrics:
    - type: External
      external:
        metric:
          name: gpu_utilization
          selector:
            matchLabels: {workload: llm}
            matchExpressions:
              - {key: tier, operator: In, values: [b, a]}
              - {key: canary, operator: DoesNotExist}
        target: {type: Value, value: 700m}
    - type: External
      external:
        metric: {name: requests_in_flight}
        target: {type: AverageValue, averageValue: "4"}
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
"#;
        let hpa = parse_hpa("hpa.yaml", yaml).expect("parses");
        assert_eq!(hpa.name, "llm");
        assert_eq!(hpa.namespace, "serving");
        assert_eq!((hpa.min_replicas, hpa.max_replicas), (2, 12));
        assert_eq!(hpa.external.len(), 2);
        assert_eq!(
            hpa.external[0].selector,
            "!canary,tier in (a,b),workload=llm"
        );
        assert_eq!(hpa.external[0].target, Target::Value(0.7));
        assert_eq!(hpa.external[1].target, Target::AverageValue(4.0));
        assert_eq!(hpa.other_metrics, vec!["Resource".to_string()]);
    }

    #[test]
    fn bad_targets_are_explained() {
        let yaml = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {kind: Deployment, name: x}\n  maxReplicas: 3\n  metrics:\n    - type: External\n      external:\n        metric: {name: m}\n        target: {type: Utilization, averageUtilization: 50}\n";
        let e = parse_hpa("h.yaml", yaml).expect_err("invalid");
        assert!(e.to_string().contains("Value or AverageValue"), "{e}");
    }
}
