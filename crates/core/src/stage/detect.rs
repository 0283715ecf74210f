//! Detect: evaluate rules on window updates and raise alerts. An alert is keyed by
//! (rule, group, window) and announced on the alerts stream once: it is stored first
//! (not yet notified), announced, then marked notified; a retry in between announces
//! it again (at-least-once on the stream, with a stable `alert_id` to de-duplicate on).

use std::collections::BTreeSet;

use crate::cache::CachedRules;
use crate::config::DetectConfig;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Reason, Rejection};
use crate::error::Error;
use crate::item::WindowUpdate;
use crate::outcome::BatchOutcome;
use crate::ports::{AlertStatus, AlertStore, Clock, RecordSink, RulesSource};
use crate::record::{OutRecord, StreamRecord};
use crate::rules::Alert;
use crate::stage::{Stage, deadline_passed, fail_whole_batch, failure_at};

pub struct Detect<R, A, O, D, C> {
    pub rules: CachedRules<R, C>,
    pub alerts: A,
    pub output: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: DetectConfig,
}

impl<R: RulesSource, A, O, D, C: Clock + Clone> Detect<R, A, O, D, C> {
    /// The one way to build the stage: the rules behind a cache that keeps them for
    /// `config.rules_cache_ttl_ms` on `clock`.
    pub fn new(
        rules: R,
        alerts: A,
        output: O,
        dead_letters: D,
        clock: C,
        config: DetectConfig,
    ) -> Self {
        Detect {
            rules: CachedRules::new(rules, clock.clone(), config.rules_cache_ttl_ms),
            alerts,
            output,
            dead_letters,
            clock,
            config,
        }
    }
}

impl<R, A, O, D, C> Stage for Detect<R, A, O, D, C>
where
    R: RulesSource,
    A: AlertStore,
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
        let mut announce: Vec<Alert> = Vec::new();
        let mut announced: BTreeSet<String> = BTreeSet::new();
        let mut dead: Vec<OutRecord> = Vec::new();
        let mut stop: Option<(usize, Error)> = None;
        'records: for (index, record) in records.iter().enumerate() {
            if let Some(err) = deadline_passed(
                &self.clock,
                deadline_ms,
                self.config.common.deadline_margin_ms,
            ) {
                stop = Some((index, err));
                break;
            }
            outcome.stats.records += 1;
            for (line_no, line) in record.data.split(|b| *b == b'\n').enumerate() {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                outcome.stats.events_in += 1;
                let update: WindowUpdate = match serde_json::from_slice(line) {
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
                        dead.push(
                            DeadLetter::for_line(self.name(), record, line_no, line, &rejection)
                                .into_record(&record.partition_key),
                        );
                        continue;
                    }
                };
                for rule in rules.iter() {
                    let Some(alert) = rule.evaluate(&update) else {
                        continue;
                    };
                    if announced.contains(&alert.alert_id) {
                        continue;
                    }
                    match self.alerts.raise(&alert).await {
                        Ok(AlertStatus::New | AlertStatus::Pending) => {
                            outcome.stats.alerts_raised += 1;
                            announced.insert(alert.alert_id.clone());
                            announce.push(alert);
                        }
                        Ok(AlertStatus::Notified) => {}
                        Err(e) => {
                            stop = Some((index, e));
                            break 'records;
                        }
                    }
                }
                outcome.stats.passed_on += 1;
            }
        }
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
            fail_whole_batch(&mut outcome, records, error);
            return outcome;
        }
        if let Some((index, error)) = stop {
            outcome.failure = Some(failure_at(records, index, error));
        }
        outcome
    }
}
