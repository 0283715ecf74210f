//! The four stages, each a pure function of (records, ports, clock) → [`BatchOutcome`].
//! Lambda handlers and the local runner call the very same `process`.
//!
//! Shared rules: records are handled in order; a bad record becomes a dead letter and
//! processing goes on; a retryable failure stops the batch and reports the first
//! record that must be delivered again; the deadline is checked before each unit of
//! work, so a batch returns early instead of timing out.

pub mod aggregate;
pub mod detect;
pub mod enrich;
pub mod ingest;
pub mod lambda_event;
pub mod outcome;
pub mod sql;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;

use crate::error::Error;
use crate::input::dead_letter::{DeadLetter, RejectionSummary};
use crate::input::envelope::{
    Event, MAX_RECORD_BYTES, NextLine, Reason, Rejection, TimeBounds,
    decode_borrowed_without_attrs, decode_line_without_attrs, decode_lines, decode_record,
};
use crate::input::record::{OutRecord, StreamRecord};
use crate::ports::Clock;
use crate::stage::outcome::{BatchFailure, BatchOutcome};

pub trait Stage: Send + Sync {
    /// `ingest`, `enrich`, `aggregate` or `detect`.
    fn name(&self) -> &'static str;

    /// Processes one batch of records from one shard. `deadline_ms` is the invocation
    /// deadline (epoch ms), if there is one.
    fn process(
        &self,
        records: &[StreamRecord],
        deadline_ms: Option<i64>,
    ) -> impl Future<Output = BatchOutcome> + Send;
}

/// `Some(error)` when less than `margin_ms` remains before the deadline.
pub(crate) fn deadline_passed(
    clock: &impl Clock,
    deadline_ms: Option<i64>,
    margin_ms: i64,
) -> Option<Error> {
    let deadline = deadline_ms?;
    let remaining_ms = deadline - clock.now_ms();
    (remaining_ms < margin_ms).then_some(Error::Deadline {
        remaining_ms,
        margin_ms,
    })
}

pub(crate) fn failure_at(records: &[StreamRecord], index: usize, error: Error) -> BatchFailure {
    BatchFailure {
        index,
        sequence_number: records
            .get(index)
            .map(|r| r.sequence_number.clone())
            .unwrap_or_default(),
        error,
    }
}

/// Fails the whole batch: used when writing the batch's output failed, so every record
/// is delivered again (downstream de-duplication makes the re-emit harmless). The
/// accounting is kept: what it holds (commits) happened whatever the output did.
pub(crate) fn fail_whole_batch(outcome: &mut BatchOutcome, records: &[StreamRecord], error: Error) {
    outcome.failure = Some(failure_at(records, 0, error));
    outcome.stats = Default::default();
    outcome.stats.records = records.len() as u64;
}

/// An event decoded from a record of an inter-stage stream.
pub(crate) struct Decoded {
    pub record: usize,
    /// The line's index within its record (see [`line_bytes`]).
    pub line: usize,
    pub event: Event,
}

/// The bytes of line `line` of a record, as [`decode_record`] numbered it.
pub(crate) fn line_bytes(record: &StreamRecord, line: usize) -> &[u8] {
    crate::input::record::lines(&record.data)
        .nth(line)
        .unwrap_or(&record.data)
}

/// Ingest and enrich write their output whenever this much is buffered, so an
/// invocation holds at most this plus one record's worth (a record inflates to at most
/// 6 MiB, an event grows by at most its reference attributes, and a record's dead
/// letters are bounded), however many records a batch has. A write that fails after an
/// earlier one succeeded reports the first unwritten record for retry.
pub const FLUSH_BYTES: usize = 8 * 1024 * 1024;

/// Initial capacity of an encoded output line: a typical normalized event (~150-250
/// bytes) is encoded without regrowing its buffer.
pub(crate) const LINE_CAPACITY: usize = 256;

/// How many rejected lines of one record get a dead letter of their own; the rest are
/// counted in one summary dead letter per record, so a record of junk lines costs a
/// bounded number of dead letters, whatever its number of lines.
pub const MAX_LISTED_REJECTIONS: usize = 100;

/// A rejected line. Every rejected line has a fate of its own; only the first
/// [`MAX_LISTED_REJECTIONS`] of a record carry their own dead letter (`out`), and the
/// last rejected line of a record with more carries the record's summary.
pub(crate) struct Rejected {
    pub record: usize,
    pub origin: String,
    pub reason: Reason,
    pub out: Option<OutRecord>,
    pub summary: Option<OutRecord>,
}

impl Rejected {
    /// The dead-letter records this rejected line is responsible for (0, 1 or 2).
    pub fn dead_letters(&self) -> impl Iterator<Item = &OutRecord> {
        self.out.iter().chain(&self.summary)
    }
}

/// Bounds the dead letters of one input record: the first [`MAX_LISTED_REJECTIONS`]
/// rejected lines are listed one by one, the rest only counted for the summary.
#[derive(Debug, Default)]
pub(crate) struct RecordRejections {
    pub lines: u64,
    rejected: u64,
    unlisted: BTreeMap<Reason, u64>,
}

impl RecordRejections {
    /// Counts a rejection; `true` when it gets a dead letter of its own.
    pub fn listed(&mut self, rejection: &Rejection) -> bool {
        self.rejected += 1;
        if self.rejected <= MAX_LISTED_REJECTIONS as u64 {
            return true;
        }
        *self.unlisted.entry(rejection.reason).or_default() += 1;
        false
    }

    pub fn summary(self) -> Option<RejectionSummary> {
        (!self.unlisted.is_empty()).then(|| RejectionSummary {
            lines: self.lines,
            rejected: self.rejected,
            listed: self.rejected.min(MAX_LISTED_REJECTIONS as u64),
            by_reason: self.unlisted,
        })
    }
}

/// Decodes the events of records `..end` of an inter-stage stream (normalized events,
/// NDJSON). Anything malformed (someone else wrote to the stream) is dead-lettered.
pub(crate) fn decode_events(
    stage: &str,
    records: &[StreamRecord],
) -> (Vec<Decoded>, Vec<Rejected>) {
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let mut record_lines = RecordLines::new(stage, index, record, &mut rejected);
        for line in decode_record(&record.data, TimeBounds::unbounded()) {
            record_lines.line();
            match line.result {
                Ok(decoded) => {
                    // Events from ingest carry their id and origin: the fallback origin
                    // is only formatted for lines that lack one of them.
                    let mut event = decoded.into_event(|| record.origin_of_line(line.line));
                    if event.origin.is_none() {
                        event.origin = Some(record.origin_of_line(line.line));
                    }
                    events.push(Decoded {
                        record: index,
                        line: line.line,
                        event,
                    });
                }
                Err(rejection) => {
                    record_lines.reject(line.line, line.bytes, &rejection);
                }
            }
        }
        record_lines.finish();
    }
    (events, rejected)
}

/// An event of an inter-stage stream as the aggregate stage reads it, without its
/// `attrs`: strings are borrowed from the record wherever the line allows.
pub(crate) struct EventView<'a> {
    /// The producer's id, or (when it sent none) the line's origin, as [`Event::id`].
    pub id: Cow<'a, str>,
    pub key: Cow<'a, str>,
    pub metric: Cow<'a, str>,
    pub ts: i64,
    pub value: f64,
    /// The origin ingest stamped, or the line's own (as [`decode_events`] sets it).
    pub origin: Cow<'a, str>,
}

/// [`decode_events`] for a stage that never reads `attrs` and keeps no event: each valid
/// line's event goes to `on_event` (with its record and line index) as it is decoded,
/// and the verdicts are the same as `decode_events`'s (the borrowed decoder takes
/// exactly the lines the general decoder's fast path takes; the rest go through the
/// general decoder). Returns the rejected lines, as `decode_events` does.
pub(crate) fn decode_event_views(
    stage: &str,
    records: &[StreamRecord],
    mut on_event: impl FnMut(usize, usize, EventView<'_>),
) -> Vec<Rejected> {
    let bounds = TimeBounds::unbounded();
    let mut rejected = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let mut record_lines = RecordLines::new(stage, index, record, &mut rejected);
        if record.data.len() > MAX_RECORD_BYTES {
            // One whole-record rejection, as `decode_record` gives it.
            for line in decode_record(&record.data, bounds) {
                record_lines.line();
                if let Err(rejection) = line.result {
                    record_lines.reject(line.line, line.bytes, &rejection);
                }
            }
            record_lines.finish();
            continue;
        }
        let mut lines = decode_lines(&record.data, bounds);
        while let Some(next) = lines.next_raw() {
            record_lines.line();
            let raw = match next {
                NextLine::Raw(raw) => raw,
                NextLine::Whole(whole) => {
                    if let Err(rejection) = whole.result {
                        record_lines.reject(whole.line, whole.bytes, &rejection);
                    }
                    continue;
                }
            };
            if let Some(e) = decode_borrowed_without_attrs(raw.trimmed, bounds) {
                let view = EventView {
                    id: e.id.map_or_else(
                        || Cow::Owned(record.origin_of_line(raw.line)),
                        |id| id.into_cow(),
                    ),
                    key: Cow::Borrowed(e.key),
                    metric: Cow::Borrowed(e.metric),
                    ts: e.ts,
                    value: e.value,
                    origin: e.origin.map_or_else(
                        || Cow::Owned(record.origin_of_line(raw.line)),
                        Cow::Borrowed,
                    ),
                };
                on_event(index, raw.line, view);
                continue;
            }
            match decode_line_without_attrs(raw.trimmed, bounds) {
                Ok(decoded) => {
                    let event = decoded.into_event(|| record.origin_of_line(raw.line));
                    let origin = event
                        .origin
                        .unwrap_or_else(|| record.origin_of_line(raw.line));
                    let view = EventView {
                        id: Cow::Owned(event.id),
                        key: Cow::Owned(event.key),
                        metric: Cow::Owned(event.metric),
                        ts: event.ts,
                        value: event.value,
                        origin: Cow::Owned(origin),
                    };
                    on_event(index, raw.line, view);
                }
                Err(rejection) => {
                    record_lines.reject(raw.line, raw.bytes, &rejection);
                }
            }
        }
        record_lines.finish();
    }
    rejected
}

/// The rejected lines of one record, as a decoder meets them: each gets its fate, and its
/// own dead letter while the record's bound allows; [`RecordLines::finish`] attaches the
/// summary of the rest to the last one.
pub(crate) struct RecordLines<'r> {
    stage: &'r str,
    index: usize,
    record: &'r StreamRecord,
    bound: RecordRejections,
    rejected: &'r mut Vec<Rejected>,
}

impl<'r> RecordLines<'r> {
    pub(crate) fn new(
        stage: &'r str,
        index: usize,
        record: &'r StreamRecord,
        rejected: &'r mut Vec<Rejected>,
    ) -> Self {
        RecordLines {
            stage,
            index,
            record,
            bound: RecordRejections::default(),
            rejected,
        }
    }

    /// Counts a line of the record (valid or not), for the summary.
    pub(crate) fn line(&mut self) {
        self.bound.lines += 1;
    }

    pub(crate) fn reject(&mut self, line: usize, bytes: &[u8], rejection: &Rejection) {
        let record = self.record;
        let fallback_origin = record.origin_of_line(line);
        let out = self.bound.listed(rejection).then(|| {
            DeadLetter::for_line(self.stage, record, line, bytes, rejection)
                .with_origin(Some(fallback_origin.clone()))
                .into_record(&record.partition_key)
        });
        self.rejected.push(Rejected {
            record: self.index,
            reason: rejection.reason,
            out,
            summary: None,
            origin: fallback_origin,
        });
    }

    pub(crate) fn finish(self) {
        if let (Some(summary), Some(last)) = (self.bound.summary(), self.rejected.last_mut()) {
            last.summary = Some(
                DeadLetter::for_summary(self.stage, self.record, summary)
                    .into_record(&self.record.partition_key),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small helpers for stage tests (in-memory ports live in `sluice-local`; these are
    //! the minimal ones core's own tests need).
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::error::Result;
    use crate::ports::RecordSink;
    use crate::stage::outcome::{Accounting, Booking, Fate};

    pub struct FixedClock(pub AtomicI64);

    impl FixedClock {
        pub fn at(ms: i64) -> Self {
            FixedClock(AtomicI64::new(ms))
        }
    }

    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[derive(Default)]
    pub struct VecSink {
        pub name: String,
        pub records: Mutex<Vec<OutRecord>>,
        pub fail: Mutex<bool>,
    }

    impl VecSink {
        pub fn named(name: &str) -> Self {
            VecSink {
                name: name.into(),
                ..Default::default()
            }
        }

        pub fn lines(&self) -> Vec<serde_json::Value> {
            let records = self.records.lock().expect("lock");
            records
                .iter()
                .flat_map(|r| {
                    r.data
                        .split(|b| *b == b'\n')
                        .map(|l| serde_json::from_slice(l).expect("json line"))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }

    impl RecordSink for VecSink {
        fn stream_name(&self) -> &str {
            &self.name
        }
        async fn put_records(&self, records: Vec<OutRecord>) -> Result<()> {
            if *self.fail.lock().expect("lock") {
                return Err(Error::Throttled {
                    service: "kinesis",
                    operation: "PutRecords",
                    message: "test".into(),
                });
            }
            self.records.lock().expect("lock").extend(records);
            Ok(())
        }
    }

    /// A sink that takes `ok_calls` calls and fails every later one (retryably).
    pub struct FailsAfter {
        pub inner: VecSink,
        ok_calls: std::sync::atomic::AtomicUsize,
    }

    impl FailsAfter {
        pub fn new(inner: VecSink, ok_calls: usize) -> Self {
            FailsAfter {
                inner,
                ok_calls: ok_calls.into(),
            }
        }
    }

    impl RecordSink for FailsAfter {
        fn stream_name(&self) -> &str {
            self.inner.stream_name()
        }
        async fn put_records(&self, records: Vec<OutRecord>) -> Result<()> {
            use std::sync::atomic::Ordering;
            let left = self.ok_calls.load(Ordering::SeqCst);
            if left == 0 {
                return Err(crate::Error::Throttled {
                    service: "kinesis",
                    operation: "PutRecords",
                    message: "test".into(),
                });
            }
            self.ok_calls.store(left - 1, Ordering::SeqCst);
            self.inner.put_records(records).await
        }
    }

    #[derive(Default)]
    pub struct MapLedger {
        pub received: Mutex<Vec<String>>,
        pub fates: Mutex<HashMap<String, Fate>>,
    }

    impl MapLedger {
        /// Books what a stage reported (first fate stands; in-doubt is not a fate).
        pub fn book(&self, records: &[StreamRecord], accounting: &Accounting) {
            for booking in accounting.bookings(records) {
                match booking {
                    Booking::Received(origin) => {
                        self.received.lock().expect("lock").push(origin);
                    }
                    Booking::Settled(origin, fate) => {
                        self.fates
                            .lock()
                            .expect("lock")
                            .entry(origin)
                            .or_insert(fate);
                    }
                    Booking::InDoubt(_) => {}
                }
            }
        }
    }

    /// A stage whose every outcome is booked in a [`MapLedger`], as the local runner
    /// books it; the stage's fields are reached through `Deref`.
    pub struct Booked<S> {
        pub stage: S,
        pub ledger: MapLedger,
    }

    impl<S> Booked<S> {
        pub fn new(stage: S) -> Self {
            Booked {
                stage,
                ledger: MapLedger::default(),
            }
        }
    }

    impl<S: Stage> Booked<S> {
        pub async fn process(
            &self,
            records: &[StreamRecord],
            deadline_ms: Option<i64>,
        ) -> BatchOutcome {
            let outcome = self.stage.process(records, deadline_ms).await;
            self.ledger.book(records, &outcome.accounting);
            outcome
        }
    }

    impl<S> std::ops::Deref for Booked<S> {
        type Target = S;
        fn deref(&self) -> &S {
            &self.stage
        }
    }

    pub fn record(shard: &str, seq: u64, pk: &str, data: &[u8]) -> StreamRecord {
        StreamRecord {
            stream: "test".into(),
            shard_id: shard.into(),
            sequence_number: format!("{seq:056}"),
            partition_key: pk.into(),
            data: data.to_vec(),
            arrival_ms: 0,
        }
    }

    /// Runs a future to completion on the current thread (the stages' futures never
    /// wait on anything but the test ports above).
    pub fn block_on<F: Future>(fut: F) -> F::Output {
        use std::pin::pin;
        use std::task::{Context, Poll, Wake, Waker};
        struct Noop;
        impl Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = Waker::from(std::sync::Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::record;
    use super::*;

    /// What a decoder made of a batch: each event's fields (record, line, id, key,
    /// type, ts, value, origin) and each rejection (record, reason, origin, listed).
    type Seen = (
        Vec<(usize, usize, String, String, String, i64, u64, String)>,
        Vec<(usize, Reason, String, bool, bool)>,
    );

    fn rejections(rejected: &[Rejected]) -> Vec<(usize, Reason, String, bool, bool)> {
        rejected
            .iter()
            .map(|r| {
                (
                    r.record,
                    r.reason,
                    r.origin.clone(),
                    r.out.is_some(),
                    r.summary.is_some(),
                )
            })
            .collect()
    }

    fn by_events(records: &[StreamRecord]) -> Seen {
        let (events, rejected) = decode_events("aggregate", records);
        let events = events
            .into_iter()
            .map(|d| {
                let e = d.event;
                let origin = e.origin.unwrap_or_default();
                (
                    d.record,
                    d.line,
                    e.id,
                    e.key,
                    e.metric,
                    e.ts,
                    e.value.to_bits(),
                    origin,
                )
            })
            .collect();
        (events, rejections(&rejected))
    }

    fn by_views(records: &[StreamRecord]) -> Seen {
        let mut events = Vec::new();
        let rejected = decode_event_views("aggregate", records, |record, line, e| {
            events.push((
                record,
                line,
                e.id.into_owned(),
                e.key.into_owned(),
                e.metric.into_owned(),
                e.ts,
                e.value.to_bits(),
                e.origin.into_owned(),
            ));
        });
        (events, rejections(&rejected))
    }

    /// The borrowed reader must see every batch exactly as the owned one does: the
    /// same events (derived ids and origins included) and the same rejections.
    #[test]
    fn event_views_read_exactly_what_decode_events_reads() {
        let valid =
            r#"{"id":"a","key":"k","type":"t","ts":1767225600000,"value":1.5,"origin":"o-1"}"#;
        let many: String = (0..150).map(|i| format!("junk {i}\n")).collect();
        let records = vec![
            record("s0", 1, "k", format!("{valid}\n\n{valid}\n").as_bytes()),
            // Escapes (not borrowable), a numeric id, no id, no origin, attrs.
            record(
                "s0",
                2,
                "k",
                concat!(
                    r#"{"id":"a\"b","key":"k\u00e9","type":"t","ts":1,"value":2,"origin":"o\/2"}"#,
                    "\n",
                    r#"{"id":42,"key":"k","type":"t","ts":2,"value":-0.0,"attrs":{"x":"y"}}"#,
                    "\n",
                    r#"{"key":"k2","type":"t","ts":3,"value":3}"#,
                    "\n",
                    r#"{"id":"b","key":"k","type":"BAD TYPE","ts":3,"value":3}"#,
                    "\nnot json\n",
                    r#"{"id":"c","key":"k","type":"t","ts":"x","value":3}"#,
                )
                .as_bytes(),
            ),
            record("s1", 3, "k", b"   \n\n"),
            record("s1", 4, "k", &[0xff, 0xfe, b'\n']),
            record("s1", 5, "k", many.as_bytes()),
            record("s1", 6, "k", &vec![b' '; MAX_RECORD_BYTES + 1]),
        ];
        let (events, rejected) = by_events(&records);
        assert_eq!(events.len(), 5, "{events:?}");
        assert_eq!(rejected.len(), 3 + 1 + 1 + 150 + 1, "{rejected:?}");
        assert_eq!(by_views(&records), (events, rejected));
    }

    /// The forms issue 15 found decoded wrongly read the same through both readers: a
    /// leading byte-order mark, the string once used as an in-band non-finite marker,
    /// integer ids beyond 64 bits, and epoch seconds.
    #[test]
    fn event_views_agree_on_byte_order_marks_marker_strings_big_ids_and_seconds() {
        let lines = [
            "\u{feff}{\"id\":\"a\",\"key\":\"k\",\"type\":\"t\",\"ts\":10000000000,\"value\":1}",
            r#"{"id":"\u0000sluice:non-finite","key":"\u0000sluice:non-finite","type":"t","ts":10000000001,"value":2}"#,
            r#"{"key":"k","type":"t","ts":10000000002,"value":"\u0000sluice:non-finite"}"#,
            r#"{"id":123456789012345678901234567890,"key":"k","type":"t","ts":10000000003,"value":3}"#,
            r#"{"id":1e30,"key":"k","type":"t","ts":10000000004,"value":4}"#,
            r#"{"id":"s","key":"k","type":"t","ts":1767225600,"value":5}"#,
            r#"{"id":"n","key":"k","type":"t","ts":10000000005,"value":NaN}"#,
        ];
        let records = vec![
            record("s0", 1, "k", lines.join("\n").as_bytes()),
            record("s0", 2, "k", "\u{feff}".as_bytes()),
        ];
        let (events, rejected) = by_events(&records);
        let ids: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
        assert_eq!(
            ids,
            [
                "a",
                "\u{0}sluice:non-finite",
                "123456789012345678901234567890"
            ]
        );
        let reasons: Vec<Reason> = rejected.iter().map(|r| r.1).collect();
        assert_eq!(
            reasons,
            [
                Reason::WrongType,
                Reason::WrongType,
                Reason::TsOutOfRange,
                Reason::NonFiniteValue,
                Reason::NotJson,
            ]
        );
        assert_eq!(by_views(&records), (events, rejected));
    }
}
