//! The stock HPA controller's decision at each sync, over time: the metric proposals, then
//! `behavior` (stabilization windows, then scaling policies), exactly as
//! pkg/controller/podautoscaler/horizontal.go does it, so a replay shows what a real cluster
//! would have done rather than an idealised autoscaler.
//!
//! References used throughout: Kubernetes docs, "Horizontal Pod Autoscaling" (sections
//! "Algorithm details", "Stabilization window", "Scaling policies", "Default behavior"), and
//! horizontal.go `reconcileAutoscaler`, `computeReplicasForMetrics`,
//! `normalizeDesiredReplicasWithBehaviors`, `stabilizeRecommendationWithBehaviors`,
//! `convertDesiredReplicasWithBehaviorRate`, `calculateScaleUpLimitWithScalingRules`,
//! `calculateScaleDownLimitWithBehaviors`, `getReplicasChangePerPeriod`.

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscalerBehavior};

/// The HPA controller's default `--horizontal-pod-autoscaler-sync-period`.
pub const SYNC_PERIOD_SECONDS: f64 = 15.0;

/// A `behavior` the controller cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("behavior.{direction}: policy type {kind:?} is not Pods or Percent")]
    PolicyType {
        direction: &'static str,
        kind: String,
    },
    #[error("behavior.{direction}: selectPolicy {select:?} is not Max, Min or Disabled")]
    Select {
        direction: &'static str,
        select: String,
    },
    #[error(
        "behavior.{direction}: policy values and periodSeconds must be positive (periodSeconds at most 1800)"
    )]
    PolicyValue { direction: &'static str },
}

/// `HPAScalingPolicyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

/// One `HPAScalingPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period_seconds: i32,
}

/// `ScalingPolicySelect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// One direction of `behavior`, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub select: Select,
    pub policies: Vec<Policy>,
}

/// `spec.behavior` with Kubernetes' defaults filled in (GenerateHPAScaleUpRules /
/// GenerateHPAScaleDownRules in pkg/apis/autoscaling/v2/defaults.go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

impl Default for Behavior {
    /// Docs, "Default behavior": scale-up without a window, by the larger of 100 % and 4 pods
    /// per 15 s; scale-down after a 300 s window, by up to 100 % per 15 s.
    fn default() -> Self {
        Self {
            scale_up: default_up(),
            scale_down: default_down(),
        }
    }
}

fn default_up() -> Rules {
    Rules {
        stabilization_window_seconds: 0,
        select: Select::Max,
        policies: vec![
            Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period_seconds: 15,
            },
            Policy {
                kind: PolicyKind::Pods,
                value: 4,
                period_seconds: 15,
            },
        ],
    }
}

fn default_down() -> Rules {
    Rules {
        stabilization_window_seconds: 300,
        select: Select::Max,
        policies: vec![Policy {
            kind: PolicyKind::Percent,
            value: 100,
            period_seconds: 15,
        }],
    }
}

impl Behavior {
    /// `spec.behavior` as the API server stores it: each missing direction, window,
    /// selectPolicy or policy list takes its default, independently of the others.
    pub fn from_spec(spec: Option<&HorizontalPodAutoscalerBehavior>) -> Result<Self, Error> {
        let Some(spec) = spec else {
            return Ok(Self::default());
        };
        Ok(Self {
            scale_up: rules("scaleUp", spec.scale_up.as_ref(), default_up())?,
            scale_down: rules("scaleDown", spec.scale_down.as_ref(), default_down())?,
        })
    }
}

fn rules(
    direction: &'static str,
    spec: Option<&HPAScalingRules>,
    default: Rules,
) -> Result<Rules, Error> {
    let Some(spec) = spec else {
        return Ok(default);
    };
    let select = match spec.select_policy.as_deref() {
        None | Some("Max") => Select::Max,
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        Some(other) => {
            return Err(Error::Select {
                direction,
                select: other.to_string(),
            });
        }
    };
    let policies = match &spec.policies {
        None => default.policies,
        Some(list) => list
            .iter()
            .map(|p| {
                let kind = match p.type_.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    other => {
                        return Err(Error::PolicyType {
                            direction,
                            kind: other.to_string(),
                        });
                    }
                };
                if p.value <= 0 || p.period_seconds <= 0 || p.period_seconds > 1800 {
                    return Err(Error::PolicyValue { direction });
                }
                Ok(Policy {
                    kind,
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Rules {
        stabilization_window_seconds: spec
            .stabilization_window_seconds
            .unwrap_or(default.stabilization_window_seconds),
        select,
        policies,
    })
}

/// One HPA object's controller state across syncs: the recommendations inside the
/// stabilization windows and the scale events inside the policy periods.
#[derive(Debug, Clone)]
pub struct Controller {
    behavior: Behavior,
    min_replicas: i32,
    max_replicas: i32,
    /// (time, unstabilized recommendation), as `a.recommendations[key]`.
    recommendations: Vec<(f64, i32)>,
    /// (time, replicas added), as `a.scaleUpEvents[key]`.
    up_events: Vec<(f64, i32)>,
    /// (time, replicas removed), as `a.scaleDownEvents[key]`.
    down_events: Vec<(f64, i32)>,
}

impl Controller {
    pub fn new(behavior: Behavior, min_replicas: i32, max_replicas: i32) -> Self {
        Self {
            behavior,
            min_replicas,
            max_replicas,
            recommendations: Vec::new(),
            up_events: Vec::new(),
            down_events: Vec::new(),
        }
    }

    /// One sync at `now` (seconds) with `current` = the scale subresource's replicas and one
    /// proposal per metric (`None` when the metric could not be read). Returns the replicas
    /// the controller writes back (equal to `current` when it does not rescale).
    pub fn sync(&mut self, now: f64, current: i32, proposals: &[Option<i32>]) -> i32 {
        // reconcileAutoscaler: replicas 0 with minReplicas > 0 means autoscaling is off.
        if current == 0 && self.min_replicas != 0 {
            return current;
        }
        let desired = if current > self.max_replicas {
            self.max_replicas
        } else if current < self.min_replicas {
            self.min_replicas
        } else {
            // computeReplicasForMetrics: the largest proposal; when every metric failed, or
            // some failed and the rest would scale down, the controller does not scale.
            let valid: Vec<i32> = proposals.iter().flatten().copied().collect();
            let invalid = proposals.len() - valid.len();
            let Some(largest) = valid.iter().copied().max() else {
                return current;
            };
            if invalid > 0 && largest < current {
                return current;
            }
            self.normalize(now, current, largest)
        };
        if desired != current {
            self.store_event(now, current, desired);
        }
        desired
    }

    /// normalizeDesiredReplicasWithBehaviors: stabilize, then apply the rate policies and
    /// min/max.
    fn normalize(&mut self, now: f64, current: i32, desired: i32) -> i32 {
        let stabilized = self.stabilize(now, current, desired);
        self.limit_rate(now, current, stabilized)
    }

    /// stabilizeRecommendationWithBehaviors: the result may not go above the lowest
    /// recommendation of the scale-up window nor below the highest of the scale-down window.
    fn stabilize(&mut self, now: f64, current: i32, desired: i32) -> i32 {
        let up_cutoff = now - f64::from(self.behavior.scale_up.stabilization_window_seconds);
        let down_cutoff = now - f64::from(self.behavior.scale_down.stabilization_window_seconds);
        let mut up = desired;
        let mut down = desired;
        for &(t, rec) in &self.recommendations {
            if t > up_cutoff {
                up = up.min(rec);
            }
            if t > down_cutoff {
                down = down.max(rec);
            }
        }
        let mut recommendation = current;
        if recommendation < up {
            recommendation = up;
        }
        if recommendation > down {
            recommendation = down;
        }
        // The controller reuses one slot older than both windows; dropping all of them is the
        // same for every later decision and keeps memory bounded.
        self.recommendations
            .retain(|&(t, _)| !(t < up_cutoff && t < down_cutoff));
        self.recommendations.push((now, desired));
        recommendation
    }

    /// convertDesiredReplicasWithBehaviorRate.
    fn limit_rate(&self, now: f64, current: i32, desired: i32) -> i32 {
        if desired > current {
            let limit = scale_up_limit(
                now,
                current,
                &self.up_events,
                &self.down_events,
                &self.behavior.scale_up,
            )
            .max(current);
            let maximum = self.max_replicas.min(limit);
            desired.min(maximum)
        } else if desired < current {
            let limit = scale_down_limit(
                now,
                current,
                &self.up_events,
                &self.down_events,
                &self.behavior.scale_down,
            )
            .min(current);
            let minimum = self.min_replicas.max(limit);
            desired.max(minimum)
        } else {
            desired
        }
    }

    /// storeScaleEvent: events older than the direction's longest policy period are dead.
    fn store_event(&mut self, now: f64, previous: i32, new: i32) {
        let longest = |r: &Rules| {
            f64::from(
                r.policies
                    .iter()
                    .map(|p| p.period_seconds)
                    .max()
                    .unwrap_or(0),
            )
        };
        if new > previous {
            let keep = longest(&self.behavior.scale_up);
            self.up_events.retain(|&(t, _)| t > now - keep);
            self.up_events.push((now, new - previous));
        } else {
            let keep = longest(&self.behavior.scale_down);
            self.down_events.retain(|&(t, _)| t > now - keep);
            self.down_events.push((now, previous - new));
        }
    }
}

/// getReplicasChangePerPeriod: events strictly after `now - period`.
fn change_in_period(now: f64, period_seconds: i32, events: &[(f64, i32)]) -> i32 {
    let cutoff = now - f64::from(period_seconds);
    events
        .iter()
        .filter(|&&(t, _)| t > cutoff)
        .map(|&(_, n)| n)
        .sum()
}

/// calculateScaleUpLimitWithScalingRules: each policy allows growth from the replica count
/// at the start of its period; Max picks the most permissive, Min the least.
fn scale_up_limit(
    now: f64,
    current: i32,
    up: &[(f64, i32)],
    down: &[(f64, i32)],
    rules: &Rules,
) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => std::cmp::min,
        Select::Max => std::cmp::max,
    };
    let mut result = if rules.select == Select::Min {
        i32::MAX
    } else {
        i32::MIN
    };
    for p in &rules.policies {
        let start = current - change_in_period(now, p.period_seconds, up)
            + change_in_period(now, p.period_seconds, down);
        let proposed = match p.kind {
            PolicyKind::Pods => start.saturating_add(p.value),
            // Rounded up so that a small Percent can still add a pod.
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// calculateScaleDownLimitWithBehaviors: the mirror image; Percent truncates.
fn scale_down_limit(
    now: f64,
    current: i32,
    up: &[(f64, i32)],
    down: &[(f64, i32)],
    rules: &Rules,
) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => std::cmp::max,
        Select::Max => std::cmp::min,
    };
    let mut result = if rules.select == Select::Min {
        i32::MIN
    } else {
        i32::MAX
    };
    for p in &rules.policies {
        let start = current - change_in_period(now, p.period_seconds, up)
            + change_in_period(now, p.period_seconds, down);
        let proposed = match p.kind {
            PolicyKind::Pods => start - p.value,
            PolicyKind::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        result = pick(result, proposed);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Target, replicas_for};

    fn behavior(yaml: &str) -> Behavior {
        let spec: HorizontalPodAutoscalerBehavior =
            serde_saphyr::from_str(yaml).expect("behavior yaml");
        Behavior::from_spec(Some(&spec)).expect("valid behavior")
    }

    /// Docs, "Algorithm details": within the tolerance (0.1) the controller skips scaling;
    /// desiredReplicas = ceil(currentReplicas × currentMetricValue / desiredMetricValue).
    #[test]
    fn tolerance_and_ratio() {
        assert_eq!(replicas_for(0.75, Target::Value(0.7), 4), 4); // ratio 1.07
        assert_eq!(replicas_for(0.8, Target::Value(0.7), 4), 5); // ceil(4.57)
        assert_eq!(replicas_for(40.0, Target::AverageValue(8.0), 5), 5); // exactly on target
        assert_eq!(replicas_for(41.0, Target::AverageValue(8.0), 4), 6); // ceil(41/8)
    }

    /// Docs, "Algorithm details": with several metrics the controller takes the largest
    /// proposal.
    #[test]
    fn largest_proposal_wins() {
        let mut c = Controller::new(Behavior::default(), 1, 100);
        assert_eq!(c.sync(0.0, 3, &[Some(4), Some(6), Some(2)]), 6);
    }

    /// horizontal.go computeReplicasForMetrics: if some metrics are invalid and the valid
    /// ones would scale down, do not scale; if all are invalid, do not scale.
    #[test]
    fn invalid_metric_blocks_scale_down_but_not_up() {
        let mut c = Controller::new(Behavior::default(), 1, 100);
        assert_eq!(c.sync(0.0, 5, &[None, Some(2)]), 5);
        assert_eq!(c.sync(15.0, 5, &[None, None]), 5);
        assert_eq!(c.sync(30.0, 5, &[None, Some(7)]), 7);
    }

    /// Docs, "Default behavior" (scaleUp): no stabilization window; add the larger of 100 %
    /// and 4 pods every 15 s.
    #[test]
    fn default_scale_up_rate() {
        let mut c = Controller::new(Behavior::default(), 1, 1000);
        assert_eq!(c.sync(0.0, 1, &[Some(100)]), 5); // max(1×2, 1+4)
        assert_eq!(c.sync(15.0, 5, &[Some(100)]), 10); // max(10, 9)
        assert_eq!(c.sync(30.0, 10, &[Some(100)]), 20);
        assert_eq!(c.sync(45.0, 20, &[Some(100)]), 40);
        assert_eq!(c.sync(60.0, 40, &[Some(100)]), 80);
        assert_eq!(c.sync(75.0, 80, &[Some(100)]), 100);
    }

    /// Docs, "Default behavior" (scaleDown) and "Stabilization window": the controller uses
    /// the highest recommendation of the past 300 s, so a drop takes effect only after the
    /// window, then all at once (100 % per 15 s).
    #[test]
    fn default_scale_down_waits_300s() {
        let mut c = Controller::new(Behavior::default(), 1, 100);
        assert_eq!(c.sync(0.0, 10, &[Some(10)]), 10);
        let mut t = 15.0;
        while t < 300.0 {
            assert_eq!(c.sync(t, 10, &[Some(2)]), 10, "at {t}");
            t += 15.0;
        }
        // The recommendation 10 made at t=0 is no longer after the cutoff now-300.
        assert_eq!(c.sync(300.0, 10, &[Some(2)]), 2);
    }

    /// Docs, "Scaling policies": `Pods` 4 per 60 s limits the change over any 60 s, counted
    /// from the replica count at the start of the period (getReplicasChangePerPeriod).
    #[test]
    fn pods_policy_counts_the_period() {
        let b = behavior("scaleUp:\n  policies:\n  - {type: Pods, value: 4, periodSeconds: 60}\n");
        let mut c = Controller::new(b, 1, 100);
        assert_eq!(c.sync(0.0, 2, &[Some(50)]), 6);
        assert_eq!(c.sync(15.0, 6, &[Some(50)]), 6);
        assert_eq!(c.sync(45.0, 6, &[Some(50)]), 6);
        // The event at t=0 is not strictly after 60-60=0: a new period.
        assert_eq!(c.sync(60.0, 6, &[Some(50)]), 10);
    }

    /// Docs, "Scaling policies": `Percent` scale-up rounds up (so 10 % of 3 still adds a pod),
    /// scale-down truncates (horizontal.go: math.Ceil for up, int32() for down).
    #[test]
    fn percent_rounding() {
        let b = behavior(concat!(
            "scaleUp:\n  policies:\n  - {type: Percent, value: 10, periodSeconds: 15}\n",
            "scaleDown:\n  stabilizationWindowSeconds: 0\n  policies:\n  - {type: Percent, value: 10, periodSeconds: 15}\n"
        ));
        let mut c = Controller::new(b, 1, 100);
        assert_eq!(c.sync(0.0, 3, &[Some(50)]), 4); // ceil(3.3)
        assert_eq!(c.sync(15.0, 25, &[Some(1)]), 22); // int(22.5)
    }

    /// Docs, "Scaling policies": selectPolicy Min picks the policy allowing the smallest
    /// change; Disabled turns the direction off.
    #[test]
    fn select_min_and_disabled() {
        let b = behavior(concat!(
            "scaleUp:\n  selectPolicy: Min\n  policies:\n",
            "  - {type: Pods, value: 4, periodSeconds: 15}\n",
            "  - {type: Percent, value: 100, periodSeconds: 15}\n",
            "scaleDown:\n  selectPolicy: Disabled\n"
        ));
        let mut c = Controller::new(b, 1, 100);
        assert_eq!(c.sync(0.0, 10, &[Some(50)]), 14); // min(14, 20)
        assert_eq!(c.sync(15.0, 14, &[Some(1)]), 14); // scale-down disabled
    }

    /// Docs, "Stabilization window" for scale-up: with a window, the controller uses the
    /// lowest recommendation inside it, so a spike must last the whole window.
    #[test]
    fn scale_up_window_takes_the_minimum() {
        let b = behavior("scaleUp:\n  stabilizationWindowSeconds: 60\n");
        let mut c = Controller::new(b, 1, 100);
        assert_eq!(c.sync(0.0, 2, &[Some(2)]), 2);
        assert_eq!(c.sync(15.0, 2, &[Some(8)]), 2);
        assert_eq!(c.sync(30.0, 2, &[Some(8)]), 2);
        assert_eq!(c.sync(45.0, 2, &[Some(8)]), 2);
        assert_eq!(c.sync(60.0, 2, &[Some(8)]), 6); // 2 + 4 pods (default policies)
    }

    /// horizontal.go reconcileAutoscaler: above maxReplicas go to max, below minReplicas go
    /// to min, before any metric; and the rate-limited result never leaves [min, max].
    #[test]
    fn min_max_bounds() {
        let mut c = Controller::new(Behavior::default(), 2, 5);
        assert_eq!(c.sync(0.0, 9, &[Some(9)]), 5);
        assert_eq!(c.sync(15.0, 1, &[Some(1)]), 2);
        assert_eq!(c.sync(30.0, 2, &[Some(50)]), 5);
        let mut d = Controller::new(
            behavior("scaleDown:\n  stabilizationWindowSeconds: 0\n"),
            2,
            5,
        );
        assert_eq!(d.sync(0.0, 5, &[Some(0)]), 2);
    }

    /// Partially given behavior: each missing field takes its own default (defaults.go
    /// GenerateHPAScaleDownRules), e.g. a scaleDown with only policies keeps the 300 s window.
    #[test]
    fn partial_behavior_keeps_other_defaults() {
        let b =
            behavior("scaleDown:\n  policies:\n  - {type: Pods, value: 1, periodSeconds: 60}\n");
        assert_eq!(b.scale_down.stabilization_window_seconds, 300);
        assert_eq!(b.scale_down.select, Select::Max);
        assert_eq!(b.scale_up, Behavior::default().scale_up);
    }

    #[test]
    fn bad_policy_type_is_an_error() {
        let spec: HorizontalPodAutoscalerBehavior = serde_saphyr::from_str(
            "scaleUp:\n  policies:\n  - {type: Nodes, value: 1, periodSeconds: 60}\n",
        )
        .expect("yaml");
        assert!(matches!(
            Behavior::from_spec(Some(&spec)),
            Err(Error::PolicyType { .. })
        ));
    }

    /// replicas 0 with minReplicas > 0: "autoscaling is disabled for this resource".
    #[test]
    fn zero_replicas_disables() {
        let mut c = Controller::new(Behavior::default(), 1, 10);
        assert_eq!(c.sync(0.0, 0, &[Some(5)]), 0);
    }
}
