//! Enrich: join reference attributes (by `key`, cached per container) onto each event.
//! Event attributes win over reference attributes; unknown keys pass through
//! unenriched and are counted. Output is keyed by the aggregation key (`key`).

use std::collections::BTreeSet;

use crate::config::EnrichConfig;
use crate::error::Result;
use crate::input::dead_letter::DeadLetter;
use crate::input::envelope::{Event, Reason, Rejection};
use crate::input::record::{LinePacker, OutRecord, PACKED_RECORD_BYTES, StreamRecord, line_fits};
use crate::ports::cache::CachedLookup;
use crate::ports::{Attrs, Clock, RecordSink, ReferenceLookup};
use crate::stage::outcome::{Accounting, BatchOutcome, Fate, StageStats};
use crate::stage::{
    FLUSH_BYTES, LINE_CAPACITY, Rejected, Stage, deadline_passed, decode_events, fail_whole_batch,
    failure_at, line_bytes,
};

pub struct Enrich<R, O, D, C> {
    pub reference: CachedLookup<R, C>,
    pub output: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: EnrichConfig,
}

impl<R: ReferenceLookup, O, D, C: Clock + Clone> Enrich<R, O, D, C> {
    /// The one way to build the stage: the reference table behind a cache that keeps
    /// each key for `config.cache_ttl_ms` on `clock`.
    pub fn new(reference: R, output: O, dead_letters: D, clock: C, config: EnrichConfig) -> Self {
        Enrich {
            reference: CachedLookup::new(reference, clock.clone(), config.cache_ttl_ms),
            output,
            dead_letters,
            clock,
            config,
        }
    }
}

impl<R, O, D, C> Stage for Enrich<R, O, D, C>
where
    R: ReferenceLookup,
    O: RecordSink,
    D: RecordSink,
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
        // Distinct keys by reference first: one `String` per key, not per event.
        let keys: Vec<String> = events
            .iter()
            .map(|d| d.event.key.as_str())
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let reference = match self.reference.get(&keys).await {
            Ok(r) => r,
            Err(error) => {
                fail_whole_batch(&mut outcome, records, error);
                return outcome;
            }
        };
        let mut out = Pending::default();
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        let mut rejected = rejected.into_iter().peekable();
        // Records before `written_upto` are written, with the stats they had.
        let mut written_upto = 0;
        let mut written_stats = StageStats::default();
        let mut events = events.into_iter().peekable();
        while let Some(decoded) = events.next() {
            let record = &records[decoded.record];
            let mut event = decoded.event;
            let attrs = reference.get(&event.key);
            if attrs.is_none() {
                outcome.stats.unenriched += 1;
            }
            outcome.stats.events_in += 1;
            // Encoded into one reused buffer and copied once, into its key's record.
            let packed = enrich_line(&mut event, attrs, &mut line).and_then(|()| {
                out.lines.push(&event.key, &line).map_err(|e| Rejection {
                    reason: Reason::RecordTooLarge,
                    field: None,
                    detail: e.to_string(),
                    id: Some(event.id.clone()),
                })
            });
            match packed {
                Ok(()) => {
                    out.bytes += event.key.len() + line.len();
                    outcome.stats.passed_on += 1;
                }
                Err(rejection) => {
                    outcome.stats.dead_letter(rejection.reason);
                    // decode_events gives every event an origin (its own or its position).
                    let origin = event
                        .origin
                        .clone()
                        .unwrap_or_else(|| record.origin_of_line(decoded.line));
                    let input = line_bytes(record, decoded.line);
                    let letter =
                        DeadLetter::for_line(self.name(), record, decoded.line, input, &rejection)
                            .with_origin(Some(origin.clone()))
                            .into_record(&record.partition_key);
                    out.bytes += letter.data.len();
                    out.dead.push(letter);
                    out.settle
                        .push((origin, Fate::DeadLetter(rejection.reason)));
                }
            }
            // Write at a record boundary once a flush's worth is buffered: the joined
            // lines of a batch can be far larger than the batch (a 400 KB reference
            // item joined onto thousands of small events).
            let boundary = events.peek().map_or(records.len(), |next| next.record);
            if out.bytes >= FLUSH_BYTES && boundary > decoded.record {
                take_rejected(&mut rejected, boundary, &mut out, &mut outcome.stats);
                outcome.stats.records = boundary as u64;
                if let Err(error) = self.write(&mut out, &mut outcome.accounting).await {
                    return partial_failure(outcome, records, written_upto, written_stats, error);
                }
                written_upto = boundary;
                written_stats = outcome.stats.clone();
            }
        }
        take_rejected(&mut rejected, records.len(), &mut out, &mut outcome.stats);
        outcome.stats.records = records.len() as u64;
        if let Err(error) = self.write(&mut out, &mut outcome.accounting).await {
            return partial_failure(outcome, records, written_upto, written_stats, error);
        }
        outcome
    }
}

impl<R, O: RecordSink, D: RecordSink, C> Enrich<R, O, D, C> {
    /// Step: writes the buffered lines (packed per key) and dead letters; only then do
    /// their fates join the outcome's accounting.
    async fn write(&self, out: &mut Pending, accounting: &mut Accounting) -> Result<()> {
        let Pending {
            lines,
            dead,
            settle,
            bytes: _,
        } = std::mem::take(out);
        self.output.put_records(lines.finish()).await?;
        self.dead_letters.put_records(dead).await?;
        accounting.settled.extend(settle);
        Ok(())
    }
}

/// What enrich has yet to write, and its size in bytes.
struct Pending {
    /// Enriched lines, packed per key as they come.
    lines: LinePacker,
    dead: Vec<OutRecord>,
    settle: Vec<(String, Fate)>,
    bytes: usize,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            lines: LinePacker::new(PACKED_RECORD_BYTES),
            dead: Vec::new(),
            settle: Vec::new(),
            bytes: 0,
        }
    }
}

/// Moves the lines `decode_events` rejected in records before `boundary` into what is
/// to be written.
fn take_rejected(
    rejected: &mut std::iter::Peekable<std::vec::IntoIter<Rejected>>,
    boundary: usize,
    out: &mut Pending,
    stats: &mut StageStats,
) {
    while let Some(r) = rejected.next_if(|r| r.record < boundary) {
        stats.events_in += 1;
        stats.dead_letter(r.reason);
        for letter in r.dead_letters() {
            out.bytes += letter.data.len();
            out.dead.push(letter.clone());
        }
        out.settle.push((r.origin, Fate::DeadLetter(r.reason)));
    }
}

/// A write failed: retry from the first record not yet written (the whole batch when
/// nothing was), keeping what was written and its stats.
fn partial_failure(
    mut outcome: BatchOutcome,
    records: &[StreamRecord],
    written_upto: usize,
    written_stats: StageStats,
    error: crate::Error,
) -> BatchOutcome {
    if written_upto == 0 {
        fail_whole_batch(&mut outcome, records, error);
    } else {
        outcome.stats = written_stats;
        outcome.failure = Some(failure_at(records, written_upto, error));
    }
    outcome
}

/// Step: joins reference attributes onto one event (the event's own win) and encodes
/// it. When the result cannot fit a Kinesis record, the event is rejected as
/// `record_too_large` (enrich is the first stage that sees it that large) and its
/// dead letter carries the line as it arrived.
/// The line is encoded into `bytes` (cleared first).
///
/// Public so that `--verify`'s ground truth applies this very rule to the events it
/// folds, with the reference attributes the pipeline was built with.
pub fn enrich_line(
    event: &mut Event,
    reference: Option<&Attrs>,
    bytes: &mut Vec<u8>,
) -> Result<(), Rejection> {
    let mut added = 0;
    for (name, value) in reference.into_iter().flatten() {
        if !event.attrs.contains_key(name) {
            event.attrs.insert(name.clone(), value.clone());
            added += 1;
        }
    }
    let rejection = |reason, detail: String| Rejection {
        reason,
        field: None,
        detail,
        id: Some(event.id.clone()),
    };
    bytes.clear();
    serde_json::to_writer(&mut *bytes, &*event).map_err(|e| {
        rejection(
            Reason::Unprocessable,
            format!("the enriched event could not be encoded: {e}"),
        )
    })?;
    if line_fits(&event.key, bytes.len()) {
        return Ok(());
    }
    Err(rejection(
        Reason::RecordTooLarge,
        format!(
            "with {added} reference attributes the event has {} bytes, more than a Kinesis record holds ({PACKED_RECORD_BYTES} with its partition key)",
            bytes.len()
        ),
    ))
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

    type TestStage = Booked<Enrich<Table, VecSink, VecSink, std::sync::Arc<FixedClock>>>;

    fn stage() -> TestStage {
        let mut table = Table::default();
        table.rows.insert(
            "a".into(),
            Attrs::from([
                ("site".into(), "north".into()),
                ("tier".into(), "gold".into()),
            ]),
        );
        stage_with(table)
    }

    fn stage_with(table: Table) -> TestStage {
        let config = EnrichConfig {
            cache_ttl_ms: 60_000,
            ..EnrichConfig::default()
        };
        Booked::new(Enrich::new(
            table,
            VecSink::named("enriched"),
            VecSink::named("dlq"),
            std::sync::Arc::new(FixedClock::at(0)),
            config,
        ))
    }

    /// Joined lines can be far larger than the batch: enrich writes every
    /// `FLUSH_BYTES` at a record boundary, and a write failing after an earlier one
    /// succeeded retries from the first unwritten record with the fates of what was
    /// written only.
    #[test]
    fn a_batch_that_grows_past_a_flush_is_written_in_parts_and_retried_from_the_rest() {
        let mut table = Table::default();
        table.rows.insert(
            "a".into(),
            Attrs::from([("blob".into(), "b".repeat(300_000))]),
        );
        let config = EnrichConfig {
            cache_ttl_ms: 60_000,
            ..EnrichConfig::default()
        };
        let s = Booked::new(Enrich::new(
            table,
            FailsAfter::new(VecSink::named("enriched"), 1),
            VecSink::named("dlq"),
            std::sync::Arc::new(FixedClock::at(0)),
            config,
        ));
        // 40 records of one small event and one junk line each: 12 MB joined.
        let records: Vec<_> = (0..40u64)
            .map(|i| {
                let body =
                    format!(r#"{{"id":"{i}","key":"a","type":"t","ts":1,"value":1}}"#) + "\njunk";
                record("s", i + 1, "a", body.as_bytes())
            })
            .collect();
        let outcome = block_on(s.process(&records, None));
        let failure = outcome.failure.expect("the second write fails");
        assert!(failure.error.is_retryable());
        assert!(
            failure.index > 0 && failure.index < records.len(),
            "{}",
            failure.index
        );
        let written = s.output.inner.lines().len();
        assert_eq!(written, failure.index, "one line per written record");
        assert_eq!(outcome.stats.passed_on, failure.index as u64);
        let dead = s.dead_letters.lines();
        assert_eq!(
            dead.len(),
            failure.index,
            "junk lines of written records only"
        );
        assert_eq!(
            s.ledger.fates.lock().expect("lock").len(),
            failure.index,
            "fates of written records only"
        );
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

    #[test]
    fn a_junk_record_on_an_inter_stage_stream_costs_a_bounded_number_of_dead_letters() {
        let s = stage();
        let junk = vec![&b"x"[..]; 5_000].join(&b'\n');
        let records = vec![
            record("s", 1, "j", &junk),
            record(
                "s",
                2,
                "a",
                br#"{"id":"2","key":"a","type":"t","ts":1,"value":1}"#,
            ),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(
            outcome.stats.passed_on, 1,
            "the good record behind it flows"
        );
        assert_eq!(outcome.stats.dead_lettered[&Reason::NotJson], 5_000);
        let dead = s.dead_letters.lines();
        assert_eq!(dead.len(), crate::stage::MAX_LISTED_REJECTIONS + 1);
        let summary = &dead[crate::stage::MAX_LISTED_REJECTIONS]["summary"];
        assert_eq!(summary["lines"], 5_000);
        assert_eq!(summary["by_reason"]["not_json"], 5_000 - 100);
        assert_eq!(dead[crate::stage::MAX_LISTED_REJECTIONS]["stage"], "enrich");
        // Every line still has its own fate.
        let fates = s.ledger.fates.lock().expect("lock");
        assert_eq!(
            fates
                .values()
                .filter(|f| **f == Fate::DeadLetter(Reason::NotJson))
                .count(),
            5_000
        );
    }

    #[test]
    fn an_event_that_reference_attributes_push_over_a_record_is_dead_lettered() {
        let mut table = Table::default();
        table.rows.insert(
            "big".into(),
            Attrs::from([("blob".into(), "b".repeat(600_000))]),
        );
        let s = stage_with(table);
        let pad = "p".repeat(500_000);
        let line = format!(
            r#"{{"id":"x","key":"big","type":"t","ts":1,"value":1,"attrs":{{"pad":"{pad}"}},"origin":"s:1:0"}}"#
        );
        let records = vec![
            record("s", 1, "big", line.as_bytes()),
            record(
                "s",
                2,
                "a",
                br#"{"id":"2","key":"a","type":"t","ts":1,"value":1}"#,
            ),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete(), "{:?}", outcome.failure);
        assert_eq!(outcome.stats.passed_on, 1);
        assert_eq!(outcome.stats.dead_lettered[&Reason::RecordTooLarge], 1);
        let dead = s.dead_letters.records.lock().expect("lock").clone();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].data.len() < 1024 * 1024);
        let letter: crate::input::dead_letter::DeadLetter =
            serde_json::from_slice(&dead[0].data).expect("json");
        assert_eq!(letter.stage, "enrich");
        assert_eq!(letter.origin.as_deref(), Some("s:1:0"));
        assert_eq!(letter.id.as_deref(), Some("x"));
        // The event as it arrived (without the reference attributes), cut at 256 KiB.
        let original = letter.original.as_ref().expect("original");
        assert_eq!(
            original,
            &crate::input::dead_letter::OriginalBytes::of(line.as_bytes())
        );
        assert!(original.truncated);
        assert_eq!(
            s.ledger.fates.lock().expect("lock")["s:1:0"],
            Fate::DeadLetter(Reason::RecordTooLarge)
        );
    }
}
