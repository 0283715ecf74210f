//! Detect: evaluate rules on window updates and raise alerts. An alert is keyed by
//! (rule, group, window) and announced on the alerts stream once: it is stored first
//! (not yet notified), announced, then marked notified; a retry in between announces
//! it again (at-least-once on the stream, with a stable `alert_id` to de-duplicate on).
//!
//! Per batch, in named steps:
//! 1. `read_updates`: every window update, in order; `threshold` rules are judged on
//!    each, and the closing range each group's updates carry is collected.
//! 2. `judge_closed`: for each group with a closing range (in order of first
//!    appearance) and each window size its enabled `rate`/`zscore` rules watch, one read
//!    of the group's history ([`WindowHistory::closed_windows`]: the windows the range
//!    closed plus the rules' lookback), then every closed window judged against the
//!    windows before it.
//! 3. `announce`: alerts to the alerts stream, dead letters, then alerts marked notified.
//!
//! A window is closed once the group's watermark has passed its end by more than the
//! allowed lateness: the aggregate stage would judge every event that could still fall
//! in it late, so its counts are final (see `GroupWatermark::closing`). The aggregate
//! stage tells which windows its latest commit closed in every update it emits, and
//! repeats it on a redelivery, so a lost emit does not lose an evaluation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::DetectConfig;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::detect::history::{KnownHistory, Observed};
use crate::detect::rules::{Alert, NoViews, Rule, ViewColumns};
use crate::error::Error;
use crate::input::dead_letter::DeadLetter;
use crate::input::envelope::{Reason, Rejection};
use crate::input::record::{OutRecord, StreamRecord};
use crate::ports::cache::CachedRules;
use crate::ports::{AlertStatus, AlertStore, Clock, RecordSink, RulesSource, WindowHistory};
use crate::stage::outcome::BatchOutcome;
use crate::stage::sql::SqlPipeline;
use crate::stage::{Stage, deadline_passed, fail_whole_batch, failure_at};
use crate::state::item::{ClosingRange, GroupKey, UpdateLine, WindowUpdate};

pub struct Detect<R, A, H, O, D, C> {
    pub rules: CachedRules<R, C>,
    pub alerts: A,
    /// The aggregates table, read for `rate` and `zscore` rules.
    pub history: H,
    pub output: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: DetectConfig,
    /// A SQL pipeline: view rules read its views' rows.
    sql: Option<Arc<SqlPipeline>>,
    /// Groups' closed windows judged in earlier batches (see [`KnownHistory`]).
    known: Mutex<KnownHistory>,
}

impl<R: RulesSource, A, H, O, D, C: Clock + Clone> Detect<R, A, H, O, D, C> {
    /// The one way to build the stage: the rules behind a cache that keeps them for
    /// `config.rules_cache_ttl_ms` on `clock`.
    pub fn new(
        rules: R,
        alerts: A,
        history: H,
        output: O,
        dead_letters: D,
        clock: C,
        config: DetectConfig,
    ) -> Self {
        Detect {
            rules: CachedRules::new(rules, clock.clone(), config.rules_cache_ttl_ms),
            alerts,
            history,
            output,
            dead_letters,
            clock,
            config,
            sql: None,
            known: Mutex::new(KnownHistory::default()),
        }
    }

    /// The stage remembering at most `bytes` of closed windows per generation between
    /// batches (0: every history read is a full one).
    pub fn with_history_cache(self, bytes: usize) -> Self {
        *self.known() = KnownHistory::with_capacity(bytes);
        self
    }

    /// The stage under a SQL pipeline: view rules judge its views' rows.
    pub fn with_sql(mut self, pipeline: Arc<SqlPipeline>) -> Self {
        self.sql = Some(pipeline);
        self
    }
}

/// What a batch has raised so far and where it must stop.
#[derive(Default)]
struct Raised {
    announce: Vec<Alert>,
    announced: BTreeSet<String>,
    dead: Vec<OutRecord>,
    /// The first record to deliver again, and why.
    stop: Option<(usize, Error)>,
}

impl Raised {
    fn stop_at(&mut self, index: usize, error: Error) {
        match &self.stop {
            Some((at, _)) if *at <= index => {}
            _ => self.stop = Some((index, error)),
        }
    }
}

/// A group whose updates carry a closing range: the union of the ranges they carry, and
/// the first record it appeared in (where a failed read makes the batch resume).
struct Closing {
    group: GroupKey,
    range: ClosingRange,
    first_record: usize,
}

impl<R, A, H, O, D, C> Detect<R, A, H, O, D, C>
where
    R: RulesSource,
    A: AlertStore,
    H: WindowHistory,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    /// Stores an alert (once per batch) and queues it for announcement. False when the
    /// store failed: the batch stops at `index`.
    async fn raise(
        &self,
        alert: Alert,
        index: usize,
        raised: &mut Raised,
        outcome: &mut BatchOutcome,
    ) -> bool {
        if raised.announced.contains(&alert.alert_id) {
            return true;
        }
        match self.alerts.raise(&alert).await {
            Ok(AlertStatus::New | AlertStatus::Pending) => {
                outcome.stats.alerts_raised += 1;
                raised.announced.insert(alert.alert_id.clone());
                raised.announce.push(alert);
                true
            }
            Ok(AlertStatus::Notified) => true,
            Err(e) => {
                raised.stop_at(index, e);
                false
            }
        }
    }

    /// Step 1: every update in order; threshold rules on each. Returns the groups with a
    /// closing range, in order of first appearance (only from records before a stop).
    async fn read_updates(
        &self,
        records: &[StreamRecord],
        rules: &[Rule],
        deadline_ms: Option<i64>,
        raised: &mut Raised,
        outcome: &mut BatchOutcome,
    ) -> Vec<Closing> {
        // Per group: its order of first appearance, its range and first record; the
        // group is moved in, never cloned (a SQL group's key is its JSON text).
        let mut closing: HashMap<GroupKey, (usize, ClosingRange, usize)> = HashMap::new();
        'records: for (index, record) in records.iter().enumerate() {
            let margin = self.config.common.deadline_margin_ms;
            if let Some(err) = deadline_passed(&self.clock, deadline_ms, margin) {
                raised.stop_at(index, err);
                break;
            }
            outcome.stats.records += 1;
            for (line_no, line) in crate::input::record::lines(&record.data).enumerate() {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                outcome.stats.events_in += 1;
                let UpdateLine {
                    update,
                    closing: range,
                } = match serde_json::from_slice(line) {
                    Ok(u) => u,
                    Err(e) => {
                        let reason = if e.is_data() {
                            Reason::WrongType
                        } else {
                            Reason::NotJson
                        };
                        outcome.stats.dead_letter(reason);
                        let rejection = Rejection {
                            reason,
                            field: None,
                            detail: format!("not a window update: {e}"),
                            id: None,
                        };
                        raised.dead.push(
                            DeadLetter::for_line(self.name(), record, line_no, line, &rejection)
                                .into_record(&record.partition_key),
                        );
                        continue;
                    }
                };
                for rule in rules {
                    if let Some(alert) = rule.evaluate_in(&update, self.views()) {
                        let alert = self.with_row(alert, &update);
                        if !self.raise(alert, index, raised, outcome).await {
                            break 'records;
                        }
                    }
                }
                if let Some(range) = range.filter(|r| r.from_ms < r.to_ms) {
                    let group = GroupKey {
                        key: update.key,
                        metric: update.metric,
                    };
                    let order = closing.len();
                    closing
                        .entry(group)
                        .and_modify(|(_, r, _)| *r = r.union(range))
                        .or_insert((order, range, index));
                }
                outcome.stats.passed_on += 1;
            }
        }
        let mut closing: Vec<(usize, Closing)> = closing
            .into_iter()
            .map(|(group, (order, range, first_record))| {
                (
                    order,
                    Closing {
                        group,
                        range,
                        first_record,
                    },
                )
            })
            .collect();
        closing.sort_unstable_by_key(|(order, _)| *order);
        closing.into_iter().map(|(_, c)| c).collect()
    }

    /// Step 2: the closed windows of each group, judged by the `rate` and `zscore` rules
    /// that watch them: one history read per group and window size. A failed read (or
    /// store) stops the batch at the group's first record, so a retry sees the group's
    /// closing range again.
    async fn judge_closed(
        &self,
        closing: &[Closing],
        rules: &[Rule],
        deadline_ms: Option<i64>,
        raised: &mut Raised,
        outcome: &mut BatchOutcome,
    ) {
        for c in closing {
            if raised
                .stop
                .as_ref()
                .is_some_and(|(at, _)| *at <= c.first_record)
            {
                break;
            }
            let margin = self.config.common.deadline_margin_ms;
            if let Some(err) = deadline_passed(&self.clock, deadline_ms, margin) {
                raised.stop_at(c.first_record, err);
                break;
            }
            for (window_seconds, watching) in rules_by_size(rules, &c.group, self.sql.as_deref()) {
                let lookback = watching.iter().map(|r| r.lookback()).max().unwrap_or(0);
                let size_ms = window_seconds.saturating_mul(1000);
                let read = self.known().plan(&c.group, size_ms, c.range, lookback);
                outcome.stats.history_reads += 1;
                let windows = match self
                    .history
                    .closed_windows(&c.group, window_seconds, read.closing, read.lookback)
                    .await
                {
                    Ok(windows) => windows,
                    Err(e) => {
                        raised.stop_at(c.first_record, e);
                        return;
                    }
                };
                // Newest first: those ending in the range, then earlier ones.
                let in_range = windows
                    .iter()
                    .take_while(|w| w.window_start.saturating_add(size_ms) >= c.range.from_ms)
                    .count();
                let complete = read.known.is_some() || !windows.is_empty();
                let observed = windows
                    .iter()
                    .map(|w| Observed {
                        start_ms: w.window_start,
                        values: watching
                            .iter()
                            .map(|r| r.observe(w, self.views()))
                            .collect(),
                    })
                    .collect();
                let history = KnownHistory::merge(observed, read.known, in_range, lookback);
                let stopped = self
                    .judge_windows(
                        &windows[..in_range],
                        &history,
                        &watching,
                        c,
                        raised,
                        outcome,
                    )
                    .await;
                if complete {
                    self.known()
                        .remember(&c.group, size_ms, c.range.to_ms, history, lookback);
                }
                if stopped {
                    return;
                }
            }
        }
    }

    /// Judges the closed windows (newest first, oldest judged first) on `history` (the
    /// same windows observed, then earlier ones). True when raising an alert failed.
    async fn judge_windows(
        &self,
        closed: &[WindowUpdate],
        history: &[Observed],
        watching: &[&Rule],
        c: &Closing,
        raised: &mut Raised,
        outcome: &mut BatchOutcome,
    ) -> bool {
        for (i, window) in closed.iter().enumerate().rev() {
            for (j, rule) in watching.iter().enumerate() {
                let earlier = history[i + 1..]
                    .iter()
                    .filter_map(|o| Some((o.start_ms, o.values[j]?)));
                if let Some(alert) = rule.judge_closed(window, history[i].values[j], earlier) {
                    let alert = self.with_row(alert, window);
                    if !self.raise(alert, c.first_record, raised, outcome).await {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Step 3: alerts out, dead letters out, then alerts marked notified. A failure
    /// here fails the whole batch (nothing is marked notified that was not sent).
    async fn announce(&self, raised: Raised, records: &[StreamRecord], outcome: &mut BatchOutcome) {
        let Raised {
            announce,
            dead,
            stop,
            ..
        } = raised;
        let out: crate::error::Result<Vec<OutRecord>> = announce
            .iter()
            .map(|a| {
                serde_json::to_vec(a)
                    .map(|data| OutRecord {
                        partition_key: a.key.clone(),
                        data,
                    })
                    .map_err(|source| Error::Encode {
                        what: "an alert",
                        source,
                    })
            })
            .collect();
        let written = async {
            self.output.put_records(out?).await?;
            self.dead_letters.put_records(dead).await?;
            for a in &announce {
                self.alerts.mark_notified(&a.alert_id).await?;
            }
            Ok::<(), Error>(())
        };
        if let Err(error) = written.await {
            fail_whole_batch(outcome, records, error);
            return;
        }
        if let Some((index, error)) = stop {
            outcome.failure = Some(failure_at(records, index, error));
        }
    }
}

impl<R, A, H, O, D, C> Detect<R, A, H, O, D, C> {
    fn known(&self) -> MutexGuard<'_, KnownHistory> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What view rules read: the pipeline's rows, or nothing without one.
    fn views(&self) -> &dyn ViewColumns {
        match &self.sql {
            Some(sql) => sql.as_ref(),
            None => &NoViews,
        }
    }

    /// A view rule's alert carries the row it fired on.
    fn with_row(&self, mut alert: Alert, u: &WindowUpdate) -> Alert {
        if alert.view.is_some() {
            alert.row = self
                .sql
                .as_ref()
                .and_then(|s| s.update_row(u))
                .map(|(_, row)| row);
        }
        alert
    }
}

/// The enabled `rate`/`zscore` rules that watch a group, by window size (a view rule
/// watches its view's groups, in the view's window when that window tumbles).
fn rules_by_size<'a>(
    rules: &'a [Rule],
    group: &GroupKey,
    sql: Option<&SqlPipeline>,
) -> BTreeMap<i64, Vec<&'a Rule>> {
    let mut by_size: BTreeMap<i64, Vec<&Rule>> = BTreeMap::new();
    let views: Vec<_> = sql
        .map(|s| s.views_of_group(&group.metric).collect())
        .unwrap_or_default();
    for rule in rules {
        if let Some(name) = &rule.view
            && !views.is_empty()
        {
            // The group holds the rows of one view, or of views alike in several sizes.
            if let Some(view) = views.iter().find(|v| v.name == *name) {
                let window = view.row_window;
                if rule.enabled && rule.kind.needs_closed_window() && window.is_tumbling() {
                    by_size.entry(window.size_secs()).or_default().push(rule);
                }
            }
            continue;
        }
        if rule.view.is_none()
            && rule.enabled
            && rule.kind.needs_closed_window()
            && (rule.metric == "*" || rule.metric == group.metric)
            && group.key.starts_with(&rule.key_prefix)
        {
            by_size.entry(rule.window_seconds).or_default().push(rule);
        }
    }
    by_size
}

impl<R, A, H, O, D, C> Stage for Detect<R, A, H, O, D, C>
where
    R: RulesSource,
    A: AlertStore,
    H: WindowHistory,
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    fn name(&self) -> &'static str {
        "detect"
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        let rules = match self.rules.get().await {
            Ok(rules) => rules,
            Err(error) => {
                fail_whole_batch(&mut outcome, records, error);
                return outcome;
            }
        };
        self.known().rules_are(&rules);
        let mut raised = Raised::default();
        let closing = self
            .read_updates(records, &rules, deadline_ms, &mut raised, &mut outcome)
            .await;
        self.judge_closed(&closing, &rules, deadline_ms, &mut raised, &mut outcome)
            .await;
        self.announce(raised, records, &mut outcome).await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    //! The stage over minimal in-memory ports: rules, an alerts table, and a window
    //! history that counts its reads and can fail for one group.
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::detect::rules::parse_rules;
    use crate::error::Result;
    use crate::ports::HistoryCut;
    use crate::stage::testing::{FixedClock, VecSink, block_on, record};
    use crate::state::item::WindowUpdate;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const MINUTE: i64 = 60_000;

    struct Rules(Arc<Vec<Rule>>);

    impl RulesSource for Rules {
        async fn rules(&self) -> Result<Arc<Vec<Rule>>> {
            Ok(self.0.clone())
        }
    }

    /// Alert id -> notified.
    #[derive(Default)]
    struct Alerts(Mutex<BTreeMap<String, bool>>);

    impl AlertStore for Alerts {
        async fn raise(&self, alert: &Alert) -> Result<AlertStatus> {
            let mut map = self.0.lock().expect("lock");
            Ok(match map.get(&alert.alert_id) {
                None => {
                    map.insert(alert.alert_id.clone(), false);
                    AlertStatus::New
                }
                Some(false) => AlertStatus::Pending,
                Some(true) => AlertStatus::Notified,
            })
        }
        async fn mark_notified(&self, alert_id: &str) -> Result<()> {
            self.0
                .lock()
                .expect("lock")
                .insert(alert_id.to_owned(), true);
            Ok(())
        }
    }

    /// Stored windows; reads of `failing` keys fail (retryably) while it is set.
    #[derive(Default)]
    struct History {
        windows: Vec<WindowUpdate>,
        reads: AtomicU32,
        /// Windows every read returned, summed.
        returned: AtomicU32,
        failing: Mutex<Option<String>>,
    }

    impl WindowHistory for History {
        async fn closed_windows(
            &self,
            group: &GroupKey,
            window_seconds: i64,
            closing: ClosingRange,
            lookback: u32,
        ) -> Result<Vec<WindowUpdate>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.failing.lock().expect("lock").as_deref() == Some(group.key.as_str()) {
                return Err(Error::Throttled {
                    service: "dynamodb",
                    operation: "Query",
                    message: "test".into(),
                });
            }
            let mut mine: Vec<WindowUpdate> = self
                .windows
                .iter()
                .filter(|w| {
                    w.key == group.key
                        && w.metric == group.metric
                        && w.window_seconds == window_seconds
                })
                .cloned()
                .collect();
            mine.sort_by_key(|w| std::cmp::Reverse(w.window_start));
            let mut cut = HistoryCut::new(closing, lookback);
            for w in mine {
                if !cut.push(w) {
                    break;
                }
            }
            let got = cut.finish();
            self.returned.fetch_add(got.len() as u32, Ordering::SeqCst);
            Ok(got)
        }
    }

    type TestDetect = Detect<Rules, Arc<Alerts>, Arc<History>, VecSink, VecSink, Arc<FixedClock>>;

    fn stage(rules: &str, history: Vec<WindowUpdate>) -> (TestDetect, Arc<Alerts>, Arc<History>) {
        let alerts = Arc::new(Alerts::default());
        let history = Arc::new(History {
            windows: history,
            ..History::default()
        });
        let stage = Detect::new(
            Rules(Arc::new(parse_rules(rules).expect("rules"))),
            alerts.clone(),
            history.clone(),
            VecSink::named("alerts"),
            VecSink::named("dlq"),
            Arc::new(FixedClock::at(T0)),
            DetectConfig::default(),
        );
        (stage, alerts, history)
    }

    /// A 60 s window of `key` (metric `temp`) starting `minute` minutes after T0.
    fn window(key: &str, minute: i64, count: u64, mean: f64) -> WindowUpdate {
        WindowUpdate {
            sum: mean * count as f64,
            min: mean,
            max: mean,
            mean,
            ..crate::state::item::minute_update(key, "temp", T0 + minute * MINUTE, count)
        }
    }

    /// Windows ending from minute `from` to before minute `to` (after T0) closed.
    fn closing(from: i64, to: i64) -> Option<ClosingRange> {
        Some(ClosingRange {
            from_ms: T0 + from * MINUTE,
            to_ms: T0 + to * MINUTE,
        })
    }

    fn records(lines: &[(WindowUpdate, Option<ClosingRange>)]) -> Vec<StreamRecord> {
        lines
            .iter()
            .enumerate()
            .map(|(i, (update, closing))| {
                let line = UpdateLine {
                    update: update.clone(),
                    closing: *closing,
                };
                let data = serde_json::to_vec(&line).expect("json");
                record("s0", i as u64 + 1, &update.key, &data)
            })
            .collect()
    }

    fn announced(stage: &TestDetect) -> Vec<Alert> {
        stage
            .output
            .lines()
            .into_iter()
            .map(|v| serde_json::from_value(v).expect("an alert"))
            .collect()
    }

    const RATE: &str = r#"{"id":"burst","kind":"rate","type":"temp","window_seconds":60,"stat":"count","op":">=","threshold":3}"#;

    #[test]
    fn a_rate_alert_fires_once_its_window_closes_and_on_that_window_only() {
        // Counts 10, 10, 30, 5 in minutes 0..=3: minute 2 is three times minute 1.
        let history = vec![
            window("s", 0, 10, 1.0),
            window("s", 1, 10, 1.0),
            window("s", 2, 30, 1.0),
            window("s", 3, 5, 1.0),
        ];
        let (stage, _, reads) = stage(RATE, history.clone());
        // Minute 2 still filling (no closing range): nothing, and nothing read.
        let out = block_on(stage.process(&records(&[(history[2].clone(), None)]), None));
        assert!(out.is_complete());
        assert_eq!((out.stats.alerts_raised, out.stats.history_reads), (0, 0));
        // Minutes 0 and 1 closed (ends in [1, 3)): no window there crosses.
        let out = block_on(stage.process(&records(&[(history[3].clone(), closing(1, 3))]), None));
        assert_eq!((out.stats.alerts_raised, out.stats.history_reads), (0, 1));
        // Minute 2 closes (end 3 in [3, 4)): it fires, and minute 3 (not closed) does not.
        let out = block_on(stage.process(&records(&[(history[3].clone(), closing(3, 4))]), None));
        assert_eq!((out.stats.alerts_raised, out.stats.history_reads), (1, 1));
        let alerts = announced(&stage);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].alert_id, "burst|temp#s|60#2026-01-01T00:02:00Z");
        assert_eq!(
            (alerts[0].value, alerts[0].observed, alerts[0].previous),
            (3.0, 30.0, Some(10.0))
        );
        assert_eq!(reads.reads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn zscore_edges_through_the_stage() {
        let rules = r#"{"id":"z","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":2,"history":4,"min_history":3}"#;
        let mut history = Vec::new();
        // Baselines of minutes 5..=9 (minute 5 is beyond `history` 4 and ignored).
        let alternating = [1000.0, 12.0, 10.0, 12.0, 10.0]; // mean 11, σ 1 over 6..=9
        for (key, baseline, now) in [
            ("edge", &alternating[..], 13.0),  // z = 2 = the bound: fires
            ("below", &alternating[..], 12.9), // z = 1.9: no
            ("few", &alternating[3..], 50.0),  // 2 earlier windows < min_history 3
            ("flat", &[10.0; 5][..], 50.0),    // σ = 0
        ] {
            for (i, v) in baseline.iter().enumerate() {
                let minute = 10 - baseline.len() as i64 + i as i64;
                history.push(window(key, minute, 1, *v));
            }
            history.push(window(key, 10, 1, now));
        }
        let (stage, _, _) = stage(rules, history.clone());
        let lines: Vec<_> = ["edge", "below", "few", "flat"]
            .iter()
            .map(|k| (window(k, 10, 1, 0.0), closing(11, 12)))
            .collect();
        let out = block_on(stage.process(&records(&lines), None));
        assert!(out.is_complete());
        assert_eq!(out.stats.history_reads, 4, "one read per group");
        let alerts = announced(&stage);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].key, "edge");
        assert_eq!(
            (
                alerts[0].mean,
                alerts[0].stddev,
                alerts[0].z,
                alerts[0].history
            ),
            (Some(11.0), Some(1.0), Some(2.0), Some(4))
        );
        assert_eq!(
            alerts[0].observed, 13.0,
            "the stored window, not the update"
        );
    }

    /// A line whose row is not a JSON array is no window update: a `wrong_type` dead
    /// letter naming it, and the batch goes on.
    #[test]
    fn an_update_whose_row_is_not_an_array_is_a_dead_letter() {
        let (stage, _, _) = stage(RATE, Vec::new());
        let good = serde_json::to_value(UpdateLine {
            update: window("s", 0, 1, 1.0),
            closing: None,
        })
        .expect("json");
        let mut bad = good.clone();
        bad["row"] = serde_json::json!({"n": 1});
        let data = format!("{bad}\n{good}");
        let batch = [record("s0", 1, "s", data.as_bytes())];
        let outcome = block_on(stage.process(&batch, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.passed_on, 1);
        let dead = stage.dead_letters.lines();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["reason"], "wrong_type");
        let detail = dead[0]["detail"].as_str().expect("a detail");
        assert!(detail.contains("a row is a JSON array"), "{detail}");
    }

    #[test]
    fn redelivered_updates_raise_nothing_new() {
        let history = vec![window("s", 0, 1, 1.0), window("s", 1, 5, 1.0)];
        let (stage, alerts, _) = stage(RATE, history.clone());
        let batch = records(&[(history[1].clone(), closing(2, 3))]);
        let first = block_on(stage.process(&batch, None));
        assert_eq!(first.stats.alerts_raised, 1);
        let again = block_on(stage.process(&batch, None));
        assert!(again.is_complete());
        assert_eq!(again.stats.alerts_raised, 0);
        assert_eq!(announced(&stage).len(), 1);
        assert_eq!(alerts.0.lock().expect("lock").len(), 1);
    }

    #[test]
    fn a_failed_history_read_retries_from_the_groups_first_record() {
        let history = vec![
            window("a", 0, 1, 1.0),
            window("a", 1, 5, 1.0),
            window("b", 0, 1, 1.0),
            window("b", 1, 5, 1.0),
        ];
        let (stage, _, reads) = stage(RATE, history.clone());
        *reads.failing.lock().expect("lock") = Some("b".into());
        let batch = records(&[
            (history[1].clone(), closing(2, 3)),
            (history[3].clone(), closing(2, 3)),
            (history[1].clone(), closing(2, 3)),
        ]);
        let out = block_on(stage.process(&batch, None));
        let failure = out.failure.expect("retry");
        assert_eq!(failure.index, 1, "b's first record");
        assert!(failure.error.is_retryable());
        assert_eq!(announced(&stage).len(), 1, "a's alert went out");
        // Lambda delivers again from b's record: b's alert, a's again de-duplicated.
        *reads.failing.lock().expect("lock") = None;
        let out = block_on(stage.process(&batch[1..], None));
        assert!(out.is_complete());
        assert_eq!(out.stats.alerts_raised, 1);
        let keys: Vec<String> = announced(&stage).into_iter().map(|a| a.key).collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn a_backfill_closing_many_windows_reads_once_per_group_and_size() {
        // Sixty minutes; every tenth one spikes to 5 times the minute before.
        let history: Vec<WindowUpdate> = (0..60)
            .map(|m| window("s", m, if m % 10 == 5 { 10 } else { 2 }, 1.0))
            .collect();
        let rules = format!(
            "{RATE}\n{}\n{}",
            r#"{"id":"drop","kind":"rate","type":"*","window_seconds":60,"stat":"count","op":"<=","threshold":0.2}"#,
            r#"{"id":"hourly","kind":"rate","type":"temp","window_seconds":3600,"stat":"count","op":">","threshold":1}"#,
        );
        let (stage, _, _) = stage(&rules, history.clone());
        // Many updates of the group, all carrying the one range the backfill closed.
        let lines: Vec<_> = history[55..]
            .iter()
            .map(|w| (w.clone(), closing(0, 56)))
            .collect();
        let out = block_on(stage.process(&records(&lines), None));
        assert!(out.is_complete());
        assert_eq!(
            out.stats.history_reads, 2,
            "60 s rules share one read; 3600 s one"
        );
        let mut ids: Vec<String> = announced(&stage).into_iter().map(|a| a.alert_id).collect();
        ids.sort();
        let mut want = Vec::new();
        for m in [5, 15, 25, 35, 45] {
            want.push(format!("burst|temp#s|60#2026-01-01T00:{m:02}:00Z"));
            want.push(format!("drop|temp#s|60#2026-01-01T00:{:02}:00Z", m + 1));
        }
        // Minute 55 ends at 56, outside [0, 56): not closed yet.
        want.sort();
        assert_eq!(ids, want);
    }

    #[test]
    fn disabled_and_unrelated_rules_cost_no_read() {
        let rules = r#"{"id":"off","kind":"rate","type":"temp","window_seconds":60,"stat":"count","op":">","threshold":1,"enabled":false}
{"id":"other","kind":"zscore","type":"humidity","window_seconds":60,"stat":"mean","threshold":3}
{"id":"prefix","kind":"zscore","type":"*","key_prefix":"pump-","window_seconds":60,"stat":"mean","threshold":3}"#;
        let (stage, _, _) = stage(rules, Vec::new());
        let out =
            block_on(stage.process(&records(&[(window("s", 1, 1, 1.0), closing(0, 2))]), None));
        assert!(out.is_complete());
        assert_eq!(out.stats.history_reads, 0);
    }

    #[test]
    fn lookback_windows_are_history_and_not_judged_again() {
        // Minute 2 would fire against minutes 0 and 1 (mean 2, σ 1, z = 3), but it closed
        // in an earlier range; this range closes minute 3 only (z ≈ 0.6).
        let rules = r#"{"id":"z","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":3,"history":3,"min_history":2}"#;
        let history = vec![
            window("s", 0, 1, 3.0),
            window("s", 1, 1, 1.0),
            window("s", 2, 1, 5.0),
            window("s", 3, 1, 4.0),
        ];
        let (stage, _, _) = stage(rules, history.clone());
        let out = block_on(stage.process(&records(&[(history[3].clone(), closing(4, 5))]), None));
        assert!(out.is_complete());
        assert_eq!(out.stats.history_reads, 1);
        assert!(announced(&stage).is_empty(), "{:?}", announced(&stage));
        // Its own range judges minute 2.
        let out = block_on(stage.process(&records(&[(history[3].clone(), closing(3, 4))]), None));
        assert_eq!(out.stats.alerts_raised, 1);
        assert_eq!(announced(&stage)[0].z, Some(3.0));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Remembering closed windows between batches changes what is read, never what
        /// is raised: the same batches, with ranges that follow on, repeat, overlap and
        /// skip ahead, raise the same alerts with and without the memory, in the same
        /// order, while the remembering stage reads fewer windows.
        #[test]
        fn remembered_windows_raise_what_full_reads_raise(
            minutes in proptest::collection::vec((0u64..4, 0u8..20), 40),
            steps in proptest::collection::vec((0i64..4, 1i64..4), 1..14),
        ) {
            let rules = format!(
                "{RATE}\n{}\n{}",
                r#"{"id":"z","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":1.5,"history":4,"min_history":2}"#,
                r#"{"id":"low","kind":"zscore","type":"temp","window_seconds":60,"stat":"count","op":"<","threshold":1,"history":3,"min_history":1,"min_count":2}"#,
            );
            // Minutes with no events are not stored, as the aggregates table holds none.
            let history: Vec<WindowUpdate> = minutes
                .iter()
                .enumerate()
                .filter(|(_, (count, _))| *count > 0)
                .flat_map(|(m, (count, mean))| {
                    ["a", "b"].map(|key| window(key, m as i64, *count, f64::from(*mean)))
                })
                .collect();
            let (remembering, _, remembering_reads) = stage(&rules, history.clone());
            let (forgetting, _, forgetting_reads) = stage(&rules, history.clone());
            let forgetting = forgetting.with_history_cache(0);
            // Each step: back up (a redelivery or overlap) or skip ahead, then close.
            let mut to = 1;
            for (shift, len) in steps {
                let from = match shift {
                    0 => to - 1,
                    1 | 2 => to,
                    _ => to + 2,
                }
                .max(0);
                to = from + len;
                let lines: Vec<_> = ["a", "b"]
                    .map(|key| (window(key, to, 1, 1.0), closing(from, to)))
                    .into();
                let batch = records(&lines);
                let got = block_on(remembering.process(&batch, None));
                let want = block_on(forgetting.process(&batch, None));
                proptest::prop_assert!(got.is_complete() && want.is_complete());
                proptest::prop_assert_eq!(got.stats.history_reads, want.stats.history_reads);
            }
            proptest::prop_assert_eq!(announced(&remembering), announced(&forgetting));
            let read = |h: &History| h.returned.load(Ordering::SeqCst);
            proptest::prop_assert!(read(&remembering_reads) <= read(&forgetting_reads));
        }
    }

    #[test]
    fn a_group_judged_batch_after_batch_reads_only_its_new_windows() {
        let rules = r#"{"id":"z","kind":"zscore","type":"temp","window_seconds":60,"stat":"mean","threshold":3,"history":20,"min_history":5}"#;
        // Calm minutes 0..30, then minute 30 spikes.
        let history: Vec<WindowUpdate> = (0..31)
            .map(|m| {
                window(
                    "s",
                    m,
                    1,
                    if m == 30 {
                        50.0
                    } else {
                        f64::from(m as u8 % 3)
                    },
                )
            })
            .collect();
        let (stage, _, reads) = stage(rules, history.clone());
        let mut returned = Vec::new();
        for m in 25..32 {
            let before = reads.returned.load(Ordering::SeqCst);
            let batch = records(&[(window("s", m + 1, 1, 1.0), closing(m, m + 1))]);
            assert!(block_on(stage.process(&batch, None)).is_complete());
            returned.push(reads.returned.load(Ordering::SeqCst) - before);
        }
        // The first read is full (the window and 20 before it); then one window each.
        assert_eq!(returned, [21, 1, 1, 1, 1, 1, 1]);
        let alerts = announced(&stage);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].history, Some(20));
        assert_eq!(alerts[0].window_start, "2026-01-01T00:30:00Z");
    }
}
