//! Detection rules and the alerts they raise.
//!
//! Three kinds of rule, each comparing one statistic (`stat`) of a tumbling window of one
//! group (key, type) with a bound:
//! - `threshold`: `stat op threshold` on the window. Evaluated on every update of the
//!   window, so an alert comes as soon as the window crosses the bound.
//! - `rate`: the window's `stat` divided by the same `stat` of the immediately preceding
//!   window of the same size and group, compared with `threshold` by `op`. No preceding
//!   window with data, or a preceding value of 0: no alert.
//! - `zscore`: `z = (x − μ) / σ`, x the window's `stat`, μ and σ the mean and population
//!   standard deviation of that `stat` over the `history` most recent earlier windows of
//!   the group that have data. Fires when `|z| ≥ threshold`; with `op: ">"` only when
//!   `z ≥ threshold`, with `op: "<"` only when `z ≤ −threshold`. Fewer than `min_history`
//!   earlier windows, or σ = 0: no alert.
//!
//! `rate` and `zscore` compare whole windows, so they are evaluated on *closed* windows
//! (see [`Rule::evaluate_closed`]): on a window still filling, every first update would
//! look like a collapse of its count or sum.
//!
//! An alert is keyed by (rule, group, window), so re-delivered or repeated updates of the
//! same window raise it once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::state::item::WindowUpdate;
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
    /// A view rule's column value (the rule's `column`).
    Value,
}

impl Stat {
    /// The statistic of an envelope window (NaN for [`Stat::Value`], which only view
    /// rules take and which reads the view's row instead).
    pub fn of(self, u: &WindowUpdate) -> f64 {
        match self {
            Stat::Value => f64::NAN,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Rule files written before `kind` existed hold threshold rules only, so an absent
    /// `kind` means `threshold` (documented in docs/reference/rules.md).
    #[default]
    Threshold,
    Rate,
    Zscore,
}

impl RuleKind {
    /// Whether the kind compares whole windows, and so is evaluated once a window has
    /// closed rather than on every update.
    pub fn needs_closed_window(self) -> bool {
        matches!(self, RuleKind::Rate | RuleKind::Zscore)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Threshold => "threshold",
            RuleKind::Rate => "rate",
            RuleKind::Zscore => "zscore",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// `history` of a z-score rule when the rule does not say.
pub const DEFAULT_HISTORY: u32 = 20;
/// `min_history` of a z-score rule when the rule does not say.
pub const DEFAULT_MIN_HISTORY: u32 = 5;
/// The most earlier windows a z-score rule may look back over (each is read per closed
/// window, so this bounds detect's reads).
pub const MAX_HISTORY: u32 = 1000;
/// Rule ids go into alert ids (`rule|group|window`) and table keys.
pub const MAX_RULE_ID_CHARS: usize = 128;
/// A metric or key prefix longer than a Kinesis partition key (256 characters) can
/// match no event.
pub const MAX_KEY_CHARS: usize = 256;
/// A description is shown with each alert; this keeps alerts small.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A rule, as stored in the rules table and in rule files (JSON lines). Build one with
/// [`Rule::from_json`] (or [`parse_rules`]), which validates every field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    pub kind: RuleKind,
    /// The metric (`type`) it watches; `*` for any. Empty for a view rule.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub metric: String,
    /// Only keys starting with this prefix (empty: all keys).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_prefix: String,
    /// 0 for a view rule (the view's window is the rule's).
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub window_seconds: i64,
    /// [`Stat::Value`] for a view rule.
    pub stat: Stat,
    /// A view rule (SQL pipelines): the stored view it watches, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// A view rule: the view's output column compared (a number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// A view rule: only rows whose columns have these values (group columns).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, Value>,
    /// Required for `threshold` and `rate`; for `zscore`, absent means both sides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    pub threshold: f64,
    /// Do not fire on windows with fewer events than this (noise guard).
    #[serde(skip_serializing_if = "is_zero")]
    pub min_count: u64,
    pub severity: Severity,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub enabled: bool,
    /// `zscore` only: how many earlier windows with data make the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
    /// `zscore` only: fewer earlier windows with data than this, no alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_history: Option<u32>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

/// What detect knows of SQL views: the value of a view's column in the row an update
/// is (an aggregate item of the view's rows), when its group columns match.
pub trait ViewColumns {
    fn value(
        &self,
        u: &WindowUpdate,
        view: &str,
        column: &str,
        group: &BTreeMap<String, Value>,
    ) -> Option<f64>;
}

/// No SQL pipeline: view rules never apply.
pub struct NoViews;

impl ViewColumns for NoViews {
    fn value(
        &self,
        _: &WindowUpdate,
        _: &str,
        _: &str,
        _: &BTreeMap<String, Value>,
    ) -> Option<f64> {
        None
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Rule::from_json(&value, "").map_err(serde::de::Error::custom)
    }
}

/// Text that may quote a rule's own bytes (serde's message quotes an unknown variant
/// or field as it is; serde_json writes DEL and C1 controls of a value raw), with every
/// control character escaped as `{:?}` escapes it (`\u{1b}`, `\n`), the rest as it is:
/// an error message never carries a terminal escape sequence out of a rules file.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every field a rule has, as named in rule files and the rules table.
pub const FIELDS: [&str; 17] = [
    "view",
    "column",
    "group",
    "id",
    "kind",
    "type",
    "key_prefix",
    "window_seconds",
    "stat",
    "op",
    "threshold",
    "min_count",
    "severity",
    "description",
    "enabled",
    "history",
    "min_history",
];

/// Reads rule fields one by one, so that every error names its field.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    rule: String,
}

impl Fields<'_> {
    fn invalid(&self, field: &str, reason: impl Into<String>) -> Error {
        Error::InvalidRule {
            rule: self.rule.clone(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn optional<T: serde::de::DeserializeOwned>(&self, field: &str) -> Result<Option<T>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| {
                self.invalid(
                    field,
                    format!(
                        "{} (got {})",
                        escaped(&e.to_string()),
                        escaped(&v.to_string())
                    ),
                )
            }),
        }
    }

    fn required<T: serde::de::DeserializeOwned>(&self, field: &str) -> Result<T> {
        self.optional(field)?
            .ok_or_else(|| self.invalid(field, "is required"))
    }
}

impl Rule {
    /// Reads and validates one rule from its JSON object. `location` names it in errors
    /// when it has no usable id yet (e.g. `line 3`); may be empty.
    pub fn from_json(value: &Value, location: &str) -> Result<Rule> {
        let named = |id: Option<&str>| match (id, location) {
            (Some(id), "") => format!("{id:?}"),
            (Some(id), loc) => format!("{id:?} ({loc})"),
            (None, "") => "without an id".to_owned(),
            (None, loc) => loc.to_owned(),
        };
        let Value::Object(map) = value else {
            return Err(Error::InvalidRule {
                rule: named(None),
                field: "(rule)".into(),
                reason: format!(
                    "a rule is a JSON object, got {}",
                    escaped(&value.to_string())
                ),
            });
        };
        let fields = Fields {
            map,
            rule: named(map.get("id").and_then(Value::as_str)),
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(fields.invalid(
                &escaped(unknown),
                format!("unknown field; rule fields are {}", FIELDS.join(", ")),
            ));
        }
        let view: Option<String> = fields.optional("view")?;
        if view.is_some() {
            for field in ["type", "key_prefix", "window_seconds"] {
                if map.contains_key(field) {
                    return Err(fields.invalid(
                        field,
                        "applies to metric rules only; a view rule names `view`, `column` and \
                         optionally `group`",
                    ));
                }
            }
        } else {
            for field in ["column", "group"] {
                if map.contains_key(field) {
                    return Err(fields.invalid(field, "applies to view rules only (with `view`)"));
                }
            }
        }
        let rule = Rule {
            id: fields.required("id")?,
            kind: fields.optional("kind")?.unwrap_or_default(),
            metric: match view {
                Some(_) => String::new(),
                None => fields.required("type")?,
            },
            key_prefix: fields.optional("key_prefix")?.unwrap_or_default(),
            window_seconds: match view {
                Some(_) => 0,
                None => fields.required("window_seconds")?,
            },
            stat: match view {
                Some(_) => fields.optional("stat")?.unwrap_or(Stat::Value),
                None => fields.required("stat")?,
            },
            column: fields.optional("column")?,
            group: fields.optional("group")?.unwrap_or_default(),
            view,
            op: fields.optional("op")?,
            threshold: fields.required("threshold")?,
            min_count: fields.optional("min_count")?.unwrap_or(0),
            severity: fields.optional("severity")?.unwrap_or(Severity::Warning),
            description: fields.optional("description")?.unwrap_or_default(),
            enabled: fields.optional("enabled")?.unwrap_or(true),
            history: fields.optional("history")?,
            min_history: fields.optional("min_history")?,
        };
        rule.validate()?;
        Ok(rule)
    }

    /// Checks what types alone cannot: ranges and which fields each kind takes.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, reason: String| Error::InvalidRule {
            rule: format!("{:?}", self.id),
            field: field.to_owned(),
            reason,
        };
        if self.id.is_empty() || self.id.chars().count() > MAX_RULE_ID_CHARS {
            return Err(invalid(
                "id",
                format!("must be 1 to {MAX_RULE_ID_CHARS} characters"),
            ));
        }
        if self.id.contains('|') || self.id.chars().any(char::is_control) {
            return Err(invalid(
                "id",
                "must not contain `|` (it separates the parts of an alert id) or control characters".into(),
            ));
        }
        self.validate_target()?;
        if !self.threshold.is_finite() {
            return Err(invalid("threshold", "must be a finite number".into()));
        }
        match self.kind {
            RuleKind::Threshold | RuleKind::Rate => {
                if self.op.is_none() {
                    return Err(invalid(
                        "op",
                        format!(
                            "is required for {} rules: one of > >= < <=",
                            self.kind.as_str()
                        ),
                    ));
                }
                for (field, value) in [("history", self.history), ("min_history", self.min_history)]
                {
                    if value.is_some() {
                        return Err(invalid(field, "applies to zscore rules only".into()));
                    }
                }
            }
            RuleKind::Zscore => {
                if matches!(self.op, Some(Op::Gte | Op::Lte)) {
                    return Err(invalid(
                        "op",
                        "zscore rules take `>` (high side only), `<` (low side only) or no op (both sides)".into(),
                    ));
                }
                if self.threshold <= 0.0 {
                    return Err(invalid(
                        "threshold",
                        format!(
                            "a zscore bound is a positive number of standard deviations, got {}",
                            self.threshold
                        ),
                    ));
                }
                let history = self.history();
                if !(1..=MAX_HISTORY).contains(&history) {
                    return Err(invalid(
                        "history",
                        format!("must be 1 to {MAX_HISTORY}, got {history}"),
                    ));
                }
                let min_history = self.min_history();
                if !(1..=history).contains(&min_history) {
                    return Err(invalid(
                        "min_history",
                        format!("must be 1 to history ({history}), got {min_history}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// What the rule watches: a view's column, or a metric's statistic in a window size.
    fn validate_target(&self) -> Result<()> {
        let invalid = |field: &str, reason: String| Error::InvalidRule {
            rule: format!("{:?}", self.id),
            field: field.to_owned(),
            reason,
        };
        if let Some(view) = &self.view {
            if view.is_empty() || view.chars().count() > MAX_KEY_CHARS {
                return Err(invalid(
                    "view",
                    format!("must name a stored view (1 to {MAX_KEY_CHARS} characters)"),
                ));
            }
            if self.column.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    "column",
                    "is required for view rules: the view's output column compared".into(),
                ));
            }
            if self.stat != Stat::Value {
                return Err(invalid(
                    "stat",
                    "a view rule compares its `column`: omit `stat` (or write \"value\")".into(),
                ));
            }
            if let Some((name, _)) = self
                .group
                .iter()
                .find(|(_, v)| v.is_array() || v.is_object())
            {
                return Err(invalid(
                    "group",
                    format!(
                        "`{name}`: a group column's value is a string, number, boolean or null"
                    ),
                ));
            }
        } else if self.metric.is_empty() {
            return Err(invalid(
                "type",
                "must name a metric, or be `*` for any".into(),
            ));
        } else if self.stat == Stat::Value {
            return Err(invalid(
                "stat",
                "`value` is a view rule's (with `view` and `column`)".into(),
            ));
        }
        // Bounded so that an alert (which copies the rule's text) always fits a
        // DynamoDB item and a Kinesis record, whatever a rule file holds.
        for (field, text, max) in [
            ("type", &self.metric, MAX_KEY_CHARS),
            ("key_prefix", &self.key_prefix, MAX_KEY_CHARS),
            ("description", &self.description, MAX_DESCRIPTION_CHARS),
        ] {
            let chars = text.chars().count();
            if chars > max {
                return Err(invalid(
                    field,
                    format!("must be at most {max} characters, got {chars}"),
                ));
            }
        }
        // A window longer than a week is never a tumbling window the stage keeps.
        if self.view.is_none() && !(1..=7 * 86_400).contains(&self.window_seconds) {
            return Err(invalid(
                "window_seconds",
                format!("must be 1 to 604800 seconds, got {}", self.window_seconds),
            ));
        }
        Ok(())
    }

    /// The z-score baseline length (`history`, default 20).
    pub fn history(&self) -> u32 {
        self.history.unwrap_or(DEFAULT_HISTORY)
    }

    /// The fewest earlier windows a z-score needs (`min_history`, default 5).
    pub fn min_history(&self) -> u32 {
        self.min_history.unwrap_or(DEFAULT_MIN_HISTORY)
    }

    /// How many earlier windows of the group [`Rule::evaluate_closed`] needs to see.
    pub fn lookback(&self) -> u32 {
        match self.kind {
            RuleKind::Threshold => 0,
            RuleKind::Rate => 1,
            RuleKind::Zscore => self.history(),
        }
    }

    /// Whether the rule watches this update's group and window at all (enabled, metric,
    /// key prefix, a tumbling window of the rule's size).
    pub fn applies_to(&self, u: &WindowUpdate) -> bool {
        self.enabled
            && (self.metric == "*" || self.metric == u.metric)
            && u.key.starts_with(&self.key_prefix)
            && self.window_seconds == u.window_seconds
            && u.slide_seconds == u.window_seconds
    }

    /// What the rule compares on this update: the statistic of a metric rule that
    /// applies to it, or the column of a view rule's row; `None` when the rule does not
    /// watch this update (or the column is NULL or not a number).
    pub fn observe(&self, u: &WindowUpdate, views: &dyn ViewColumns) -> Option<f64> {
        match (&self.view, &self.column) {
            (Some(view), Some(column)) => {
                if !self.enabled {
                    return None;
                }
                views.value(u, view, column, &self.group)
            }
            _ => self.applies_to(u).then(|| self.stat.of(u)),
        }
    }

    /// The value compared, if the rule watches the update and the window holds enough
    /// events.
    fn counted(&self, u: &WindowUpdate, views: &dyn ViewColumns) -> Option<f64> {
        let x = self.observe(u, views)?;
        self.counts(u).then_some(x)
    }

    /// Whether the window holds enough events to be judged (`min_count`, and any).
    fn counts(&self, u: &WindowUpdate) -> bool {
        u.count > 0 && u.count >= self.min_count
    }

    /// The alert a `threshold` rule raises on this update, if any. Other kinds never
    /// fire here: they are judged on closed windows by [`Rule::evaluate_closed`].
    pub fn evaluate(&self, u: &WindowUpdate) -> Option<Alert> {
        self.evaluate_in(u, &NoViews)
    }

    /// [`Rule::evaluate`], view rules included.
    pub fn evaluate_in(&self, u: &WindowUpdate, views: &dyn ViewColumns) -> Option<Alert> {
        if self.kind != RuleKind::Threshold {
            return None;
        }
        let observed = self.counted(u, views)?;
        let op = self.op?;
        op.holds(observed, self.threshold)
            .then(|| self.alert(u, observed, observed, Baseline::None))
    }

    /// The alert a `rate` or `zscore` rule raises on a closed window, if any.
    /// `earlier` holds the group's earlier windows of the same size that have data, most
    /// recent first (at least [`Rule::lookback`] of them when that many exist; more are
    /// ignored). Windows of other groups or sizes in `earlier` are a caller bug and are
    /// skipped.
    pub fn evaluate_closed(
        &self,
        window: &WindowUpdate,
        earlier: &[WindowUpdate],
    ) -> Option<Alert> {
        self.evaluate_closed_in(window, earlier, &NoViews)
    }

    /// [`Rule::evaluate_closed`], view rules included.
    pub fn evaluate_closed_in(
        &self,
        window: &WindowUpdate,
        earlier: &[WindowUpdate],
        views: &dyn ViewColumns,
    ) -> Option<Alert> {
        if !self.kind.needs_closed_window() {
            return None;
        }
        let observed = self.observe(window, views);
        let history = earlier
            .iter()
            .filter(|e| {
                e.key == window.key
                    && e.metric == window.metric
                    && e.window_seconds == window.window_seconds
                    && e.slide_seconds == window.slide_seconds
                    && e.window_start < window.window_start
                    && e.count > 0
            })
            .filter_map(|e| Some((e.window_start, self.observe(e, views)?)));
        self.judge_closed(window, observed, history)
    }

    /// [`Rule::evaluate_closed_in`] on what the rule observed: `observed` on the closed
    /// window, and `history` on the group's earlier windows with data of the same size
    /// (window start, value; most recent first, windows it observed nothing on left
    /// out). The detect stage remembers these values between batches.
    pub fn judge_closed(
        &self,
        window: &WindowUpdate,
        observed: Option<f64>,
        mut history: impl Iterator<Item = (i64, f64)>,
    ) -> Option<Alert> {
        let observed = observed.filter(|_| self.counts(window))?;
        let size_ms = window.window_seconds.saturating_mul(1000);
        match self.kind {
            RuleKind::Threshold => None,
            RuleKind::Rate => {
                let (start, previous) = history.next()?;
                if start != window.window_start.saturating_sub(size_ms) || previous == 0.0 {
                    return None;
                }
                let ratio = observed / previous;
                let op = self.op?;
                (ratio.is_finite() && op.holds(ratio, self.threshold))
                    .then(|| self.alert(window, ratio, observed, Baseline::Previous(previous)))
            }
            RuleKind::Zscore => {
                let values: Vec<f64> = history
                    .take(self.history() as usize)
                    .map(|(_, v)| v)
                    .collect();
                if values.len() < self.min_history() as usize {
                    return None;
                }
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                let stddev = variance.sqrt();
                if stddev == 0.0 || !stddev.is_finite() {
                    return None;
                }
                let z = (observed - mean) / stddev;
                let fires = match self.op {
                    Some(Op::Gt) => z >= self.threshold,
                    Some(Op::Lt) => z <= -self.threshold,
                    _ => z.abs() >= self.threshold,
                };
                fires.then(|| {
                    self.alert(
                        window,
                        z,
                        observed,
                        Baseline::History {
                            mean,
                            stddev,
                            windows: values.len() as u32,
                        },
                    )
                })
            }
        }
    }

    fn alert(&self, u: &WindowUpdate, value: f64, observed: f64, baseline: Baseline) -> Alert {
        let (previous, mean, stddev, z, history) = match baseline {
            Baseline::None => (None, None, None, None, None),
            Baseline::Previous(p) => (Some(p), None, None, None, None),
            Baseline::History {
                mean,
                stddev,
                windows,
            } => (None, Some(mean), Some(stddev), Some(value), Some(windows)),
        };
        Alert {
            kind: "alert".into(),
            alert_id: Alert::id_for(
                &self.id,
                &u.metric,
                &u.key,
                u.window_seconds,
                u.window_start,
            ),
            rule_id: self.id.clone(),
            kind_of_rule: self.kind,
            severity: self.severity,
            key: u.key.clone(),
            metric: u.metric.clone(),
            window_seconds: u.window_seconds,
            window_start: format_rfc3339(u.window_start),
            stat: self.stat,
            op: self.op,
            threshold: self.threshold,
            value,
            observed,
            count: u.count,
            previous,
            mean,
            stddev,
            z,
            history,
            description: self.description.clone(),
            view: self.view.clone(),
            row: None,
        }
    }
}

enum Baseline {
    None,
    Previous(f64),
    History {
        mean: f64,
        stddev: f64,
        windows: u32,
    },
}

/// A raised alert. Its JSON form is the `{"kind":"alert",…}` line of `--json` output and
/// the alerts stream's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: String,
    pub alert_id: String,
    pub rule_id: String,
    /// Alerts stored before rule kinds existed were threshold alerts.
    #[serde(default)]
    pub kind_of_rule: RuleKind,
    pub severity: Severity,
    pub key: String,
    #[serde(rename = "type")]
    pub metric: String,
    pub window_seconds: i64,
    pub window_start: String,
    pub stat: Stat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    pub threshold: f64,
    /// What was compared with `threshold`: the statistic (threshold), the ratio to the
    /// preceding window (rate) or z (zscore).
    pub value: f64,
    /// The window's statistic when the rule fired.
    pub observed: f64,
    /// Events in the window at that update.
    pub count: u64,
    /// `rate`: the preceding window's statistic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<f64>,
    /// `zscore`: the baseline's mean, population standard deviation, z and how many
    /// earlier windows it was computed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A view rule's alert: the view, and its row when the rule fired (the group's
    /// values with every column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<Map<String, Value>>,
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

/// Parses and validates rules from JSON lines (blank lines and `#` comments allowed).
/// Errors name the line, the rule and the field. Rule ids must be unique.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>> {
    let mut rules: Vec<Rule> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let location = format!("line {}", n + 1);
        let value: Value = serde_json::from_str(trimmed).map_err(|e| Error::InvalidRule {
            rule: location.clone(),
            field: "(rule)".into(),
            reason: format!("not JSON: {}", escaped(&e.to_string())),
        })?;
        let rule = Rule::from_json(&value, &location)?;
        if rules.iter().any(|r| r.id == rule.id) {
            return Err(Error::InvalidRule {
                rule: format!("{:?} ({location})", rule.id),
                field: "id".into(),
                reason: "appears twice; rule ids are unique".into(),
            });
        }
        rules.push(rule);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(start_min: i64, stat_value: f64, count: u64) -> WindowUpdate {
        WindowUpdate {
            sum: stat_value,
            min: stat_value,
            max: stat_value,
            mean: stat_value,
            ..crate::state::item::minute_update("sensor-1", "temp", start_min * 60_000, count)
        }
    }

    fn rule(json: &str) -> Rule {
        parse_rules(json).expect("valid rule").remove(0)
    }

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidRule { field, .. } => field,
            other => panic!("not a rule error: {other}"),
        }
    }

    /// ESC ... BEL (a window title) and DEL in every field, as a string, inside a list,
    /// as a field name, as a whole line: no error message carries a control character.
    #[test]
    fn rule_errors_escape_control_characters_in_every_field() {
        let hostile = "\u{1b}]0;pwned\u{7}\u{7f}";
        let base: Value = serde_json::from_str(
            r#"{"id":"r","kind":"zscore","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1}"#,
        )
        .expect("base");
        let mut lines = Vec::new();
        for field in FIELDS.iter().chain(["not_a_field", hostile].iter()) {
            for value in [Value::from(hostile), serde_json::json!([hostile])] {
                let mut v = base.clone();
                v[*field] = value;
                lines.push(v.to_string());
            }
        }
        lines.push(serde_json::json!([hostile]).to_string());
        lines.push(format!("{{{hostile}"));
        let mut errors = 0;
        for line in &lines {
            if let Err(e) = parse_rules(line) {
                errors += 1;
                let text = e.to_string();
                assert!(!text.chars().any(char::is_control), "{line}: {text:?}");
            }
        }
        assert!(
            errors >= 2 * FIELDS.len(),
            "{errors} of {} lines rejected",
            lines.len()
        );
    }

    #[test]
    fn threshold_fires_only_past_the_threshold_and_matching_scope() {
        let rules = parse_rules(
            "# comment\n{\"id\":\"hot\",\"type\":\"temp\",\"window_seconds\":60,\"stat\":\"max\",\"op\":\">\",\"threshold\":80}\n",
        )
        .expect("valid");
        let rule = &rules[0];
        assert_eq!(rule.kind, RuleKind::Threshold, "absent kind is threshold");
        assert!(
            rule.evaluate(&update(1, 80.0, 1)).is_none(),
            "equal to the bound, op >"
        );
        let alert = rule.evaluate(&update(1, 80.5, 1)).expect("fires");
        assert_eq!(alert.alert_id, "hot|temp#sensor-1|60#1970-01-01T00:01:00Z");
        assert_eq!((alert.value, alert.observed), (80.5, 80.5));
        assert_eq!(alert.kind_of_rule, RuleKind::Threshold);
        let mut other = update(1, 99.0, 1);
        other.metric = "humidity".into();
        assert!(rule.evaluate(&other).is_none());
        let mut hour = update(1, 99.0, 1);
        hour.window_seconds = 3600;
        assert!(rule.evaluate(&hour).is_none());
        assert!(
            rule.evaluate_closed(&update(1, 99.0, 1), &[]).is_none(),
            "threshold is judged per update"
        );
    }

    #[test]
    fn min_count_ops_and_disabled_rules() {
        let mut rule = rule(
            r#"{"id":"r","type":"*","window_seconds":60,"stat":"count","op":">=","threshold":2,"min_count":3}"#,
        );
        assert!(
            rule.evaluate(&update(1, 1.0, 2)).is_none(),
            "below min_count"
        );
        assert!(
            rule.evaluate(&update(1, 1.0, 3)).is_some(),
            "equal to the bound, op >="
        );
        rule.op = Some(Op::Lt);
        assert!(rule.evaluate(&update(1, 1.0, 3)).is_none());
        rule.op = Some(Op::Gte);
        rule.enabled = false;
        assert!(rule.evaluate(&update(1, 1.0, 3)).is_none(), "disabled");
    }

    #[test]
    fn rate_compares_with_the_immediately_preceding_window() {
        let spike = rule(
            r#"{"id":"spike","kind":"rate","type":"temp","window_seconds":60,"stat":"count","op":">=","threshold":3}"#,
        );
        let now = update(10, 0.0, 30);
        // First window of the group: nothing to compare with.
        assert!(spike.evaluate_closed(&now, &[]).is_none());
        // The preceding window has no data (window 8 is not immediately before 10).
        assert!(spike.evaluate_closed(&now, &[update(8, 0.0, 5)]).is_none());
        // Preceding value 0 (a sum or mean can be 0 with data).
        let zero_sum = rule(
            r#"{"id":"s","kind":"rate","type":"temp","window_seconds":60,"stat":"sum","op":">","threshold":1}"#,
        );
        assert!(
            zero_sum
                .evaluate_closed(&update(10, 5.0, 3), &[update(9, 0.0, 2)])
                .is_none()
        );
        // Exactly the bound with >=: fires; just below: does not.
        let alert = spike
            .evaluate_closed(&now, &[update(9, 0.0, 10), update(8, 0.0, 1)])
            .expect("30/10 = 3 >= 3");
        assert_eq!(
            (alert.value, alert.observed, alert.previous),
            (3.0, 30.0, Some(10.0))
        );
        assert_eq!(alert.kind_of_rule, RuleKind::Rate);
        assert!(
            spike
                .evaluate_closed(&update(10, 0.0, 29), &[update(9, 0.0, 10)])
                .is_none()
        );
        assert!(
            spike.evaluate(&now).is_none(),
            "rate is judged on closed windows only"
        );
    }

    #[test]
    fn zscore_needs_enough_history_and_spread() {
        let anomaly = rule(
            r#"{"id":"z","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":2,"history":4,"min_history":3}"#,
        );
        // History 10, 12, 10, 12 (most recent first): mean 11, population stddev 1.
        let history = [
            update(9, 10.0, 1),
            update(8, 12.0, 1),
            update(7, 10.0, 1),
            update(6, 12.0, 1),
            update(5, 1000.0, 1),
        ];
        let alert = anomaly
            .evaluate_closed(&update(10, 13.0, 1), &history)
            .expect("z = 2, |z| >= 2");
        assert_eq!(
            (alert.mean, alert.stddev, alert.z, alert.history),
            (Some(11.0), Some(1.0), Some(2.0), Some(4))
        );
        assert!(
            anomaly
                .evaluate_closed(&update(10, 12.9, 1), &history)
                .is_none(),
            "z = 1.9"
        );
        assert!(
            anomaly
                .evaluate_closed(&update(10, 9.0, 1), &history)
                .is_some(),
            "two-sided: z = -2"
        );
        // Too little history, and no spread.
        assert!(
            anomaly
                .evaluate_closed(&update(10, 50.0, 1), &history[..2])
                .is_none()
        );
        let flat = [update(9, 10.0, 1), update(8, 10.0, 1), update(7, 10.0, 1)];
        assert!(
            anomaly
                .evaluate_closed(&update(10, 50.0, 1), &flat)
                .is_none(),
            "σ = 0"
        );
        // One side only.
        let mut high = anomaly.clone();
        high.op = Some(Op::Gt);
        assert!(
            high.evaluate_closed(&update(10, 9.0, 1), &history)
                .is_none()
        );
        assert!(
            high.evaluate_closed(&update(10, 13.0, 1), &history)
                .is_some()
        );
        high.op = Some(Op::Lt);
        assert!(
            high.evaluate_closed(&update(10, 9.0, 1), &history)
                .is_some()
        );
        assert!(
            high.evaluate_closed(&update(10, 13.0, 1), &history)
                .is_none()
        );
        // Windows of another group or later windows are not history.
        let mut foreign = history.clone();
        for u in &mut foreign[..3] {
            u.key = "sensor-2".into();
        }
        assert!(
            anomaly
                .evaluate_closed(&update(10, 13.0, 1), &foreign)
                .is_none()
        );
    }

    #[test]
    fn zscore_defaults() {
        let z = rule(
            r#"{"id":"z","kind":"zscore","type":"*","window_seconds":60,"stat":"count","threshold":3}"#,
        );
        assert_eq!((z.history(), z.min_history(), z.lookback()), (20, 5, 20));
        let four: Vec<WindowUpdate> = (1..=4).map(|m| update(10 - m, 0.0, m as u64)).collect();
        assert!(
            z.evaluate_closed(&update(10, 0.0, 1000), &four).is_none(),
            "4 < min_history 5"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"{"id":"a","type":"t","window_seconds":60,"stat":"max","op":">","threshold":"x"}"#,
                "threshold",
            ),
            (
                r#"{"id":"a","type":"t","window_seconds":60,"stat":"median","op":">","threshold":1}"#,
                "stat",
            ),
            (
                r#"{"id":"a","type":"t","window_seconds":60,"stat":"max","threshold":1}"#,
                "op",
            ),
            (
                r#"{"id":"a","type":"t","window_seconds":0,"stat":"max","op":">","threshold":1}"#,
                "window_seconds",
            ),
            (
                r#"{"id":"a","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1,"severity":"high"}"#,
                "severity",
            ),
            (
                r#"{"id":"a","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1,"colour":"red"}"#,
                "colour",
            ),
            (
                r#"{"id":"a","kind":"rate","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1,"history":3}"#,
                "history",
            ),
            (
                r#"{"id":"a","kind":"zscore","type":"t","window_seconds":60,"stat":"max","op":">=","threshold":1}"#,
                "op",
            ),
            (
                r#"{"id":"a","kind":"zscore","type":"t","window_seconds":60,"stat":"max","threshold":0}"#,
                "threshold",
            ),
            (
                r#"{"id":"a","kind":"zscore","type":"t","window_seconds":60,"stat":"max","threshold":2,"history":3,"min_history":4}"#,
                "min_history",
            ),
            (
                r#"{"id":"a","kind":"anomaly","type":"t","window_seconds":60,"stat":"max","threshold":2}"#,
                "kind",
            ),
            (
                r#"{"id":"a|b","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1}"#,
                "id",
            ),
            (
                r#"{"type":"t","window_seconds":60,"stat":"max","op":">","threshold":1}"#,
                "id",
            ),
            (
                r#"{"id":"a","type":"","window_seconds":60,"stat":"max","op":">","threshold":1}"#,
                "type",
            ),
            (
                r#"{"id":"a","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1,"enabled":"yes"}"#,
                "enabled",
            ),
        ];
        let long = |field: &str, n: usize| {
            format!(
                r#"{{"id":"a","type":"t","window_seconds":60,"stat":"max","op":">","threshold":1,"{field}":"{}"}}"#,
                "x".repeat(n)
            )
        };
        for (field, max) in [("type", 256), ("key_prefix", 256), ("description", 1024)] {
            assert!(
                parse_rules(&long(field, max)).is_ok(),
                "{field} at its limit"
            );
            let err = parse_rules(&long(field, max + 1)).expect_err("one over");
            assert_eq!(field_of(err), field);
        }
        for (json, field) in cases {
            let err = parse_rules(json).expect_err(json);
            let text = err.to_string();
            assert_eq!(field_of(err), field, "{json}: {text}");
        }
        let dup = "{\"id\":\"a\",\"type\":\"t\",\"window_seconds\":60,\"stat\":\"max\",\"op\":\">\",\"threshold\":1}\n".repeat(2);
        let err = parse_rules(&dup).expect_err("duplicate id");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(
            parse_rules("{oops")
                .expect_err("not json")
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn rules_and_alerts_round_trip_through_json() {
        let text = r#"{"id":"z","kind":"zscore","type":"temp","key_prefix":"s","window_seconds":60,"stat":"mean","op":">","threshold":3,"severity":"critical","description":"hot","enabled":false,"history":10,"min_history":2}"#;
        let r = rule(text);
        let again: Rule =
            serde_json::from_str(&serde_json::to_string(&r).expect("encodes")).expect("decodes");
        assert_eq!(again, r);
        let mut alert = rule(r#"{"id":"z","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":2,"history":4,"min_history":3}"#)
            .evaluate_closed(&update(10, 13.0, 1), &[update(9, 10.0, 1), update(8, 12.0, 1), update(7, 10.0, 1), update(6, 12.0, 1)])
            .expect("fires");
        alert.description = "d".into();
        let json = serde_json::to_value(&alert).expect("encodes");
        assert_eq!(json["kind_of_rule"], "zscore");
        assert_eq!(json["z"], 2.0);
        assert!(json.get("op").is_none(), "two-sided: no op");
        assert_eq!(
            serde_json::from_value::<Alert>(json).expect("decodes"),
            alert
        );
    }
}

#[cfg(test)]
mod view_rule_tests {
    use super::*;

    fn refusal(json: &str) -> (String, String) {
        let v: Value = serde_json::from_str(json).expect("JSON");
        match Rule::from_json(&v, "line 1") {
            Err(Error::InvalidRule { field, reason, .. }) => (field, reason),
            other => panic!("{json}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_view_rule_reads_back_as_written_and_refuses_metric_fields() {
        let line = r#"{"id":"v","view":"per_site","column":"hot","group":{"site":"lima"},"op":">=","threshold":3}"#;
        let rule =
            Rule::from_json(&serde_json::from_str(line).expect("JSON"), "").expect("a view rule");
        assert_eq!(rule.stat, Stat::Value);
        let written = serde_json::to_value(&rule).expect("encodes");
        assert!(written.get("type").is_none() && written.get("window_seconds").is_none());
        assert_eq!(Rule::from_json(&written, "").expect("reads back"), rule);
        for (json, field, says) in [
            (
                r#"{"id":"v","view":"x","op":">","threshold":1}"#,
                "column",
                "is required",
            ),
            (
                r#"{"id":"v","view":"x","column":"c","type":"t","op":">","threshold":1}"#,
                "type",
                "metric rules only",
            ),
            (
                r#"{"id":"v","view":"x","column":"c","window_seconds":60,"op":">","threshold":1}"#,
                "window_seconds",
                "metric rules only",
            ),
            (
                r#"{"id":"v","view":"x","column":"c","stat":"max","op":">","threshold":1}"#,
                "stat",
                "compares its `column`",
            ),
            (
                r#"{"id":"v","view":"x","column":"c","group":{"k":[1]},"op":">","threshold":1}"#,
                "group",
                "string, number",
            ),
            (
                r#"{"id":"v","type":"t","window_seconds":60,"stat":"max","column":"c","op":">","threshold":1}"#,
                "column",
                "view rules only",
            ),
            (
                r#"{"id":"v","type":"t","window_seconds":60,"stat":"value","op":">","threshold":1}"#,
                "stat",
                "view rule",
            ),
        ] {
            let (f, reason) = refusal(json);
            assert_eq!(f, field, "{json}: {reason}");
            assert!(reason.contains(says), "{json}: {reason}");
        }
    }

    /// A catalogue of one view row: `hot` = 4 in group site=lima.
    struct OneRow;

    impl ViewColumns for OneRow {
        fn value(
            &self,
            _: &WindowUpdate,
            view: &str,
            column: &str,
            group: &BTreeMap<String, Value>,
        ) -> Option<f64> {
            let lima = group.get("site").is_none_or(|s| s == "lima");
            (view == "per_site" && column == "hot" && lima).then_some(4.0)
        }
    }

    #[test]
    fn a_view_rule_fires_on_its_column_and_never_without_the_view() {
        let rule = |json: &str| {
            Rule::from_json(&serde_json::from_str(json).expect("JSON"), "").expect("rule")
        };
        let u = crate::state::item::minute_update("[\"lima\"]", "v123", 0, 5);
        let fires = rule(r#"{"id":"a","view":"per_site","column":"hot","op":">=","threshold":4}"#);
        let alert = fires.evaluate_in(&u, &OneRow).expect("fires");
        assert_eq!(
            (alert.value, alert.view.as_deref()),
            (4.0, Some("per_site"))
        );
        assert!(fires.evaluate(&u).is_none(), "no views, no view rule");
        let high = rule(r#"{"id":"b","view":"per_site","column":"hot","op":">","threshold":4}"#);
        assert!(high.evaluate_in(&u, &OneRow).is_none());
        let elsewhere = rule(
            r#"{"id":"c","view":"per_site","column":"hot","group":{"site":"oslo"},"op":">","threshold":0}"#,
        );
        assert!(elsewhere.evaluate_in(&u, &OneRow).is_none());
        let few = rule(
            r#"{"id":"d","view":"per_site","column":"hot","op":">","threshold":0,"min_count":6}"#,
        );
        assert!(
            few.evaluate_in(&u, &OneRow).is_none(),
            "min_count counts the window's events"
        );
    }
}
