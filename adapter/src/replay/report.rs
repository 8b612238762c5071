//! The replay's answer for people (a fixed-width table) and for programs (`--json`), with
//! every assumption printed beside the numbers so a table can't be read out of context.

use serde::Serialize;

use super::sim::Outcome;

/// A whole replay: the assumptions, then one outcome per policy.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub trace: String,
    pub start: f64,
    pub end: f64,
    pub step_seconds: f64,
    pub peak_demand: f64,
    pub assumptions: Vec<(String, String)>,
    /// Where the forecast came from (`rules: promtool over ...`), or why it is absent.
    pub forecast_source: String,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Fixed-width text, one row per policy, plus the change against the first reactive row.
    pub fn table(&self) -> String {
        let mut out = format!(
            "trace {}: {:.1} h, peak demand {:.1}\n",
            self.trace,
            (self.end - self.start) / 3600.0,
            self.peak_demand
        );
        for (k, v) in &self.assumptions {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out.push_str(&format!("  forecast: {}\n\n", self.forecast_source));
        out.push_str(&format!(
            "{:<26} {:>12} {:>10} {:>10} {:>10} {:>10} {:>7} {:>6}\n",
            "policy", "unmet min", "queue pk", "queue p95", "GPU-h", "dollars", "scales", "nodes+"
        ));
        for o in &self.outcomes {
            out.push_str(&format!(
                "{:<26} {:>12.2} {:>10.1} {:>10.1} {:>10.2} {:>10.2} {:>7} {:>6}\n",
                o.policy,
                o.unmet_demand_minutes,
                o.queue_peak,
                o.queue_p95,
                o.gpu_hours,
                o.dollars,
                o.scale_events,
                o.nodes_added
            ));
        }
        if let Some(cmp) = self.comparison() {
            out.push('\n');
            out.push_str(&cmp);
        }
        out
    }

    /// Each forecast row against each reactive row: the project's goal is ≥ 50 % fewer
    /// unmet minutes at ≤ 15 % more GPU-hours.
    pub fn comparison(&self) -> Option<String> {
        let mut out = String::new();
        let rows = |prefix: &'static str| {
            // Baselines: the reactive rows without pre-warming.
            self.outcomes
                .iter()
                .filter(move |o| o.policy.starts_with(prefix) && !o.policy.ends_with("prewarm"))
        };
        let forecast_rows = self
            .outcomes
            .iter()
            .filter(|o| o.policy.starts_with("forecast") || o.policy.ends_with("prewarm"));
        let baselines = || rows("reactive-");
        for (o, reactive) in forecast_rows.flat_map(|o| baselines().map(move |r| (o, r))) {
            let (cut, extra) = goal(reactive, o);
            let verdict = if reactive.unmet_demand_minutes <= 0.0 {
                // Nothing to cut: the goal is about unmet demand, so it does not apply.
                "n/a"
            } else if cut >= 50.0 && extra <= 15.0 {
                "MET"
            } else {
                "NOT met"
            };
            let change = if reactive.unmet_demand_minutes > 0.0 {
                format!("{:+.1} %", -cut)
            } else {
                "n/a".into()
            };
            out.push_str(&format!(
                "{} vs {}: unmet minutes {change} ({}), GPU-hours {:+.1} % -> goal (>= 50 % fewer, <= 15 % more GPU-h) {verdict}\n",
                o.policy,
                reactive.policy,
                if reactive.unmet_demand_minutes > 0.0 {
                    format!(
                        "{:.2} -> {:.2}",
                        reactive.unmet_demand_minutes, o.unmet_demand_minutes
                    )
                } else if o.unmet_demand_minutes > 0.0 {
                    format!("reactive had none, this {:.2}", o.unmet_demand_minutes)
                } else {
                    "none either way: nothing to cut".into()
                },
                extra,
            ));
        }
        (!out.is_empty()).then_some(out)
    }
}

/// (percent fewer unmet minutes, percent more GPU-hours) of `o` against `reactive`.
pub fn goal(reactive: &Outcome, o: &Outcome) -> (f64, f64) {
    let cut = if reactive.unmet_demand_minutes > 0.0 {
        100.0 * (1.0 - o.unmet_demand_minutes / reactive.unmet_demand_minutes)
    } else if o.unmet_demand_minutes > 0.0 {
        -100.0
    } else {
        100.0
    };
    let extra = if reactive.gpu_hours > 0.0 {
        100.0 * (o.gpu_hours / reactive.gpu_hours - 1.0)
    } else {
        0.0
    };
    (cut, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(policy: &str, unmet: f64, gpu_hours: f64) -> Outcome {
        Outcome {
            policy: policy.into(),
            unmet_demand_minutes: unmet,
            queue_peak: 0.0,
            queue_p95: 0.0,
            unmet_load_minutes: 0.0,
            gpu_hours,
            dollars: gpu_hours * 2.0,
            scale_events: 0,
            nodes_added: 0,
            peak_replicas: 1,
            series: vec![],
        }
    }

    #[test]
    fn goal_against_best_reactive() {
        let r = Report {
            trace: "t".into(),
            start: 0.0,
            end: 3600.0,
            step_seconds: 5.0,
            peak_demand: 10.0,
            assumptions: vec![],
            forecast_source: "test".into(),
            outcomes: vec![
                outcome("reactive-utilization", 20.0, 10.0),
                outcome("reactive-concurrency", 10.0, 10.0),
                outcome("forecast", 4.0, 11.0),
            ],
        };
        let text = r.table();
        assert!(
            text.contains("forecast vs reactive-utilization: unmet minutes -80.0 %"),
            "{text}"
        );
        assert!(
            text.contains("forecast vs reactive-concurrency: unmet minutes -60.0 % (10.00 -> 4.00), GPU-hours +10.0 %"),
            "{text}"
        );
        assert!(text.contains("MET"), "{text}");
    }
}
