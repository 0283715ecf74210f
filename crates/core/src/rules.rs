//! Detection rules and the alerts they raise.
//!
//! Implemented rule kind: `threshold`, a comparison of one window statistic with a
//! constant. An alert is keyed by (rule, group, window), so re-delivered or repeated
//! updates of the same window raise it once.

use serde::{Deserialize, Serialize};

use crate::item::WindowUpdate;
use crate::time::format_rfc3339;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    Count,
    Sum,
    Min,
    Max,
    Mean,
    Stddev,
}

impl Stat {
    pub fn of(self, u: &WindowUpdate) -> f64 {
        match self {
            Stat::Count => u.count as f64,
            Stat::Sum => u.sum,
            Stat::Min => u.min,
            Stat::Max => u.max,
            Stat::Mean => u.mean,
            Stat::Stddev => u.variance.max(0.0).sqrt(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Gte,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Lte,
}

impl Op {
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Gte => left >= right,
            Op::Lt => left < right,
            Op::Lte => left <= right,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    #[default]
    Threshold,
}

/// A rule, as stored in the rules table and in rule files (JSON lines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub kind: RuleKind,
    /// The metric (`type`) it watches; `*` for any.
    #[serde(rename = "type")]
    pub metric: String,
    /// Only keys starting with this prefix (empty: all keys).
    #[serde(default)]
    pub key_prefix: String,
    pub window_seconds: i64,
    pub stat: Stat,
    pub op: Op,
    pub threshold: f64,
    /// Do not fire on windows with fewer events than this (noise guard).
    #[serde(default)]
    pub min_count: u64,
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_severity() -> String {
    "warning".into()
}

impl Rule {
    pub fn applies_to(&self, u: &WindowUpdate) -> bool {
        (self.metric == "*" || self.metric == u.metric)
            && u.key.starts_with(&self.key_prefix)
            && self.window_seconds == u.window_seconds
            && u.slide_seconds == u.window_seconds
    }

    /// The alert this update raises under this rule, if any.
    pub fn evaluate(&self, u: &WindowUpdate) -> Option<Alert> {
        if !self.applies_to(u) || u.count == 0 || u.count < self.min_count {
            return None;
        }
        let value = self.stat.of(u);
        self.op.holds(value, self.threshold).then(|| Alert {
            kind: "alert".into(),
            alert_id: Alert::id_for(
                &self.id,
                &u.metric,
                &u.key,
                u.window_seconds,
                u.window_start,
            ),
            rule_id: self.id.clone(),
            severity: self.severity.clone(),
            key: u.key.clone(),
            metric: u.metric.clone(),
            window_seconds: u.window_seconds,
            window_start: format_rfc3339(u.window_start),
            stat: self.stat,
            op: self.op,
            threshold: self.threshold,
            value,
            count: u.count,
        })
    }
}

/// A raised alert. Its JSON form is the `{"kind":"alert",…}` line of `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: String,
    pub alert_id: String,
    pub rule_id: String,
    pub severity: String,
    pub key: String,
    #[serde(rename = "type")]
    pub metric: String,
    pub window_seconds: i64,
    pub window_start: String,
    pub stat: Stat,
    pub op: Op,
    pub threshold: f64,
    /// The statistic's value in the update that first crossed the threshold.
    pub value: f64,
    /// Events in the window at that update.
    pub count: u64,
}

impl Alert {
    pub fn id_for(
        rule: &str,
        metric: &str,
        key: &str,
        window_seconds: i64,
        start_ms: i64,
    ) -> String {
        format!(
            "{rule}|{metric}#{key}|{window_seconds}#{}",
            format_rfc3339(start_ms)
        )
    }
}

/// Parses rules from JSON lines (blank lines and `#` comments allowed).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("rule on line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(max: f64, count: u64) -> WindowUpdate {
        WindowUpdate {
            key: "sensor-1".into(),
            metric: "temp".into(),
            window_seconds: 60,
            slide_seconds: 60,
            window_start: 60_000,
            count,
            sum: max,
            min: max,
            max,
            mean: max,
            variance: 0.0,
            version: 1,
        }
    }

    #[test]
    fn threshold_fires_only_past_the_threshold_and_matching_scope() {
        let rules = parse_rules(
            "# comment\n{\"id\":\"hot\",\"type\":\"temp\",\"window_seconds\":60,\"stat\":\"max\",\"op\":\">\",\"threshold\":80}\n",
        )
        .expect("valid");
        let rule = &rules[0];
        assert!(rule.evaluate(&update(80.0, 1)).is_none());
        let alert = rule.evaluate(&update(80.5, 1)).expect("fires");
        assert_eq!(alert.alert_id, "hot|temp#sensor-1|60#1970-01-01T00:01:00Z");
        assert_eq!(alert.value, 80.5);
        let mut other = update(99.0, 1);
        other.metric = "humidity".into();
        assert!(rule.evaluate(&other).is_none());
        let mut hour = update(99.0, 1);
        hour.window_seconds = 3600;
        assert!(rule.evaluate(&hour).is_none());
    }

    #[test]
    fn min_count_and_ops() {
        let mut rule: Rule = serde_json::from_str(
            r#"{"id":"r","type":"*","window_seconds":60,"stat":"count","op":">=","threshold":2,"min_count":3}"#,
        )
        .expect("valid");
        assert!(rule.evaluate(&update(1.0, 2)).is_none(), "below min_count");
        assert!(rule.evaluate(&update(1.0, 3)).is_some());
        rule.op = Op::Lt;
        assert!(rule.evaluate(&update(1.0, 3)).is_none());
        assert!(parse_rules("{\"id\":1}").is_err());
    }
}
