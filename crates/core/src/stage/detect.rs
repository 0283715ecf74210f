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

use crate::cache::CachedRules;
use crate::config::DetectConfig;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Reason, Rejection};
use crate::error::Error;
use crate::item::{ClosingRange, GroupKey, UpdateLine};
use crate::outcome::BatchOutcome;
use crate::ports::{AlertStatus, AlertStore, Clock, RecordSink, RulesSource, WindowHistory};
use crate::record::{OutRecord, StreamRecord};
use crate::rules::{Alert, Rule};
use crate::stage::{Stage, deadline_passed, fail_whole_batch, failure_at};

pub struct Detect<R, A, H, O, D, C> {
    pub rules: CachedRules<R, C>,
    pub alerts: A,
    /// The aggregates table, read for `rate` and `zscore` rules.
    pub history: H,
    pub output: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: DetectConfig,
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
        }
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
        let mut closing: Vec<Closing> = Vec::new();
        let mut position: HashMap<GroupKey, usize> = HashMap::new();
        'records: for (index, record) in records.iter().enumerate() {
            let margin = self.config.common.deadline_margin_ms;
            if let Some(err) = deadline_passed(&self.clock, deadline_ms, margin) {
                raised.stop_at(index, err);
                break;
            }
            outcome.stats.records += 1;
            for (line_no, line) in record.data.split(|b| *b == b'\n').enumerate() {
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
                    if let Some(alert) = rule.evaluate(&update) {
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
                    match position.get(&group) {
                        Some(&at) => closing[at].range = closing[at].range.union(range),
                        None => {
                            position.insert(group.clone(), closing.len());
                            closing.push(Closing {
                                group,
                                range,
                                first_record: index,
                            });
                        }
                    }
                }
                outcome.stats.passed_on += 1;
            }
        }
        closing
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
            for (window_seconds, watching) in rules_by_size(rules, &c.group) {
                let lookback = watching.iter().map(|r| r.lookback()).max().unwrap_or(0);
                outcome.stats.history_reads += 1;
                let windows = match self
                    .history
                    .closed_windows(&c.group, window_seconds, c.range, lookback)
                    .await
                {
                    Ok(windows) => windows,
                    Err(e) => {
                        raised.stop_at(c.first_record, e);
                        return;
                    }
                };
                // Newest first: window i's earlier windows are i+1.., oldest closed first.
                for i in (0..windows.len()).rev() {
                    let window = &windows[i];
                    let end = window
                        .window_start
                        .saturating_add(window.window_seconds.saturating_mul(1000));
                    if !c.range.contains_end(end) {
                        continue;
                    }
                    for rule in &watching {
                        if let Some(alert) = rule.evaluate_closed(window, &windows[i + 1..]) {
                            if !self.raise(alert, c.first_record, raised, outcome).await {
                                return;
                            }
                        }
                    }
                }
            }
        }
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

/// The enabled `rate`/`zscore` rules that watch a group, by window size.
fn rules_by_size<'a>(rules: &'a [Rule], group: &GroupKey) -> BTreeMap<i64, Vec<&'a Rule>> {
    let mut by_size: BTreeMap<i64, Vec<&Rule>> = BTreeMap::new();
    for rule in rules {
        if rule.enabled
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
