//! Enrich: join reference attributes (by `key`, cached per container) onto each event.
//! Event attributes win over reference attributes; unknown keys pass through
//! unenriched and are counted. Output is keyed by the aggregation key (`key`).

use std::collections::BTreeSet;

use crate::cache::CachedLookup;
use crate::config::EnrichConfig;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Event, Reason, Rejection};
use crate::outcome::BatchOutcome;
use crate::ports::{Attrs, Clock, EventLedger, Fate, RecordSink, ReferenceLookup};
use crate::record::{OutRecord, PACKED_RECORD_BYTES, StreamRecord, line_fits, pack_lines};
use crate::stage::{Stage, deadline_passed, decode_events, fail_whole_batch, failure_at};

pub struct Enrich<R, O, D, L, C> {
    pub reference: CachedLookup<R, C>,
    pub output: O,
    pub dead_letters: D,
    pub ledger: L,
    pub clock: C,
    pub config: EnrichConfig,
}

impl<R, O, D, L, C> Stage for Enrich<R, O, D, L, C>
where
    R: ReferenceLookup,
    O: RecordSink,
    D: RecordSink,
    L: EventLedger,
    C: Clock,
{
    fn name(&self) -> &'static str {
        "enrich"
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        if let Some(err) = deadline_passed(
            &self.clock,
            deadline_ms,
            self.config.common.deadline_margin_ms,
        ) {
            outcome.failure = Some(failure_at(records, 0, err));
            return outcome;
        }
        let (events, rejected) = decode_events(self.name(), records);
        let keys: Vec<String> = events
            .iter()
            .map(|d| d.event.key.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let reference = match self.reference.get(&keys).await {
            Ok(r) => r,
            Err(error) => {
                fail_whole_batch(&mut outcome, records, error);
                return outcome;
            }
        };
        outcome.stats.records = records.len() as u64;
        outcome.stats.events_in = (events.len() + rejected.len()) as u64;
        let mut lines = Vec::with_capacity(events.len());
        let mut dead: Vec<OutRecord> = rejected.iter().map(|r| r.out.clone()).collect();
        let mut settle: Vec<(String, Reason)> = rejected
            .iter()
            .map(|r| (r.origin.clone(), r.reason))
            .collect();
        for r in &rejected {
            outcome.stats.dead_letter(r.reason);
        }
        for decoded in events {
            let record = &records[decoded.record];
            let mut event = decoded.event;
            let attrs = reference.get(&event.key);
            if attrs.is_none() {
                outcome.stats.unenriched += 1;
            }
            match enrich_line(&mut event, attrs) {
                Ok(bytes) => {
                    lines.push((event.key, bytes));
                    outcome.stats.passed_on += 1;
                }
                Err(rejection) => {
                    outcome.stats.dead_letter(rejection.reason);
                    let origin = event.origin.clone().unwrap_or_default();
                    // The event as it arrived (reference attributes taken off again).
                    let input = serde_json::to_vec(&event).unwrap_or_default();
                    dead.push(
                        DeadLetter::for_line(self.name(), record, 0, &input, &rejection)
                            .with_origin(event.origin.clone())
                            .into_record(&record.partition_key),
                    );
                    settle.push((origin, rejection.reason));
                }
            }
        }
        let written = async {
            self.output
                .put_records(pack_lines(lines, PACKED_RECORD_BYTES)?)
                .await?;
            self.dead_letters.put_records(dead).await
        };
        if let Err(error) = written.await {
            fail_whole_batch(&mut outcome, records, error);
            return outcome;
        }
        for (origin, reason) in settle {
            self.ledger.settled(&origin, Fate::DeadLetter(reason));
        }
        outcome
    }
}

/// Step: joins reference attributes onto one event (the event's own win) and encodes
/// it. When the result cannot fit a Kinesis record, the event is left as it arrived and
/// rejected as `record_too_large`: enrich is the first stage that sees it that large.
fn enrich_line(event: &mut Event, reference: Option<&Attrs>) -> Result<Vec<u8>, Rejection> {
    let mut added = Vec::new();
    for (name, value) in reference.into_iter().flatten() {
        if !event.attrs.contains_key(name) {
            event.attrs.insert(name.clone(), value.clone());
            added.push(name.clone());
        }
    }
    let rejection = |reason, detail: String| Rejection {
        reason,
        field: None,
        detail,
        id: Some(event.id.clone()),
    };
    let bytes = match serde_json::to_vec(&*event) {
        Ok(bytes) => bytes,
        Err(e) => {
            let r = rejection(
                Reason::Unprocessable,
                format!("the enriched event could not be encoded: {e}"),
            );
            strip(event, &added);
            return Err(r);
        }
    };
    if line_fits(&event.key, bytes.len()) {
        return Ok(bytes);
    }
    let r = rejection(
        Reason::RecordTooLarge,
        format!(
            "with {} reference attributes the event has {} bytes, more than a Kinesis record holds ({PACKED_RECORD_BYTES} with its partition key)",
            added.len(),
            bytes.len()
        ),
    );
    strip(event, &added);
    Err(r)
}

fn strip(event: &mut Event, added: &[String]) {
    for name in added {
        event.attrs.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::Result;
    use crate::stage::testing::*;

    #[derive(Default)]
    struct Table {
        rows: HashMap<String, Attrs>,
        reads: AtomicUsize,
    }

    impl ReferenceLookup for Table {
        async fn lookup(&self, keys: &[String]) -> Result<HashMap<String, Attrs>> {
            self.reads.fetch_add(keys.len(), Ordering::SeqCst);
            Ok(keys
                .iter()
                .filter_map(|k| self.rows.get(k).map(|a| (k.clone(), a.clone())))
                .collect())
        }
    }

    fn stage() -> Enrich<Table, VecSink, VecSink, MapLedger, std::sync::Arc<FixedClock>> {
        let clock = std::sync::Arc::new(FixedClock::at(0));
        let mut table = Table::default();
        table.rows.insert(
            "a".into(),
            Attrs::from([
                ("site".into(), "north".into()),
                ("tier".into(), "gold".into()),
            ]),
        );
        Enrich {
            reference: CachedLookup::new(table, clock.clone(), 60_000),
            output: VecSink::named("enriched"),
            dead_letters: VecSink::named("dlq"),
            ledger: MapLedger::default(),
            clock,
            config: EnrichConfig::default(),
        }
    }

    #[test]
    fn joins_reference_attributes_and_counts_unknown_keys() {
        let s = stage();
        let records = vec![
            record("s", 1, "a", br#"{"id":"1","key":"a","type":"t","ts":1,"value":1,"attrs":{"tier":"event-wins"}}"#),
            record("s", 2, "b", br#"{"id":"2","key":"b","type":"t","ts":1,"value":1}"#),
            record("s", 3, "a", br#"{"id":"3","key":"a","type":"t","ts":1,"value":1}"#),
            record("s", 4, "x", b"{broken"),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.unenriched, 1);
        let out = s.output.lines();
        assert_eq!(out.len(), 3);
        let first = out.iter().find(|e| e["id"] == "1").expect("e1");
        assert_eq!(first["attrs"]["site"], "north");
        assert_eq!(first["attrs"]["tier"], "event-wins");
        let unknown = out.iter().find(|e| e["id"] == "2").expect("e2");
        assert!(unknown.get("attrs").is_none());
        assert_eq!(s.dead_letters.lines()[0]["reason"], "not_json");
        assert_eq!(s.dead_letters.lines()[0]["stage"], "enrich");
        // Cached: a second batch reads nothing.
        let reads = s.reference.inner().reads.load(Ordering::SeqCst);
        assert_eq!(reads, 2);
        block_on(s.process(&records, None));
        assert_eq!(s.reference.inner().reads.load(Ordering::SeqCst), reads);
    }
}
