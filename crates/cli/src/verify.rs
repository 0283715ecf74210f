//! `--verify`: the ground truth, computed from the input alone, compared with what the
//! pipeline stored. It re-implements windows, de-duplication and lateness here in the
//! plainest way (a fold in input order), sharing only the envelope decoder (validity is
//! the producer contract, not a delivery property).
//!
//! Identity of an event (exactly-once): its id within its key, type and anchor window
//! (duplicates of one event share its event time). In at-least-once mode every input
//! line is a distinct event. Lateness: per (key, type), in input order, an event is
//! late when its anchor window ended more than the allowed lateness before the start
//! of the newest anchor window that group has seen; already-counted beats late.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use sluice_core::config::{AggregateConfig, Delivery};
use sluice_core::envelope::{TimeBounds, decode_record};
use sluice_core::item::{AggregateView, WindowUpdate};
use sluice_core::rules::{Alert, Op, Rule, Stat};
use sluice_core::time::format_rfc3339;

#[derive(Clone, Copy, Debug, Default)]
struct Fold {
    count: u64,
    sum: f64,
    abs_sum: f64,
    min: f64,
    max: f64,
    /// Running mean and sum of squared deviations (Welford), for rules on the mean
    /// and the population standard deviation.
    mean: f64,
    m2: f64,
}

impl Fold {
    fn add(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.abs_sum += value.abs();
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }
}

/// What the pipeline must have produced, folded from the input one line at a time in
/// memory that follows the number of (group, window) pairs, not the number of events:
/// groups are interned once, aggregates are keyed by (group, window spec, start), and
/// de-duplication keeps one 64-bit fingerprint per counted event that has an id (an
/// event without one is unique by construction). Two distinct identities sharing a
/// fingerprint would make the truth call the second a duplicate: with 10 million
/// events that has a chance of about 3 in a million, and it would show as a
/// difference, never hide one.
#[derive(Debug)]
pub struct GroundTruth {
    config: AggregateConfig,
    bounds: TimeBounds,
    /// (key, type) → group number.
    groups: HashMap<(String, String), u32>,
    /// Per group: the start of the newest anchor window seen.
    watermark: Vec<i64>,
    /// Fingerprints of the identities counted (exactly-once mode only).
    seen: HashSet<u64>,
    /// (group, window spec, window start) → fold.
    aggregates: HashMap<(u32, u8, i64), Fold>,
    /// Input lines fed so far (positions name events without an id).
    lines: u64,
    pub events: u64,
    pub counted: u64,
    pub invalid: u64,
    pub late: u64,
    pub duplicates: u64,
}

/// The identity of an event as one fingerprint: its id within its key, type and anchor
/// window.
fn identity(id: &str, key: &str, metric: &str, start: i64) -> u64 {
    let mut h = DefaultHasher::new();
    (id, key, metric, start).hash(&mut h);
    h.finish()
}

impl GroundTruth {
    pub fn new(config: &AggregateConfig, bounds: TimeBounds) -> Self {
        GroundTruth {
            config: config.clone(),
            bounds,
            groups: HashMap::new(),
            watermark: Vec::new(),
            seen: HashSet::new(),
            aggregates: HashMap::new(),
            lines: 0,
            events: 0,
            counted: 0,
            invalid: 0,
            late: 0,
            duplicates: 0,
        }
    }

    fn group(&mut self, key: &str, metric: &str) -> u32 {
        let next = self.groups.len() as u32;
        let g = *self
            .groups
            .entry((key.to_owned(), metric.to_owned()))
            .or_insert(next);
        if g == next {
            self.watermark.push(i64::MIN);
        }
        g
    }

    /// Folds one input line (as the producer sent it) into the truth.
    pub fn feed(&mut self, line: &[u8]) {
        self.lines += 1;
        let anchor = self.config.windows.anchor();
        for decoded in decode_record(line, self.bounds) {
            self.events += 1;
            let Ok(e) = decoded.result else {
                self.invalid += 1;
                continue;
            };
            let start = e.ts - e.ts.rem_euclid(anchor.size_ms);
            let g = self.group(&e.key, &e.metric);
            // An event without an id is unique: it is never a duplicate.
            let fingerprint = (self.config.delivery == Delivery::ExactlyOnce)
                .then(|| {
                    e.id.as_deref()
                        .map(|id| identity(id, &e.key, &e.metric, start))
                })
                .flatten();
            let duplicate = fingerprint.is_some_and(|f| self.seen.contains(&f));
            let wm = self.watermark[g as usize];
            let late =
                wm != i64::MIN && start + anchor.size_ms + self.config.allowed_lateness_ms < wm;
            self.watermark[g as usize] = wm.max(start);
            if duplicate {
                self.duplicates += 1;
                continue;
            }
            if late {
                self.late += 1;
                continue;
            }
            if let Some(f) = fingerprint {
                self.seen.insert(f);
            }
            self.counted += 1;
            for (i, spec) in self.config.windows.all().iter().enumerate() {
                // Every window of this spec that contains ts, enumerated by brute force.
                let mut s = e.ts - e.ts.rem_euclid(spec.slide_ms);
                while s + spec.size_ms > e.ts {
                    let f = self.aggregates.entry((g, i as u8, s)).or_insert(Fold {
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        ..Fold::default()
                    });
                    f.add(e.value);
                    s -= spec.slide_ms;
                }
            }
        }
    }

    /// The aggregates by (key, type, window label, window start), as stored views name
    /// them.
    fn named_aggregates(&self) -> BTreeMap<(String, String, String, String), Fold> {
        let names: HashMap<u32, &(String, String)> =
            self.groups.iter().map(|(k, g)| (*g, k)).collect();
        let labels: Vec<String> = self
            .config
            .windows
            .all()
            .iter()
            .map(|s| s.label())
            .collect();
        self.aggregates
            .iter()
            .filter_map(|((g, i, start), fold)| {
                let (key, metric) = names.get(g)?;
                let label = labels.get(usize::from(*i))?;
                Some((
                    (
                        key.clone(),
                        metric.clone(),
                        label.clone(),
                        format_rfc3339(*start),
                    ),
                    *fold,
                ))
            })
            .collect()
    }
}

impl GroundTruth {
    /// The final state of every window as a window update (what the last snapshot of
    /// that window carries), for judging alerts.
    fn final_updates(&self) -> Vec<WindowUpdate> {
        let names: HashMap<u32, &(String, String)> =
            self.groups.iter().map(|(k, g)| (*g, k)).collect();
        let specs = self.config.windows.all();
        self.aggregates
            .iter()
            .filter_map(|((g, i, start), fold)| {
                let (key, metric) = names.get(g)?;
                let spec = specs.get(usize::from(*i))?;
                Some(WindowUpdate {
                    key: key.clone(),
                    metric: metric.clone(),
                    window_seconds: spec.size_ms / 1000,
                    slide_seconds: spec.slide_ms / 1000,
                    window_start: *start,
                    count: fold.count,
                    sum: fold.sum,
                    min: fold.min,
                    max: fold.max,
                    mean: fold.mean,
                    variance: if fold.count < 2 {
                        0.0
                    } else {
                        (fold.m2 / fold.count as f64).max(0.0)
                    },
                    version: 0,
                })
            })
            .collect()
    }
}

/// Whether a rule that holds on some state of a window must hold on every later one:
/// windows only grow, so a count or a maximum only rises and a minimum only falls.
/// For such rules the alerts raised must be exactly those the final windows imply.
fn holds_once_held(rule: &Rule) -> bool {
    matches!(
        (rule.stat, rule.op),
        (Stat::Count | Stat::Max, Some(Op::Gt | Op::Gte)) | (Stat::Min, Some(Op::Lt | Op::Lte))
    )
}

/// Differences between the alerts raised and the alerts the rules imply on the
/// truth's windows.
///
/// Every window's final state reaches detect (the aggregate stage emits a snapshot of
/// every window a batch touched, also on retries), so a rule that holds on a final
/// window must have raised its alert: a missing one is a difference. An alert raised
/// on an earlier state of a window whose final state no longer satisfies the rule is
/// legitimate only for rules that can stop holding as a window grows (a mean, a sum, a
/// standard deviation); for the others it is a difference, and so is an alert for a
/// window with no counted events, or one that saw more events than the window holds.
/// A final value within 1e-9 (relative) of the threshold is not judged: summation
/// order may put it on either side.
pub fn compare_alerts(truth: &GroundTruth, rules: &[Rule], raised: &[Alert]) -> Vec<String> {
    let mut diffs = Vec::new();
    let raised: BTreeMap<&str, &Alert> = raised.iter().map(|a| (a.alert_id.as_str(), a)).collect();
    let by_id: HashMap<&str, &Rule> = rules.iter().map(|r| (r.id.as_str(), r)).collect();
    // alert id → the window's final update, for every (rule, window) the rule watches.
    let mut finals: HashMap<String, WindowUpdate> = HashMap::new();
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    let mut undecided: HashSet<String> = HashSet::new();
    for update in truth.final_updates() {
        for rule in rules.iter().filter(|r| r.applies_to(&update)) {
            let id = Alert::id_for(
                &rule.id,
                &update.metric,
                &update.key,
                update.window_seconds,
                update.window_start,
            );
            let value = rule.stat.of(&update);
            let scale = value.abs().max(rule.threshold.abs()).max(1.0);
            if (value - rule.threshold).abs() <= 1e-9 * scale {
                undecided.insert(id.clone());
            } else if rule.evaluate(&update).is_some() {
                expected.insert(id.clone(), value);
            }
            finals.insert(id, update.clone());
        }
    }
    for (id, value) in &expected {
        if !raised.contains_key(id.as_str()) {
            diffs.push(format!(
                "missing alert {id}: the final window's value {value} satisfies the rule"
            ));
        }
    }
    for (id, alert) in &raised {
        if expected.contains_key(*id) || undecided.contains(*id) {
            continue;
        }
        let Some(rule) = by_id.get(alert.rule_id.as_str()) else {
            diffs.push(format!(
                "alert {id} names an unknown rule {:?}",
                alert.rule_id
            ));
            continue;
        };
        let Some(last) = finals.get(*id) else {
            diffs.push(format!("alert {id} is for a window with no counted events"));
            continue;
        };
        if alert.count > last.count {
            diffs.push(format!(
                "alert {id} saw {} events but the window holds {}",
                alert.count, last.count
            ));
        } else if holds_once_held(rule) {
            diffs.push(format!(
                "alert {id} fired at {} but the final window's value {} does not satisfy the rule",
                alert.value,
                rule.stat.of(last)
            ));
        }
    }
    diffs
}

/// The truth for a whole input at once.
pub fn ground_truth(
    lines: &[Vec<u8>],
    config: &AggregateConfig,
    bounds: TimeBounds,
) -> GroundTruth {
    let mut truth = GroundTruth::new(config, bounds);
    for line in lines {
        truth.feed(line);
    }
    truth
}

/// Differences between the truth and the stored aggregates (empty: exact).
pub fn compare(truth: &GroundTruth, views: &[AggregateView]) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut stored: BTreeMap<(String, String, String, String), &AggregateView> = BTreeMap::new();
    for v in views {
        let label = match v.slide_seconds {
            Some(slide) => format!("{}/{slide}", v.window_seconds),
            None => v.window_seconds.to_string(),
        };
        stored.insert(
            (
                v.key.clone(),
                v.metric.clone(),
                label,
                v.window_start.clone(),
            ),
            v,
        );
    }
    for (k, want) in &truth.named_aggregates() {
        let Some(have) = stored.remove(k) else {
            diffs.push(format!(
                "missing aggregate {k:?}: expected count {}",
                want.count
            ));
            continue;
        };
        if have.count != want.count {
            diffs.push(format!(
                "{k:?}: count {} expected {}",
                have.count, want.count
            ));
        }
        if have.min != want.min || have.max != want.max {
            diffs.push(format!(
                "{k:?}: min/max {}/{} expected {}/{}",
                have.min, have.max, want.min, want.max
            ));
        }
        // Summation order differs; allow 1e-9 of the magnitude summed.
        if (have.sum - want.sum).abs() > 1e-9 * want.abs_sum.max(1.0) {
            diffs.push(format!("{k:?}: sum {} expected {}", have.sum, want.sum));
        }
    }
    for (k, v) in stored {
        diffs.push(format!("unexpected aggregate {k:?} with count {}", v.count));
    }
    diffs
}

/// The clock bounds ingest applies (`MAX_CLOCK_SKEW_SECONDS` of the ingest function).
pub fn ingest_bounds(template: &sluice_local::template::Template) -> anyhow::Result<TimeBounds> {
    use sluice_core::ports::Clock;
    // The ingest function's own configuration, read the way the stage reads it.
    let env = template.function("ingest")?.env;
    let config = sluice_core::config::IngestConfig::from_reader(
        &sluice_core::config::EnvReader::new(move |k: &str| env.get(k).cloned()),
    )?;
    Ok(TimeBounds {
        now_ms: sluice_core::ports::SystemClock.now_ms(),
        max_future_skew_ms: config.max_clock_skew_ms,
    })
}

/// Every difference between what the input says and what the run stored and counted.
/// The run's counts are compared when it read the whole input (`sluice run` may start
/// on streams that earlier runs read) or when `always` says so.
pub fn verdict(
    truth: &GroundTruth,
    views: &[AggregateView],
    ledger: &sluice_local::ledger::LedgerSummary,
    alerts: Option<(&[Rule], &[Alert])>,
    always: bool,
) -> Vec<String> {
    let mut diffs = compare(truth, views);
    if let Some((rules, raised)) = alerts {
        diffs.extend(compare_alerts(truth, rules, raised));
    }
    if always || ledger.events_in == truth.events {
        for (name, have, want) in [
            ("events_in", ledger.events_in, truth.events),
            ("counted", ledger.counted, truth.counted),
            ("dead_letter", ledger.dead_letter, truth.invalid),
            ("late", ledger.late, truth.late),
            ("duplicates", ledger.duplicates, truth.duplicates),
        ] {
            if have != want {
                diffs.push(format!("{name}: pipeline {have}, ground truth {want}"));
            }
        }
    }
    diffs
}

/// `verified: exact`, or the number of differences and the first 20; on stderr when
/// stdout carries JSON lines.
pub fn write_verdict(
    out: &mut impl std::io::Write,
    diffs: &[String],
    json_mode: bool,
) -> std::io::Result<()> {
    let mut text = String::new();
    if diffs.is_empty() {
        text.push_str("verified: exact\n");
    } else {
        text.push_str(&format!("verified: {} differences\n", diffs.len()));
        for d in diffs.iter().take(20) {
            text.push_str(&format!("  {d}\n"));
        }
    }
    if json_mode {
        eprint!("{text}");
        Ok(())
    } else {
        write!(out, "{text}")
    }
}

/// Adds `"verified": "exact" | "differences"` to a summary line.
pub fn mark_summary(summary: &mut serde_json::Value, diffs: &[String]) {
    if let Some(obj) = summary.as_object_mut() {
        obj.insert(
            "verified".into(),
            serde_json::json!(if diffs.is_empty() {
                "exact"
            } else {
                "differences"
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<Vec<u8>> {
        text.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    fn rule(json: &str) -> Rule {
        serde_json::from_str(json).expect("rule")
    }

    /// The alert a rule raises on an update of the window `key`/`t`/60 s at `start`.
    fn raised(rule: &Rule, start: i64, count: u64, value: f64) -> Alert {
        rule.evaluate(&WindowUpdate {
            key: "k".into(),
            metric: "t".into(),
            window_seconds: 60,
            slide_seconds: 60,
            window_start: start,
            count,
            sum: value,
            min: value,
            max: value,
            mean: value,
            variance: 0.0,
            version: 1,
        })
        .expect("the rule holds on this update")
    }

    fn minute_truth(values: &[f64]) -> GroundTruth {
        let config = AggregateConfig::default();
        let text: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    r#"{{"id":"e{i}","key":"k","type":"t","ts":{},"value":{v}}}"#,
                    60_000 + i
                )
            })
            .collect();
        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
        ground_truth(&lines(&refs), &config, TimeBounds::unbounded())
    }

    #[test]
    fn an_alert_the_final_window_implies_must_have_been_raised() {
        let truth = minute_truth(&[10.0, 95.0, 20.0]);
        let hot = rule(
            r#"{"id":"hot","type":"t","window_seconds":60,"stat":"max","op":">","threshold":80}"#,
        );
        let diffs = compare_alerts(&truth, std::slice::from_ref(&hot), &[]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert!(
            diffs[0].starts_with("missing alert hot|t#k|60#1970-01-01T00:01:00Z"),
            "{diffs:?}"
        );
        let alert = raised(&hot, 60_000, 2, 95.0);
        assert!(compare_alerts(&truth, &[hot], &[alert]).is_empty());
    }

    #[test]
    fn an_extra_alert_is_a_difference_only_where_a_rule_cannot_stop_holding() {
        let truth = minute_truth(&[10.0, 95.0, 20.0]);
        // max > 100 never held on this window (its maximum is 95), and a maximum
        // only rises: an alert claiming 120 after two events is wrong.
        let spike = rule(
            r#"{"id":"spike","type":"t","window_seconds":60,"stat":"max","op":">","threshold":100}"#,
        );
        let wrong = raised(&spike, 60_000, 2, 120.0);
        let diffs = compare_alerts(&truth, std::slice::from_ref(&spike), &[wrong]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert!(diffs[0].contains("does not satisfy"), "{diffs:?}");
        // mean > 50 held after the second event (52.5) and not at the end (41.7).
        let warm = rule(
            r#"{"id":"warm","type":"t","window_seconds":60,"stat":"mean","op":">","threshold":50}"#,
        );
        let early = raised(&warm, 60_000, 2, 52.5);
        assert!(compare_alerts(&truth, std::slice::from_ref(&warm), &[early]).is_empty());
        // ... but not with more events than the window ever held.
        let impossible = raised(&warm, 60_000, 4, 52.5);
        assert_eq!(compare_alerts(&truth, &[warm], &[impossible]).len(), 1);
    }

    #[test]
    fn an_alert_for_a_window_without_counted_events_is_a_difference() {
        let truth = minute_truth(&[10.0]);
        let hot = rule(
            r#"{"id":"hot","type":"t","window_seconds":60,"stat":"max","op":">","threshold":5}"#,
        );
        let elsewhere = raised(&hot, 600_000, 1, 9.0);
        let ok = raised(&hot, 60_000, 1, 10.0);
        let diffs = compare_alerts(&truth, &[hot], &[ok, elsewhere]);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert!(diffs[0].contains("no counted events"), "{diffs:?}");
    }

    #[test]
    fn a_final_value_at_the_threshold_is_not_judged() {
        let truth = minute_truth(&[0.1, 0.2]);
        // 0.1 + 0.2 is 0.30000000000000004: either side of 0.3 depending on order.
        let sum = rule(
            r#"{"id":"s","type":"t","window_seconds":60,"stat":"sum","op":">","threshold":0.3}"#,
        );
        assert!(compare_alerts(&truth, std::slice::from_ref(&sum), &[]).is_empty());
        let fired = raised(&sum, 60_000, 2, 0.30000000000000004);
        assert!(compare_alerts(&truth, &[sum], &[fired]).is_empty());
    }

    #[test]
    fn truth_counts_duplicates_once_and_late_events_never() {
        let config = AggregateConfig::default();
        let input = lines(&[
            r#"{"id":"a","key":"k","type":"t","ts":60000,"value":1}"#,
            r#"{"id":"a","key":"k","type":"t","ts":60000,"value":1}"#,
            r#"{"id":"b","key":"k","type":"t","ts":1000000,"value":2}"#,
            r#"{"id":"c","key":"k","type":"t","ts":60000,"value":4}"#,
            r#"{"id":"a","key":"k","type":"t","ts":60000,"value":1}"#,
            "garbage",
        ]);
        let t = ground_truth(&input, &config, TimeBounds::unbounded());
        assert_eq!(
            (t.events, t.counted, t.duplicates, t.late, t.invalid),
            (6, 2, 2, 1, 1)
        );
        let at_least_once = AggregateConfig {
            delivery: Delivery::AtLeastOnce,
            ..AggregateConfig::default()
        };
        let t = ground_truth(&input, &at_least_once, TimeBounds::unbounded());
        assert_eq!((t.counted, t.duplicates, t.late), (3, 0, 2));
    }

    #[test]
    fn compare_reports_every_kind_of_difference() {
        let config = AggregateConfig::default();
        let t = ground_truth(
            &lines(&[r#"{"id":"a","key":"k","type":"t","ts":0,"value":1}"#]),
            &config,
            TimeBounds::unbounded(),
        );
        assert_eq!(t.named_aggregates().len(), 2);
        let view = |secs: i64, count: u64, sum: f64| AggregateView {
            kind: "aggregate".into(),
            key: "k".into(),
            metric: "t".into(),
            window_seconds: secs,
            slide_seconds: None,
            window_start: "1970-01-01T00:00:00Z".into(),
            count,
            sum,
            min: 1.0,
            max: 1.0,
            mean: 1.0,
            variance: 0.0,
        };
        assert!(compare(&t, &[view(60, 1, 1.0), view(3600, 1, 1.0)]).is_empty());
        assert_eq!(
            compare(&t, &[view(60, 2, 1.0), view(3600, 1, 1.0)]).len(),
            1
        );
        assert_eq!(
            compare(&t, &[view(60, 1, 1.5), view(3600, 1, 1.0)]).len(),
            1
        );
        assert_eq!(compare(&t, &[view(60, 1, 1.0)]).len(), 1);
    }

    #[test]
    fn events_without_an_id_are_distinct_and_the_truth_folds_line_by_line() {
        let config = AggregateConfig::default();
        let input = lines(&[
            r#"{"key":"k","type":"t","ts":60000,"value":1}"#,
            r#"{"key":"k","type":"t","ts":60000,"value":1}"#,
            r#"{"id":"a","key":"k","type":"t","ts":60000,"value":2}"#,
            r#"{"id":"a","key":"k2","type":"t","ts":60000,"value":2}"#,
        ]);
        let mut t = GroundTruth::new(&config, TimeBounds::unbounded());
        for line in &input {
            t.feed(line);
        }
        assert_eq!((t.events, t.counted, t.duplicates), (4, 4, 0));
        assert_eq!(t.seen.len(), 2, "only events with an id are remembered");
        let minute = t
            .named_aggregates()
            .into_iter()
            .find(|((key, _, label, _), _)| key == "k" && label == "60")
            .expect("minute of k");
        assert_eq!((minute.1.count, minute.1.sum), (3, 4.0));
    }
}
