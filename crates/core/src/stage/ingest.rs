//! Ingest: unpack, decode, validate and normalize producer records. Valid events go to
//! the valid stream keyed by `key`; rejected lines go to the dead-letter stream with
//! their reason and original bytes.
//!
//! Per input record, in named steps: [`unpack`] it (KPL aggregate, gzip or plain), decode
//! each line of each payload, [`normalize`] the valid ones (an event whose normalized
//! line cannot fit a Kinesis record is `record_too_large` here, the first stage that
//! sees it), and [`RecordRejections`] turns the rejected ones into at most
//! [`MAX_LISTED_REJECTIONS`] + 1 dead letters. Every line still gets exactly one fate in
//! the outcome's accounting, kept as run-length [`crate::stage::outcome::LineRun`]s so a record of 500,000 junk
//! lines costs a few runs, not 500,000 strings.

use crate::config::IngestConfig;
use crate::input::dead_letter::DeadLetter;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::input::envelope::{
    BorrowedEvent, DecodedEvent, Event, NextLine, RawLine, Reason, Rejection, Scalar, TimeBounds,
    decode_borrowed, decode_line_slow, decode_lines,
};
use crate::input::record::{LinePacker, OutRecord, PACKED_RECORD_BYTES, StreamRecord, line_fits};
use crate::input::unpack::{Payload, unpack};
use crate::ports::{Clock, RecordSink};
use crate::stage::outcome::{Accounting, BatchOutcome, Fate, StageStats};
use crate::stage::sql::{SourceFate, SqlPipeline, source_line};
use crate::stage::{
    FLUSH_BYTES, LINE_CAPACITY, RecordRejections, Stage, deadline_passed, fail_whole_batch,
    failure_at,
};

pub use crate::stage::MAX_LISTED_REJECTIONS;

pub struct Ingest<O, D, C> {
    pub output: O,
    pub dead_letters: D,
    pub clock: C,
    pub config: IngestConfig,
    /// A SQL pipeline: lines are read as its source's rows, not as envelopes.
    sql: Option<Arc<SqlPipeline>>,
}

impl<O, D, C> Ingest<O, D, C> {
    /// The one way to build the stage.
    pub fn new(output: O, dead_letters: D, clock: C, config: IngestConfig) -> Self {
        Ingest {
            output,
            dead_letters,
            clock,
            config,
            sql: None,
        }
    }

    /// The stage under a SQL pipeline: each line is read as a row of its source table
    /// and passed on as a [`crate::stage::sql::SourceLine`].
    pub fn with_sql(mut self, pipeline: Arc<SqlPipeline>) -> Self {
        self.sql = Some(pipeline);
        self
    }
}

impl<O, D, C> Stage for Ingest<O, D, C>
where
    O: RecordSink,
    D: RecordSink,
    C: Clock,
{
    fn name(&self) -> &'static str {
        "ingest"
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        let bounds = TimeBounds {
            now_ms: self.clock.now_ms(),
            max_future_skew_ms: self.config.max_clock_skew_ms,
        };
        let mut out = Output::default();
        let mut scratch = Scratch::default();
        // Records before `written_upto` are written, with the stats and fates they had.
        let mut written_upto = 0;
        let mut written_stats = StageStats::default();
        for (index, record) in records.iter().enumerate() {
            if let Some(err) = deadline_passed(
                &self.clock,
                deadline_ms,
                self.config.common.deadline_margin_ms,
            ) {
                outcome.failure = Some(failure_at(records, index, err));
                break;
            }
            outcome.stats.records += 1;
            ingest_record(
                self.name(),
                index,
                record,
                (bounds, self.sql.as_deref()),
                &mut outcome.stats,
                &mut out,
                &mut scratch,
            );
            if out.bytes >= FLUSH_BYTES {
                if let Err(error) = self.write(&mut out, &mut outcome.accounting).await {
                    outcome.stats = written_stats;
                    outcome.failure = Some(failure_at(records, written_upto, error));
                    return outcome;
                }
                written_upto = index + 1;
                written_stats = outcome.stats.clone();
            }
        }
        if let Err(error) = self.write(&mut out, &mut outcome.accounting).await {
            if written_upto == 0 {
                fail_whole_batch(&mut outcome, records, error);
            } else {
                outcome.stats = written_stats;
                outcome.failure = Some(failure_at(records, written_upto, error));
            }
        }
        outcome
    }
}

impl<O: RecordSink, D: RecordSink, C> Ingest<O, D, C> {
    /// Step: writes what is buffered (valid lines packed per key, then dead letters);
    /// only once written do its lines' fates join the outcome's accounting.
    async fn write(&self, out: &mut Output, accounting: &mut Accounting) -> Result<()> {
        let Output {
            valid,
            dead,
            accounting: fates,
            bytes: _,
        } = std::mem::take(out);
        self.output.put_records(valid.finish()).await?;
        self.dead_letters.put_records(dead).await?;
        accounting.lines.extend(fates.lines);
        Ok(())
    }
}

/// What the batch has yet to write, and its size in bytes.
struct Output {
    /// Valid lines, packed per key as they come.
    valid: LinePacker,
    dead: Vec<OutRecord>,
    accounting: Accounting,
    bytes: usize,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            valid: LinePacker::new(PACKED_RECORD_BYTES),
            dead: Vec::new(),
            accounting: Accounting::default(),
            bytes: 0,
        }
    }
}

/// Buffers reused from line to line: a valid line costs no allocation of its own.
#[derive(Default)]
struct Scratch {
    /// The normalized line being encoded.
    line: Vec<u8>,
    /// Its origin (`shard:sequence[:sub]:line`).
    origin: String,
}

impl Output {
    /// Step: a normalized line joins the output, or, if it cannot fit a record (the
    /// packer's guard; `normalize` already checked), fails like the write would.
    fn valid(&mut self, key: &str, line: &[u8]) -> Result<()> {
        self.valid.push(key, line)?;
        self.bytes += key.len() + line.len();
        Ok(())
    }

    fn fate(&mut self, record: usize, sub: Option<usize>, line: usize, fate: Option<Fate>) {
        self.accounting.line(record, sub, line, fate);
    }
}

/// Step: one input record, from bytes to valid lines, dead letters and fates.
fn ingest_record(
    stage: &str,
    index: usize,
    record: &StreamRecord,
    (bounds, sql): (TimeBounds, Option<&SqlPipeline>),
    stats: &mut StageStats,
    out: &mut Output,
    scratch: &mut Scratch,
) {
    let mut fates = LineFates {
        stage,
        index,
        record,
        rejections: RecordRejections::default(),
    };
    let payloads = match unpack(&record.data) {
        Err(rejection) => {
            stats.events_in += 1;
            fates.reject(None, 0, &record.data, rejection, out, stats);
            None
        }
        Ok(unpacked) => Some(unpacked),
    };
    for Payload {
        sub,
        first_line,
        bytes: payload,
    } in payloads.iter().flat_map(|u| u.payloads())
    {
        let mut lines = decode_lines(payload, bounds).numbered_from(first_line);
        while let Some(raw) = lines.next_raw() {
            stats.events_in += 1;
            match raw {
                NextLine::Raw(raw) => {
                    match normalize_line(record, sub, &raw, bounds, sql, out, scratch) {
                        Ok(Passed::On) => fates.pass(sub, raw.line, out, stats),
                        Ok(Passed::Filtered) => fates.filter(sub, raw.line, out),
                        Err(rejection) => {
                            fates.reject(sub, raw.line, raw.bytes, rejection, out, stats)
                        }
                    }
                }
                NextLine::Whole(whole) => {
                    if let Err(rejection) = whole.result {
                        fates.reject(sub, whole.line, whole.bytes, rejection, out, stats);
                    }
                }
            }
        }
    }
    if let Some(summary) = fates.rejections.summary() {
        let letter =
            DeadLetter::for_summary(stage, record, summary).into_record(&record.partition_key);
        out.bytes += letter.data.len();
        out.dead.push(letter);
    }
}

/// The fates of one input record's lines, and its bound on dead letters.
struct LineFates<'a> {
    stage: &'a str,
    index: usize,
    record: &'a StreamRecord,
    rejections: RecordRejections,
}

impl LineFates<'_> {
    fn pass(&mut self, sub: Option<usize>, line: usize, out: &mut Output, stats: &mut StageStats) {
        stats.passed_on += 1;
        out.fate(self.index, sub, line, None);
        self.rejections.lines += 1;
    }

    fn filter(&mut self, sub: Option<usize>, line: usize, out: &mut Output) {
        out.fate(self.index, sub, line, Some(Fate::Filtered));
        self.rejections.lines += 1;
    }

    fn reject(
        &mut self,
        sub: Option<usize>,
        line: usize,
        bytes: &[u8],
        rejection: Rejection,
        out: &mut Output,
        stats: &mut StageStats,
    ) {
        stats.dead_letter(rejection.reason);
        out.fate(
            self.index,
            sub,
            line,
            Some(Fate::DeadLetter(rejection.reason)),
        );
        if self.rejections.listed(&rejection) {
            // Origins are formatted only where one is written: junk lines cost no string.
            let letter = DeadLetter::for_line(self.stage, self.record, line, bytes, &rejection)
                .with_origin(Some(self.record.origin_of(sub, line)))
                .into_record(&self.record.partition_key);
            out.bytes += letter.data.len();
            out.dead.push(letter);
        }
        self.rejections.lines += 1;
    }
}

/// What became of a line that is no dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passed {
    On,
    /// No view of the pipeline takes it (ingest applies the filters that need no
    /// reference data).
    Filtered,
}

/// Step: one non-blank line, decoded, validated, normalized and added to the output.
/// The fast path borrows every string from the line and encodes into the scratch
/// buffer; a line it declines (escapes, unusual types, any failed check) takes the
/// general decoder, which builds the same event or names the rejection.
fn normalize_line(
    record: &StreamRecord,
    sub: Option<usize>,
    raw: &RawLine<'_>,
    bounds: TimeBounds,
    sql: Option<&SqlPipeline>,
    out: &mut Output,
    scratch: &mut Scratch,
) -> Result<Passed, Rejection> {
    scratch.origin.clear();
    // Writing to a `String` cannot fail.
    let _ = write_origin(&mut scratch.origin, record, sub, raw.line);
    if let Some(sql) = sql {
        let fate = source_line(
            sql,
            raw.trimmed,
            &scratch.origin,
            bounds.now_ms,
            &mut scratch.line,
        )?;
        if fate == SourceFate::Filtered {
            return Ok(Passed::Filtered);
        }
        // Kept on the raw record's partition key: its order is the producer's.
        return out
            .valid(&record.partition_key, &scratch.line)
            .map(|()| Passed::On)
            .map_err(|e| Rejection {
                reason: Reason::RecordTooLarge,
                field: None,
                detail: e.to_string(),
                id: None,
            });
    }
    let pushed = match decode_borrowed(raw.trimmed, bounds) {
        Some(event) => {
            normalize_borrowed(&event, &scratch.origin, &mut scratch.line)?;
            out.valid(event.key, &scratch.line)
        }
        None => {
            let decoded = decode_line_slow(raw.trimmed, bounds)?;
            let (event, line) = normalize(decoded, scratch.origin.clone())?;
            out.valid(&event.key, &line)
        }
    };
    // `normalize` checked the size with `line_fits`, the packer's own condition: a
    // refusal here is only a guard.
    pushed.map(|()| Passed::On).map_err(|e| Rejection {
        reason: Reason::RecordTooLarge,
        field: None,
        detail: e.to_string(),
        id: None,
    })
}

/// Writes the origin [`StreamRecord::origin_of`] gives, without a `String` of its own.
fn write_origin(
    buf: &mut String,
    record: &StreamRecord,
    sub: Option<usize>,
    line: usize,
) -> std::fmt::Result {
    let (shard, sequence) = record.identity();
    match sub {
        None => write!(buf, "{shard}:{sequence}:{line}"),
        Some(sub) => write!(buf, "{shard}:{sequence}:{sub}:{line}"),
    }
}

/// A normalized event as [`normalize`] encodes it (the [`crate::input::envelope::Event`]
/// wire format, fields in the same order), with every string borrowed.
#[derive(Serialize)]
struct NormalizedRef<'a> {
    id: &'a str,
    key: &'a str,
    #[serde(rename = "type")]
    metric: &'a str,
    ts: i64,
    value: f64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    attrs: &'a BTreeMap<&'a str, Scalar<'a>>,
    origin: &'a str,
}

/// Step (fast path): a borrowed event encoded as its normalized line into `line`: the
/// same bytes [`normalize`] gives for the same event, with the same size check.
fn normalize_borrowed(
    event: &BorrowedEvent<'_>,
    origin: &str,
    line: &mut Vec<u8>,
) -> Result<(), Rejection> {
    let id = event.id.as_ref().map_or(origin, Scalar::as_str);
    let normalized = NormalizedRef {
        id,
        key: event.key,
        metric: event.metric,
        ts: event.ts,
        value: event.value,
        attrs: &event.attrs,
        origin,
    };
    line.clear();
    serde_json::to_writer(&mut *line, &normalized).map_err(|e| Rejection {
        reason: Reason::InvalidValue,
        field: None,
        detail: format!("the normalized event could not be encoded: {e}"),
        id: Some(id.to_owned()),
    })?;
    if !line_fits(event.key, line.len()) {
        return Err(too_large(line.len(), id.to_owned()));
    }
    Ok(())
}

fn too_large(bytes: usize, id: String) -> Rejection {
    Rejection {
        reason: Reason::RecordTooLarge,
        field: None,
        detail: format!(
            "the normalized event has {bytes} bytes, more than a Kinesis record holds ({PACKED_RECORD_BYTES} with its partition key)"
        ),
        id: Some(id),
    }
}

/// Step: a decoded event becomes its normalized event and line (the line is written
/// under the event's `key`). The origin is ours to assign (it names this producer write)
/// and is the id when the producer gave none. A line that cannot fit one Kinesis record
/// is rejected here as `record_too_large`, not by `PutRecords`.
///
/// Public so that `--verify`'s ground truth applies this very rule to the events it
/// folds: the size ingest decides on is the size of these bytes.
pub fn normalize(decoded: DecodedEvent, origin: String) -> Result<(Event, Vec<u8>), Rejection> {
    let mut event = decoded.into_event(|| origin.clone());
    event.origin = Some(origin);
    // Re-encoding a validated event cannot fail in practice; if it ever did, the line is
    // rejected like any other, never a panic.
    let mut bytes = Vec::with_capacity(LINE_CAPACITY);
    serde_json::to_writer(&mut bytes, &event).map_err(|e| Rejection {
        reason: Reason::InvalidValue,
        field: None,
        detail: format!("the normalized event could not be encoded: {e}"),
        id: Some(event.id.clone()),
    })?;
    if !line_fits(&event.key, bytes.len()) {
        return Err(too_large(bytes.len(), event.id));
    }
    Ok((event, bytes))
}

/// The origins ingest assigns to the lines of a raw record, in order: what the event
/// source mapping needs to settle a raw record it drops without ingest having run (the
/// lines of a KPL aggregate or a gzip record are not the record's `\n`-split lines).
pub fn origins_of_raw(record: &StreamRecord) -> Vec<String> {
    match unpack(&record.data) {
        Err(_) => vec![record.origin_of_line(0)],
        Ok(unpacked) => unpacked
            .payloads()
            .into_iter()
            .flat_map(|payload| {
                decode_lines(payload.bytes, TimeBounds::unbounded())
                    .numbered_from(payload.first_line)
                    .map(move |line| record.origin_of(payload.sub, line.line))
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::outcome::Fate;
    use crate::stage::testing::*;

    const NOW: i64 = 1_767_225_600_000;

    fn stage() -> Booked<Ingest<VecSink, VecSink, FixedClock>> {
        Booked::new(Ingest::new(
            VecSink::named("valid"),
            VecSink::named("dlq"),
            FixedClock::at(NOW),
            IngestConfig::default(),
        ))
    }

    /// Issue 17: ingest applies the WHERE clauses that need no reference data; an event
    /// some view may take once its lookup join is done passes on.
    #[test]
    fn under_a_pipeline_ingest_filters_out_what_no_view_can_take() {
        let pipeline = SqlPipeline::load(
            "CREATE TABLE s (id STRING, country STRING, merchant STRING, amount DOUBLE,
               ms BIGINT, et AS TO_TIMESTAMP_LTZ(ms, 3), proc_time AS PROCTIME(),
               WATERMARK FOR et AS et - INTERVAL '1' MINUTE,
               PRIMARY KEY (id) NOT ENFORCED) WITH ('connector' = 'kinesis', 'format' = 'json');
             CREATE TABLE m (merchant_id STRING, tier STRING, PRIMARY KEY (merchant_id) NOT ENFORCED)
               WITH ('connector' = 'dynamodb');
             CREATE VIEW big AS SELECT window_start, window_end, country, COUNT(*) AS n
               FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(et), INTERVAL '1' MINUTE))
               WHERE amount > 100 GROUP BY window_start, window_end, country;
             CREATE VIEW de AS SELECT * FROM s WHERE country = 'DE';
             CREATE VIEW tiered AS SELECT d.*, m.tier FROM de AS d
               JOIN m FOR SYSTEM_TIME AS OF d.proc_time AS m ON d.merchant = m.merchant_id;
             CREATE VIEW per_tier AS SELECT window_start, window_end, tier, COUNT(*) AS n
               FROM TABLE(TUMBLE(TABLE tiered, DESCRIPTOR(et), INTERVAL '1' MINUTE))
               GROUP BY window_start, window_end, tier;",
        )
        .expect("loads");
        assert!(pipeline.ingest_filters);
        let s = Booked::new(
            Ingest::new(
                VecSink::named("valid"),
                VecSink::named("dlq"),
                FixedClock::at(NOW),
                IngestConfig::default(),
            )
            .with_sql(Arc::new(pipeline)),
        );
        let line = |id: &str, country: &str, amount: f64, ms: Option<i64>| {
            let ms = ms.map_or("null".to_owned(), |ms| ms.to_string());
            format!(
                r#"{{"id":"{id}","country":"{country}","merchant":"m-1","amount":{amount},"ms":{ms}}}"#
            )
        };
        let lines = [
            // In neither view: too small for `big`, not DE for `de`.
            line("p-1", "FR", 50.0, Some(NOW)),
            line("p-2", "FR", 150.0, Some(NOW)),
            // Its merchant's tier decides: enrich, with the reference data, does.
            line("p-3", "DE", 50.0, Some(NOW)),
            // No event time: in no window of `big`.
            line("p-4", "FR", 150.0, None),
        ];
        let records = vec![record("shardId-0", 1, "p", lines.join("\n").as_bytes())];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.events_in, 4);
        assert_eq!(outcome.stats.passed_on, 2);
        assert_eq!(outcome.stats.dead_lettered_total(), 0);
        let ids: Vec<String> = s
            .output
            .lines()
            .iter()
            .map(|l| l["id"].to_string())
            .collect();
        assert_eq!(ids, [r#"["p-2"]"#, r#"["p-3"]"#]);
        let fates = s.ledger.fates.lock().expect("lock").clone();
        let origin = |line: usize| format!("shardId-0:{:056}:{line}", 1);
        assert_eq!(fates.get(&origin(0)), Some(&Fate::Filtered));
        assert_eq!(fates.get(&origin(3)), Some(&Fate::Filtered));
        assert_eq!(fates.len(), 2, "{fates:?}");
        assert_eq!(received(&s).len(), 4);
        // Without a WHERE, ingest evaluates no view.
        let envelope = include_str!("../../../../examples/envelope.sql");
        assert!(!SqlPipeline::load(envelope).expect("loads").ingest_filters);
    }

    #[test]
    fn valid_events_pass_keyed_by_key_and_bad_ones_are_dead_lettered() {
        let s = stage();
        let records = vec![
            record("shardId-0", 1, "a", br#"{"id":"e1","key":"a","type":"t","ts":1000,"value":1}"#),
            record("shardId-0", 2, "b", b"not json"),
            record("shardId-0", 3, "b", b"{\"key\":\"b\",\"type\":\"t\",\"ts\":2000,\"value\":2}\n{\"key\":\"b\",\"type\":\"t\",\"ts\":2000,\"value\":NaN}"),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.events_in, 4);
        assert_eq!(outcome.stats.passed_on, 2);
        let out = s.output.records.lock().expect("lock").clone();
        assert_eq!(
            out.iter()
                .map(|r| r.partition_key.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let valid = s.output.lines();
        assert_eq!(valid[0]["id"], "e1");
        assert_eq!(valid[0]["origin"], format!("shardId-0:{:056}:0", 1));
        assert_eq!(
            valid[1]["id"],
            format!("shardId-0:{:056}:0", 3),
            "derived id"
        );
        let dead = s.dead_letters.lines();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0]["reason"], "not_json");
        assert_eq!(dead[0]["stage"], "ingest");
        assert_eq!(dead[0]["data"], "bm90IGpzb24=", "original bytes, base64");
        assert_eq!(dead[1]["reason"], "non_finite_value");
        assert_eq!(dead[1]["line"], 1);
        let fates = s.ledger.fates.lock().expect("lock");
        assert_eq!(s.ledger.received.lock().expect("lock").len(), 4);
        assert_eq!(fates.len(), 2);
        assert!(
            fates
                .values()
                .any(|f| *f == Fate::DeadLetter(Reason::NotJson))
        );
    }

    #[test]
    fn empty_batch_is_complete_and_writes_nothing() {
        let s = stage();
        let outcome = block_on(s.process(&[], None));
        assert!(outcome.is_complete());
        assert!(s.output.records.lock().expect("lock").is_empty());
    }

    /// Output is written every `FLUSH_BYTES`, so a batch never holds more than that
    /// plus one record; a write failing after an earlier one succeeded retries from the
    /// first unwritten record, and only written lines have fates.
    #[test]
    fn a_large_batch_is_written_in_flushes_and_a_late_failure_retries_the_rest() {
        let s = Booked::new(Ingest::new(
            FailsAfter::new(VecSink::named("valid"), 1),
            VecSink::named("dlq"),
            FixedClock::at(NOW),
            IngestConfig::default(),
        ));
        // Each record: 1,000 events of about 1 KiB, so 8 records fill a flush.
        let pad = "p".repeat(900);
        let records: Vec<_> = (0..20u64)
            .map(|r| {
                let lines: Vec<String> = (0..1_000)
                    .map(|i| {
                        format!(
                            r#"{{"id":"{r}-{i}","key":"k{r}","type":"t","ts":{},"value":1,"attrs":{{"pad":"{pad}"}}}}"#,
                            NOW - 1000
                        )
                    })
                    .collect();
                record("shardId-0", r + 1, "k", lines.join("\n").as_bytes())
            })
            .collect();
        let outcome = block_on(s.process(&records, None));
        let failure = outcome.failure.expect("the second write fails");
        assert!(failure.error.is_retryable());
        assert!(
            failure.index > 0 && failure.index < records.len(),
            "retry from the first unwritten record: {}",
            failure.index
        );
        let written = s.output.inner.lines().len();
        assert_eq!(written, failure.index * 1_000, "every line before it, once");
        assert_eq!(outcome.stats.passed_on, written as u64);
        assert_eq!(
            s.ledger.received.lock().expect("lock").len(),
            written,
            "fates only for written lines"
        );
    }

    #[test]
    fn a_failing_sink_fails_the_whole_batch_for_retry() {
        let s = stage();
        *s.output.fail.lock().expect("lock") = true;
        let records = vec![record(
            "shardId-0",
            7,
            "a",
            br#"{"key":"a","type":"t","ts":1,"value":1}"#,
        )];
        let outcome = block_on(s.process(&records, None));
        let failure = outcome.failure.expect("fails");
        assert_eq!(failure.index, 0);
        assert!(failure.error.is_retryable());
        assert!(
            s.ledger.received.lock().expect("lock").is_empty(),
            "nothing settled"
        );
    }

    #[test]
    fn stops_before_the_deadline_and_reports_where() {
        let s = stage();
        let records = vec![record(
            "shardId-0",
            1,
            "a",
            br#"{"key":"a","type":"t","ts":1,"value":1}"#,
        )];
        let outcome = block_on(s.process(&records, Some(NOW + 500)));
        let failure = outcome.failure.expect("deadline");
        assert_eq!(failure.sequence_number, records[0].sequence_number);
        assert_eq!(failure.error.code(), "deadline");
    }

    #[test]
    fn a_ten_thousand_record_batch_is_processed_in_full() {
        let s = stage();
        let records: Vec<_> = (0..10_000u64)
            .map(|i| {
                let body = if i % 100 == 0 {
                    "garbage".to_owned()
                } else {
                    format!(
                        r#"{{"id":"e{i}","key":"k{}","type":"t","ts":{},"value":{i}}}"#,
                        i % 100,
                        NOW - 1000
                    )
                };
                record("shardId-0", i + 1, "k", body.as_bytes())
            })
            .collect();
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.passed_on, 9_900);
        assert_eq!(outcome.stats.dead_lettered[&Reason::NotJson], 100);
        assert_eq!(s.output.lines().len(), 9_900);
        assert!(
            s.output.records.lock().expect("lock").len() <= 100,
            "packed per key"
        );
    }

    fn event(id: &str, key: &str) -> String {
        format!(
            r#"{{"id":"{id}","key":"{key}","type":"t","ts":{},"value":1}}"#,
            NOW - 1000
        )
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("write");
        enc.finish().expect("finish")
    }

    fn received(s: &Booked<Ingest<VecSink, VecSink, FixedClock>>) -> Vec<String> {
        s.ledger.received.lock().expect("lock").clone()
    }

    #[test]
    fn kpl_user_records_each_become_events_with_distinct_origins() {
        let s = stage();
        let id_less = format!(r#"{{"key":"c","type":"t","ts":{},"value":3}}"#, NOW - 1000);
        let ndjson = format!("{}\n{}", event("e2", "b"), event("e3", "b"));
        let agg = crate::input::unpack::aggregate(&[
            ("pa", event("e1", "a").as_bytes()),
            ("pb", ndjson.as_bytes()),
            ("pc", id_less.as_bytes()),
            ("pc", id_less.as_bytes()),
            ("pd", b"junk"),
        ]);
        let records = vec![record("shardId-0", 9, "agg", &agg)];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.events_in, 6);
        assert_eq!(outcome.stats.passed_on, 5);
        let valid = s.output.lines();
        let origins: Vec<&str> = valid
            .iter()
            .map(|v| v["origin"].as_str().expect("origin"))
            .collect();
        let seq = format!("{:056}", 9);
        assert_eq!(
            origins,
            [
                format!("shardId-0:{seq}:0:0"),
                format!("shardId-0:{seq}:1:0"),
                format!("shardId-0:{seq}:1:1"),
                format!("shardId-0:{seq}:2:0"),
                format!("shardId-0:{seq}:3:0"),
            ]
        );
        // Two identical id-less user records are two events (distinct derived ids).
        let c: Vec<&str> = valid
            .iter()
            .filter(|v| v["key"] == "c")
            .map(|v| v["id"].as_str().expect("id"))
            .collect();
        assert_eq!(c.len(), 2);
        assert_ne!(c[0], c[1]);
        let dead = s.dead_letters.lines();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["reason"], "not_json");
        assert_eq!(dead[0]["origin"], format!("shardId-0:{seq}:4:0"));
        let mut all = received(&s);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6, "every user record line received once");
    }

    #[test]
    fn a_corrupt_aggregate_is_one_dead_letter() {
        let s = stage();
        let mut agg = crate::input::unpack::aggregate(&[("a", event("e1", "a").as_bytes())]);
        let n = agg.len();
        agg[n - 1] ^= 0xff;
        let records = vec![
            record("shardId-0", 1, "a", &agg),
            record("shardId-0", 2, "a", event("e2", "a").as_bytes()),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.dead_lettered[&Reason::CorruptAggregate], 1);
        assert_eq!(outcome.stats.passed_on, 1, "the shard goes on");
        let dead = s.dead_letters.lines();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["reason"], "corrupt_aggregate");
        assert_eq!(dead[0]["original"]["bytes"], agg.len());
        assert_eq!(
            s.ledger.fates.lock().expect("lock")[&format!("shardId-0:{:056}:0", 1)],
            Fate::DeadLetter(Reason::CorruptAggregate)
        );
    }

    #[test]
    fn gzip_records_are_inflated_and_bad_gzip_is_dead_lettered() {
        let s = stage();
        let body = format!("{}\n{}\n", event("g1", "a"), event("g2", "b"));
        let mut broken = gzip(body.as_bytes());
        broken.truncate(broken.len() - 4);
        let records = vec![
            record("shardId-0", 1, "a", &gzip(body.as_bytes())),
            record("shardId-0", 2, "a", &broken),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.passed_on, 2);
        assert_eq!(outcome.stats.dead_lettered[&Reason::CorruptGzip], 1);
        let origins: Vec<String> = s
            .output
            .lines()
            .iter()
            .map(|v| v["origin"].as_str().expect("o").to_owned())
            .collect();
        assert_eq!(
            origins,
            [
                format!("shardId-0:{:056}:0", 1),
                format!("shardId-0:{:056}:1", 1)
            ],
            "inflated lines keep the plain origin format"
        );
    }

    #[test]
    fn an_event_that_cannot_fit_after_normalizing_is_record_too_large_here() {
        let s = stage();
        // Under 1 MiB raw; with its derived id and origin added it no longer fits.
        let pad = "v".repeat(crate::input::record::PACKED_RECORD_BYTES - 80);
        let line = format!(
            r#"{{"key":"a","type":"t","ts":{},"value":1,"attrs":{{"p":"{pad}"}}}}"#,
            NOW - 1000
        );
        assert!(line.len() < crate::input::envelope::MAX_RECORD_BYTES);
        let records = vec![
            record("shardId-0", 1, "a", line.as_bytes()),
            record("shardId-0", 2, "a", event("ok", "a").as_bytes()),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete(), "{:?}", outcome.failure);
        assert_eq!(outcome.stats.dead_lettered[&Reason::RecordTooLarge], 1);
        assert_eq!(outcome.stats.passed_on, 1);
        let dead = s.dead_letters.records.lock().expect("lock").clone();
        assert!(dead.iter().all(|r| r.data.len() + r.partition_key.len()
            <= crate::input::record::MAX_KINESIS_RECORD_BYTES));
        let letter: serde_json::Value = serde_json::from_slice(&dead[0].data).expect("json");
        assert_eq!(letter["original"]["bytes"], line.len());
        assert_eq!(letter["original"]["truncated"], true);
    }

    #[test]
    fn a_junk_record_becomes_a_bounded_number_of_dead_letters_with_exact_fates() {
        let s = stage();
        let mut junk = "x\n".repeat(250_000);
        junk.push_str("[1]\n");
        junk.push_str(&event("good", "a"));
        let records = vec![
            record("shardId-0", 1, "a", junk.as_bytes()),
            record("shardId-0", 2, "a", event("after", "a").as_bytes()),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.events_in, 250_003);
        assert_eq!(
            outcome.stats.passed_on, 2,
            "good events in and behind it arrive"
        );
        assert_eq!(outcome.stats.dead_lettered[&Reason::NotJson], 250_000);
        assert_eq!(outcome.stats.dead_lettered[&Reason::WrongType], 1);
        let dead = s.dead_letters.lines();
        assert_eq!(dead.len(), MAX_LISTED_REJECTIONS + 1);
        let summary = &dead[MAX_LISTED_REJECTIONS]["summary"];
        assert_eq!(summary["lines"], 250_002);
        assert_eq!(summary["rejected"], 250_001);
        assert_eq!(summary["listed"], MAX_LISTED_REJECTIONS);
        assert_eq!(
            summary["by_reason"]["not_json"],
            250_000 - MAX_LISTED_REJECTIONS as u64
        );
        assert_eq!(summary["by_reason"]["wrong_type"], 1);
        assert_eq!(dead[MAX_LISTED_REJECTIONS]["reason"], "not_json");
        assert_eq!(dead[MAX_LISTED_REJECTIONS]["original"]["bytes"], junk.len());
        // The ledger still has one fate per line.
        let fates = s.ledger.fates.lock().expect("lock");
        assert_eq!(fates.len(), 250_001);
        assert_eq!(received(&s).len(), 250_003);
        assert_eq!(
            fates[&format!("shardId-0:{:056}:250000", 1)],
            Fate::DeadLetter(Reason::WrongType)
        );
    }

    #[test]
    fn fate_runs_cover_exactly_the_lines_seen() {
        let mut out = Output::default();
        for line in [0, 1, 2, 4] {
            out.fate(0, None, line, Some(Fate::DeadLetter(Reason::NotJson)));
        }
        out.fate(0, Some(0), 5, Some(Fate::DeadLetter(Reason::NotJson)));
        out.fate(0, Some(0), 6, None);
        assert_eq!(out.accounting.lines.len(), 4);
        assert_eq!(out.accounting.lines[0].lines, 3);
        let s = stage();
        let records = vec![record("s", 1, "p", b"")];
        s.ledger.book(&records, &out.accounting);
        let got = received(&s);
        assert_eq!(got.len(), 6);
        assert!(got.contains(&format!("s:{:056}:4", 1)));
        assert!(got.contains(&format!("s:{:056}:0:6", 1)));
        assert_eq!(s.ledger.fates.lock().expect("lock").len(), 5);
    }

    /// Issue 7 item 4: a 1 MiB record of 500,000 one-character lines costs about what a
    /// 1 MiB record of valid events costs. Prints time and bytes emitted for both (run
    /// with `--release --nocapture` for meaningful times); asserts only on what is
    /// deterministic: the junk record emits a bounded number of bytes and records.
    #[test]
    fn a_junk_megabyte_costs_about_what_a_good_megabyte_costs() {
        let junk = "x\n".repeat(crate::input::envelope::MAX_RECORD_BYTES / 2);
        let mut good = String::new();
        let mut i = 0;
        loop {
            let line = format!(
                r#"{{"id":"e{i}","key":"sensor-{}","type":"temperature","ts":{},"value":{}.5}}"#,
                i % 100,
                NOW - 1000,
                i % 40
            );
            if good.len() + line.len() + 1 > crate::input::envelope::MAX_RECORD_BYTES {
                break;
            }
            good.push_str(&line);
            good.push('\n');
            i += 1;
        }
        let measure = |data: &str| {
            let s = Ingest::new(
                VecSink::named("valid"),
                VecSink::named("dlq"),
                FixedClock::at(NOW),
                IngestConfig::default(),
            );
            let records = vec![record("shardId-0", 1, "p", data.as_bytes())];
            let started = std::time::Instant::now();
            let outcome = block_on(s.process(&records, None));
            let elapsed = started.elapsed();
            let bytes = |sink: &VecSink| -> (usize, usize) {
                let r = sink.records.lock().expect("lock");
                (r.len(), r.iter().map(|r| r.data.len()).sum())
            };
            (outcome, elapsed, bytes(&s.output), bytes(&s.dead_letters))
        };
        let (g, g_time, g_valid, g_dead) = measure(&good);
        let (j, j_time, j_valid, j_dead) = measure(&junk);
        println!(
            "good 1 MiB record: {} events, {g_time:?}, emitted {} records / {} bytes valid, {} / {} dead",
            g.stats.events_in, g_valid.0, g_valid.1, g_dead.0, g_dead.1
        );
        println!(
            "junk 1 MiB record: {} lines, {j_time:?}, emitted {} records / {} bytes valid, {} / {} dead",
            j.stats.events_in, j_valid.0, j_valid.1, j_dead.0, j_dead.1
        );
        assert_eq!(j.stats.events_in, 524_288);
        assert_eq!(j_dead.0, MAX_LISTED_REJECTIONS + 1);
        assert!(
            j_dead.1 + j_valid.1 < g_valid.1 + g_dead.1,
            "junk emits less than good"
        );
        assert!(j_dead.1 < 512 * 1024);
    }

    #[test]
    fn origins_of_raw_records_are_the_ones_ingest_receives() {
        let s = stage();
        let mut bad_agg = crate::input::unpack::aggregate(&[("a", b"x")]);
        bad_agg[5] ^= 1;
        let records = vec![
            record(
                "s",
                1,
                "a",
                format!("{}\n\nx\n", event("1", "a")).as_bytes(),
            ),
            record(
                "s",
                2,
                "a",
                &crate::input::unpack::aggregate(&[("a", b"x\ny"), ("b", b""), ("c", b"z")]),
            ),
            record("s", 3, "a", &gzip(b"q\n\nr")),
            record("s", 4, "a", &bad_agg),
            record("s", 5, "a", b"\xff"),
            record("s", 6, "a", b"  "),
        ];
        block_on(s.process(&records, None));
        let expected: Vec<String> = records.iter().flat_map(origins_of_raw).collect();
        assert_eq!(received(&s), expected);
        assert_eq!(expected.len(), 2 + 4 + 2 + 1 + 1 + 1);
    }

    /// `sluice replay`: dead letters planned into replayed records and ingested again
    /// give every line the origin (and so the derived id) its original had: a line
    /// that is valid now passes on under its first identity, one still rejected is
    /// dead-lettered under it again, and the raw-record origins agree with ingest's.
    #[test]
    fn replayed_dead_letters_keep_the_identity_of_their_first_arrival() {
        use crate::input::dead_letter::DeadLetter;
        use crate::input::replay_plan::{Replay, plan};
        let first = stage();
        let id_less = |key: &str| {
            format!(
                r#"{{"key":"{key}","type":"t","ts":{},"value":2}}"#,
                NOW - 1000
            )
        };
        let plain = format!("{}\nnot json\n\n{}", event("e1", "a"), "{\"key\":\"b\"}");
        let kpl =
            crate::input::unpack::aggregate(&[("a", id_less("c").as_bytes()), ("b", b"junk")]);
        let originals = vec![
            record("shardId-000000000001", 11, "a", plain.as_bytes()),
            record("shardId-000000000001", 12, "b", &kpl),
            record("shardId-000000000002", 13, "c", &gzip(b"zzz")),
        ];
        block_on(first.process(&originals, None));
        let dead_letters_of =
            |s: &Booked<Ingest<VecSink, VecSink, FixedClock>>| -> Vec<DeadLetter> {
                s.dead_letters
                    .records
                    .lock()
                    .expect("lock")
                    .iter()
                    .map(|r| serde_json::from_slice(&r.data).expect("a dead letter"))
                    .collect()
            };
        let letters = dead_letters_of(&first);
        let origins = |l: &[DeadLetter]| -> Vec<Option<String>> {
            l.iter().map(|d| d.origin.clone()).collect()
        };
        assert_eq!(
            origins(&letters),
            [
                Some(format!("shardId-000000000001:{:056}:1", 11)),
                Some(format!("shardId-000000000001:{:056}:3", 11)),
                Some(format!("shardId-000000000001:{:056}:1:0", 12)),
                Some(format!("shardId-000000000002:{:056}:0", 13)),
            ]
        );
        // Replayed into a batch elsewhere on the stream (another shard, later numbers),
        // along with the whole first record.
        let mut replays: Vec<StreamRecord> = letters
            .iter()
            .enumerate()
            .map(|(i, l)| match plan(l, "test") {
                Replay::Send(data) => record("shardId-000000000009", 100 + i as u64, "r", &data),
                other => panic!("{l:?} is sent from the dead letter itself, not {other:?}"),
            })
            .collect();
        replays.push(record(
            "shardId-000000000009",
            200,
            "r",
            &crate::input::replay_plan::frame_whole(
                &originals[0].data,
                &originals[0].shard_id,
                &originals[0].sequence_number,
            ),
        ));
        let again = stage();
        block_on(again.process(&replays, None));
        let expected: Vec<String> = replays.iter().flat_map(origins_of_raw).collect();
        assert_eq!(received(&again), expected);
        let first_origins: Vec<String> = originals.iter().flat_map(origins_of_raw).collect();
        for origin in &expected {
            assert!(first_origins.contains(origin), "{origin} is a first origin");
        }
        let relettered = dead_letters_of(&again);
        // The four still fail, under their first origins (and the replayed whole record
        // fails its two bad lines again).
        let mut got = origins(&relettered);
        got.sort();
        let mut want = origins(&letters);
        want.extend(origins(&letters[..2]));
        want.sort();
        assert_eq!(got, want);
        assert_eq!(relettered[0].line, Some(1));
        // The valid line of the whole record passes on with its first id and origin.
        let valid = String::from_utf8(again.output.records.lock().expect("lock")[0].data.clone())
            .expect("utf-8");
        assert!(
            valid.contains(&format!("\"origin\":\"shardId-000000000001:{:056}:0\"", 11)),
            "{valid}"
        );
    }

    #[test]
    fn a_corrupt_replay_frame_is_one_dead_letter_with_its_reason() {
        let s = stage();
        let mut data = crate::input::replay_plan::frame_whole(b"x", "shardId-1", "5");
        data[5] = b':';
        let outcome = block_on(s.process(&[record("s", 1, "a", &data)], None));
        assert_eq!(outcome.stats.dead_lettered[&Reason::CorruptReplay], 1);
        assert_eq!(received(&s), vec![format!("s:{:056}:0", 1)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

        /// For any batch, every record ingest emits (valid or dead letter) is within
        /// Kinesis's limits, and every line has exactly one fate.
        #[test]
        fn every_emitted_record_fits_kinesis(
            sizes in proptest::collection::vec(0usize..1_100_000, 1..4),
            junk in 0usize..300,
            kpl in proptest::prelude::any::<bool>(),
        ) {
            let s = stage();
            let mut records = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let pad = "p".repeat(*size);
                let line = format!(
                    r#"{{"key":"k{i}","type":"t","ts":{},"value":1,"attrs":{{"p":"{pad}","n":1e15}}}}"#,
                    NOW - 1000
                );
                let data = if kpl {
                    crate::input::unpack::aggregate(&[("a", line.as_bytes()), ("b", "x\n".repeat(junk).as_bytes())])
                } else {
                    format!("{line}\n{}", "x\n".repeat(junk)).into_bytes()
                };
                records.push(record("s", i as u64 + 1, &"k".repeat(256), &data));
            }
            let outcome = block_on(s.process(&records, None));
            proptest::prop_assert!(outcome.is_complete());
            let limit = crate::input::record::MAX_KINESIS_RECORD_BYTES;
            for sink in [&s.output, &s.dead_letters] {
                for r in sink.records.lock().expect("lock").iter() {
                    proptest::prop_assert!(r.data.len() + r.partition_key.len() <= limit);
                }
            }
            let dead = s.dead_letters.records.lock().expect("lock").len();
            proptest::prop_assert!(dead <= records.len() * (MAX_LISTED_REJECTIONS + 1));
            let fates = s.ledger.fates.lock().expect("lock").len() as u64;
            proptest::prop_assert_eq!(outcome.stats.passed_on + fates, outcome.stats.events_in);
            proptest::prop_assert_eq!(received(&s).len() as u64, outcome.stats.events_in);
        }
    }

    /// The envelopes producers send (and `sluice bench` times) take the fast path.
    #[test]
    fn plain_envelopes_take_the_borrowed_fast_path() {
        let bounds = TimeBounds::unbounded();
        for line in [
            r#"{"id":"e1","key":"key-1","type":"t","ts":1764000000000,"value":12.5}"#,
            r#"{"id":"e2","key":"key-2","type":"t","ts":1764000000000,"value":0.1,"attrs":{"pad":"xxxx","n":3,"b":true}}"#,
            r#"{"key":"ké","type":"a.b:c/d-e_f","ts":"2025-11-24T16:00:00.5Z","value":-3}"#,
        ] {
            assert!(decode_borrowed(line.as_bytes(), bounds).is_some(), "{line}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1500))]

        /// The borrowed fast path encodes exactly the bytes the owned path encodes: for
        /// lines built from many forms of each field, whenever `decode_borrowed` takes a
        /// line, the general path takes it too and its normalized line is identical; and
        /// it takes every line the owned fast path takes.
        #[test]
        fn the_borrowed_normalized_line_is_the_owned_one(
            id in proptest::sample::select(vec![
                "", r#""id":"e1","#, r#""id":7,"#, r#""id":-7,"#, r#""id":true,"#, r#""id":null,"#,
                r#""id":"e\u00e9","#, r#""id":"ünï","#, r#""id":"a","id":"b","#,
                r#""id":"\u0000sluice:non-finite","#, r#""id":123456789012345678901234567890,"#,
            ]),
            key in proptest::sample::select(vec![
                r#""key":"k1","#, r#""key":"ké","#, r#""key":"k\"q","#, r#""key":"","#,
                r#""key":"\u0000sluice:non-finite","#,
            ]),
            ts in proptest::sample::select(vec![
                r#""ts":1764000000000,"#, r#""ts":1764000000000.7,"#, r#""ts":"2025-11-24T16:00:00Z","#,
                r#""ts":"2025-11-24T16:00:00.123+02:00","#,
            ]),
            value in proptest::sample::select(vec![
                r#""value":1.5"#, r#""value":0"#, r#""value":-0"#, r#""value":1e-7"#, r#""value":123456789.125"#,
                r#""value":1e99"#, r#""value":12345678901234567890"#, r#""value":-2.5e-50"#,
            ]),
            attrs in proptest::sample::select(vec![
                "", r#","attrs":{"a":"x","b":2,"c":true}"#, r#","attrs":{"z":"1","a":"2","m":false}"#,
                r#","attrs":{"a":"1","a":"2"}"#, r#","attrs":{}"#, r#","attrs":{"u":"ü\u00e9"}"#, r#","attrs":{"neg":-3}"#,
                r#","attrs":{"big":18446744073709551615}"#,
            ]),
            tail in proptest::sample::select(vec![
                "", r#","origin":"s:1:0""#, r#","extra":{"deep":[1,2,{"x":null}]}"#, r#","value":2"#,
            ]),
            sub in proptest::option::of(0usize..3),
            line in 0usize..5,
        ) {
            let text = format!(r#"{{{id}{key}"type":"t.x",{ts}{value}{attrs}{tail}}}"#);
            let r = record("shardId-000000000007", 12, "p", b"");
            let origin = r.origin_of(sub, line);
            let mut buf = String::new();
            write_origin(&mut buf, &r, sub, line).expect("a string");
            proptest::prop_assert_eq!(&buf, &origin);
            let bounds = TimeBounds { now_ms: NOW, max_future_skew_ms: 0 };
            let owned = crate::input::envelope::decode_line(text.as_bytes(), bounds)
                .and_then(|d| normalize(d, origin.clone()))
                .map(|(event, line)| (event.key, line));
            // A declined line (escapes, duplicates, unusual numbers) goes to the general
            // decoder, as the envelope tests check.
            if let Some(event) = decode_borrowed(text.as_bytes(), bounds) {
                let mut encoded = Vec::new();
                let fast = normalize_borrowed(&event, &origin, &mut encoded)
                    .map(|()| (event.key.to_owned(), encoded));
                proptest::prop_assert_eq!(fast, owned, "line {}", text);
            }
        }
    }
}
