//! A faithful local event source mapping: what Lambda does between a Kinesis stream
//! and a function, so `sluice demo` and `sluice run` exercise the handlers the way AWS
//! does. Settings come from `template.yaml` ([`EsmSettings`]).
//!
//! - BatchSize (and Lambda's 6 MB payload cap) and MaximumBatchingWindowInSeconds: a
//!   batch is invoked when it is full (BatchSize records or 6 MB of payload)
//!   or when the window since its first record was read has passed. The window runs
//!   on the mapping's clock: the demo uses a simulated one that jumps ahead when every
//!   stage is only waiting, so it keeps Lambda's batching without sleeping.
//! - ParallelizationFactor: up to N batches per shard at a time, partition keys hashed
//!   onto N lanes, so order per partition key is kept (lanes are processed in turn).
//! - ReportBatchItemFailures: checkpoint before the first reported failure and retry
//!   from it; an identifier not in the batch fails the whole batch, as on Lambda.
//! - BisectBatchOnFunctionError: after a function error, retry with half the batch.
//! - MaximumRetryAttempts and MaximumRecordAgeInSeconds: then drop the batch, sending
//!   only its metadata (shard, first/last sequence number, size) to the on-failure
//!   destination, which locally is the dead-letter stream.
//! - Resharding: a child shard is read only once its parents are fully processed.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::{DateTime, Utc};
use sluice_core::error::Result;
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::envelope::Reason;
use sluice_core::input::record::StreamRecord;
use sluice_core::ports::{Clock, RecordSink, ShardInfo, ShardSource};
use sluice_core::stage::ingest::origins_of_raw;
use sluice_core::stage::outcome::{BatchOutcome, Fate};
use sluice_core::state::sequence::SeqNo;

use crate::faults::Faults;
use crate::ledger::MemoryLedger;
use crate::streams::Checkpoint;
use crate::template::{EsmSettings, StartingPosition};

/// Lambda's limit on one batch's payload (the synchronous invocation limit).
pub const MAX_BATCH_BYTES: usize = 6 * 1024 * 1024;

pub type InvokeFuture =
    Pin<Box<dyn Future<Output = std::result::Result<KinesisEventResponse, String>> + Send>>;

/// A function as Lambda sees it: a batch and a deadline (epoch ms) in, a response or
/// an error (a crash, a timeout) out. The batch is the records the Lambda reads from
/// its event ([`sluice_core::stage::lambda_event::KinesisBatch`]), handed over as records: building
/// a `KinesisEvent` only to take it apart again cost the demo about 10 % of its time
/// ([`batch_records`] gives exactly what that round trip gave). The mapping shares the
/// batch with the function instead of copying it: the records are moved out of their
/// queue for the call and back afterwards (a handler that keeps the batch costs one
/// copy then).
pub type Handler = Arc<dyn Fn(Batch, i64) -> InvokeFuture + Send + Sync>;

/// One invocation's records, shared by the mapping and the function.
pub type Batch = Arc<Vec<StreamRecord>>;

/// Builds the `KinesisEvent` Lambda would deliver for these records.
pub fn kinesis_event<'a>(
    records: impl IntoIterator<Item = &'a StreamRecord>,
    stream_arn: &str,
) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    for r in records {
        let mut rec = KinesisEventRecord::default();
        rec.aws_region = Some("us-east-1".into());
        rec.event_id = Some(format!("{}:{}", r.shard_id, r.sequence_number));
        rec.event_name = Some("aws:kinesis:record".into());
        rec.event_source = Some("aws:kinesis".into());
        rec.event_source_arn = Some(stream_arn.to_owned());
        rec.event_version = Some("1.0".into());
        rec.invoke_identity_arn = Some("arn:aws:iam::000000000000:role/sluice-local".into());
        rec.kinesis.approximate_arrival_timestamp = SecondTimestamp(
            DateTime::<Utc>::from_timestamp_millis(r.arrival_ms).unwrap_or_default(),
        );
        *rec.kinesis.data = r.data.clone();
        rec.kinesis.partition_key = r.partition_key.clone();
        rec.kinesis.sequence_number = r.sequence_number.clone();
        rec.kinesis.kinesis_schema_version = Some("1.0".into());
        event.records.push(rec);
    }
    event
}

/// The records a function reads from the event [`kinesis_event`] builds, without
/// building it: the stream is named by the mapping's ARN, everything else is the
/// record's own.
pub fn batch_records<'a>(
    records: impl IntoIterator<Item = &'a StreamRecord>,
    stream_arn: &str,
) -> Vec<StreamRecord> {
    let stream = sluice_core::stage::lambda_event::stream_name_of_arn(stream_arn);
    records
        .into_iter()
        .map(|r| {
            let mut r = r.clone();
            if r.stream != stream {
                stream.clone_into(&mut r.stream);
            }
            r
        })
        .collect()
}

/// The batch of the first `n` queued records: moved out of the queue (`true`: the caller
/// puts them back after the call) when they already name the mapping's stream, as they
/// always do in process; otherwise copied as [`batch_records`] copies them.
fn take_batch(queue: &mut VecDeque<StreamRecord>, n: usize, stream_arn: &str) -> (Batch, bool) {
    let stream = sluice_core::stage::lambda_event::stream_name_of_arn(stream_arn);
    if queue.iter().take(n).all(|r| r.stream == stream) {
        (Arc::new(queue.drain(..n).collect()), true)
    } else {
        (
            Arc::new(batch_records(queue.iter().take(n), stream_arn)),
            false,
        )
    }
}

/// What the mapping did, for progress output and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EsmStats {
    pub invocations: u64,
    pub records_delivered: u64,
    pub records_done: u64,
    pub partial_failures: u64,
    pub function_errors: u64,
    pub bisections: u64,
    pub redeliveries: u64,
    pub dropped_batches: u64,
    pub dropped_records: u64,
}

struct Lane {
    queue: VecDeque<StreamRecord>,
    /// Consecutive failed attempts without progress.
    attempts: i64,
    /// Batch size cap after bisection.
    limit: usize,
    /// When the oldest queued record was queued (batching window).
    since_ms: Option<i64>,
}

struct ShardState {
    info: ShardInfo,
    read_after: Option<String>,
    lanes: Vec<Lane>,
    ended: bool,
    /// The last read returned fewer records than asked: the shard is drained for now.
    idle: bool,
    started: bool,
}

impl ShardState {
    fn queued(&self) -> usize {
        self.lanes.iter().map(|l| l.queue.len()).sum()
    }

    fn finished(&self) -> bool {
        self.ended && self.queued() == 0
    }
}

/// The two clocks of a mapping. They are the same clock when the mapping runs in real
/// time (`sluice run`); the demo runs the mapping on a simulated clock that jumps over
/// batching windows while its stages read the wall clock, so it passes both.
#[derive(Clone)]
pub struct EsmClocks {
    /// Batching windows, record ages and arrival times.
    pub mapping: Arc<dyn Clock>,
    /// The clock the function checks its invocation deadline against.
    pub function: Arc<dyn Clock>,
}

impl EsmClocks {
    /// One clock for both: the mapping and the function share time.
    pub fn shared(clock: Arc<dyn Clock>) -> Self {
        EsmClocks {
            mapping: clock.clone(),
            function: clock,
        }
    }
}

pub struct EventSourceMapping<S, D> {
    pub function: String,
    source: S,
    settings: EsmSettings,
    handler: Handler,
    on_failure: D,
    /// The mapping's time: batching windows, record ages, arrival times.
    clock: Arc<dyn Clock>,
    /// The function's time: the clock its deadline is checked against (Lambda hands a
    /// function a wall-clock deadline). The demo runs the mapping on a simulated clock
    /// that may fall far behind the wall clock the stages read; a deadline taken from
    /// the simulated clock would then already have passed when the stage looked at it,
    /// every batch would stop before its first record, and its retries would run out.
    function_clock: Arc<dyn Clock>,
    timeout_ms: i64,
    faults: Option<Arc<Faults>>,
    ledger: Option<Arc<MemoryLedger>>,
    /// Records of this stream are raw producer records (origins are positions).
    raw_input: bool,
    shards: BTreeMap<String, ShardState>,
    arn: String,
    pub stats: EsmStats,
}

impl<S: ShardSource, D: RecordSink> EventSourceMapping<S, D> {
    /// `clocks.mapping` runs the mapping (batching windows, record ages);
    /// `clocks.function` is the clock the function reads its deadline on.
    pub fn new(
        function: &str,
        source: S,
        settings: EsmSettings,
        handler: Handler,
        on_failure: D,
        clocks: EsmClocks,
        timeout_ms: i64,
    ) -> Self {
        let EsmClocks {
            mapping: clock,
            function: function_clock,
        } = clocks;
        let arn = source.stream_arn();
        EventSourceMapping {
            function: function.to_owned(),
            source,
            settings,
            handler,
            on_failure,
            clock,
            function_clock,
            timeout_ms,
            faults: None,
            ledger: None,
            raw_input: false,
            shards: BTreeMap::new(),
            arn,
            stats: EsmStats::default(),
        }
    }

    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Lets the mapping settle the events of batches it drops after their retries.
    pub fn with_ledger(mut self, ledger: Arc<MemoryLedger>, raw_input: bool) -> Self {
        self.ledger = Some(ledger);
        self.raw_input = raw_input;
        self
    }

    pub fn settings(&self) -> &EsmSettings {
        &self.settings
    }

    pub fn stream_name(&self) -> &str {
        self.source.stream_name()
    }

    /// True when nothing is queued and the last read of every shard came back short.
    pub fn is_idle(&self) -> bool {
        self.shards
            .values()
            .all(|s| s.queued() == 0 && (s.idle || s.ended))
    }

    async fn refresh_shards(&mut self) -> Result<()> {
        let factor = self.settings.parallelization_factor.max(1);
        let batch = self.settings.batch_size.max(1);
        for info in self.source.shards().await? {
            self.shards
                .entry(info.shard_id.clone())
                .or_insert_with(|| ShardState {
                    info,
                    read_after: None,
                    lanes: (0..factor)
                        .map(|_| Lane {
                            queue: VecDeque::new(),
                            attempts: 0,
                            limit: batch,
                            since_ms: None,
                        })
                        .collect(),
                    ended: false,
                    idle: false,
                    started: false,
                });
        }
        Ok(())
    }

    /// One round over every shard: read what is new, invoke every lane that has a batch
    /// ready. Returns whether anything was invoked.
    pub async fn poll(&mut self) -> Result<bool> {
        if self.shards.is_empty() || self.shards.values().any(|s| s.ended) {
            self.refresh_shards().await?;
        }
        let ids: Vec<String> = self.shards.keys().cloned().collect();
        let mut worked = false;
        for id in ids {
            let parents_done = {
                let state = &self.shards[&id];
                state
                    .info
                    .parents
                    .iter()
                    .all(|p| self.shards.get(p).is_none_or(ShardState::finished))
            };
            if !parents_done {
                continue;
            }
            self.refill(&id).await?;
            let lanes = self.shards[&id].lanes.len();
            for lane in 0..lanes {
                worked |= self.run_lane(&id, lane).await?;
            }
        }
        Ok(worked)
    }

    async fn refill(&mut self, id: &str) -> Result<()> {
        let factor = self.settings.parallelization_factor.max(1);
        let want = self.settings.batch_size.max(1) * factor;
        let now = self.clock.now_ms();
        let Some(state) = self.shards.get_mut(id) else {
            return Ok(());
        };
        if state.ended || state.queued() >= want {
            return Ok(());
        }
        if !state.started && self.settings.starting_position == StartingPosition::Latest {
            // Skip everything already in the shard.
            loop {
                let read = self
                    .source
                    .read(id, state.read_after.as_deref(), 10_000)
                    .await?;
                match read.records.last() {
                    Some(last) => state.read_after = Some(last.sequence_number.clone()),
                    None => break,
                }
            }
        }
        state.started = true;
        let ask = (want - state.queued()).min(10_000);
        let read = self
            .source
            .read(id, state.read_after.as_deref(), ask)
            .await?;
        // Kinesis may return a short (even empty) read while more data waits behind it.
        state.idle = read.records.len() < ask && read.behind_ms.is_none_or(|b| b <= 0);
        if read.records.is_empty() && read.ended {
            state.ended = true;
        }
        for r in read.records {
            state.read_after = Some(r.sequence_number.clone());
            let lane_no = lane_of(&r.partition_key, factor);
            let lane = &mut state.lanes[lane_no];
            lane.since_ms.get_or_insert(now);
            lane.queue.push_back(r);
        }
        Ok(())
    }

    /// Where this mapping stands in each shard it has read: every record before the
    /// first one still queued (or, with nothing queued, every record read) is done and
    /// will never be delivered again, so its stream may drop it.
    pub fn checkpoints(&self) -> Vec<(String, Checkpoint)> {
        self.shards
            .iter()
            .filter_map(|(id, state)| {
                let first_queued = state
                    .lanes
                    .iter()
                    .filter_map(|l| l.queue.front())
                    .min_by_key(|r| SeqNo::parse(&r.sequence_number));
                let checkpoint = match first_queued {
                    Some(r) => Checkpoint::Before(r.sequence_number.clone()),
                    None => Checkpoint::Through(state.read_after.clone()?),
                };
                Some((id.clone(), checkpoint))
            })
            .collect()
    }

    /// The earliest time a lane waiting on its batching window becomes due.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.shards
            .values()
            .flat_map(|s| s.lanes.iter())
            .filter(|l| !l.queue.is_empty())
            .filter_map(|l| {
                l.since_ms
                    .map(|since| since + self.settings.max_batching_window_ms)
            })
            .min()
    }

    async fn run_lane(&mut self, id: &str, lane_no: usize) -> Result<bool> {
        let Some(Cut { n, expired, event }) = self.cut_batch(id, lane_no) else {
            return Ok(false);
        };
        let Some((batch, moved)) = event else {
            self.drop_batch(id, lane_no, expired, Reason::RecordTooOld)
                .await?;
            return Ok(true);
        };
        let result = self.invoke(id, lane_no, n, batch, moved).await;
        let done = self.judge(id, lane_no, n, result);
        self.settle(id, lane_no, n, done).await
    }

    /// The lane's next batch if one is due: as on Lambda, a batch goes when it has
    /// BatchSize records, when its payload reaches 6 MB, or when its window has passed.
    /// It is built straight from the lane's queue: its records stay queued (they are
    /// delivered again on failure), so the event is their only copy. None when nothing
    /// is due.
    fn cut_batch(&mut self, id: &str, lane_no: usize) -> Option<Cut> {
        let now = self.clock.now_ms();
        let settings = &self.settings;
        let state = self.shards.get_mut(id)?;
        let lane = &mut state.lanes[lane_no];
        if lane.queue.is_empty() {
            return None;
        }
        let due = lane
            .since_ms
            .map_or(now, |s| s + settings.max_batching_window_ms);
        if lane.queue.len() < settings.batch_size
            && now < due
            && !payload_full(&lane.queue, settings.batch_size)
        {
            return None;
        }
        let n = batch_len(&lane.queue, settings.batch_size.min(lane.limit).max(1));
        let expired = expired_count(&lane.queue, n, now, settings.max_record_age_s);
        let event = (expired == 0).then(|| take_batch(&mut lane.queue, n, &self.arn));
        Some(Cut { n, expired, event })
    }

    /// Invokes the function with the batch (counting the invocation), puts moved records
    /// back at the front of their queue, and applies an injected crash.
    async fn invoke(
        &mut self,
        id: &str,
        lane_no: usize,
        n: usize,
        batch: Batch,
        moved: bool,
    ) -> std::result::Result<KinesisEventResponse, String> {
        self.stats.invocations += 1;
        self.stats.records_delivered += n as u64;
        let deadline_ms = self.function_clock.now_ms() + self.timeout_ms;
        let mut result = (self.handler)(batch.clone(), deadline_ms).await;
        if moved {
            // Back at the front of their queue before anything else looks at it: what
            // follows settles them exactly as if they had never left.
            let records = Arc::try_unwrap(batch).unwrap_or_else(|kept| (*kept).clone());
            if let Some(state) = self.shards.get_mut(id) {
                let queue = &mut state.lanes[lane_no].queue;
                for r in records.into_iter().rev() {
                    queue.push_front(r);
                }
            }
        }
        if self.faults.as_ref().is_some_and(|f| f.crash_after_batch()) {
            result = Err("injected crash after the batch was processed".into());
        }
        result
    }

    /// What the invocation's result means for the batch of `n`: `Ok(n)` when all of it
    /// succeeded, else `Err(progress)`, how many leading records did (a partial batch
    /// response's first failure; 0 on a function error, which may bisect the batch).
    fn judge(
        &mut self,
        id: &str,
        lane_no: usize,
        n: usize,
        result: std::result::Result<KinesisEventResponse, String>,
    ) -> std::result::Result<usize, usize> {
        match result {
            Ok(response)
                if response.batch_item_failures.is_empty()
                    || !self.settings.report_batch_item_failures =>
            {
                Ok(n)
            }
            Ok(response) => {
                self.stats.partial_failures += 1;
                let first = response.batch_item_failures[0]
                    .item_identifier
                    .clone()
                    .unwrap_or_default();
                // An identifier outside the batch means "all failed", as on Lambda.
                Err(self
                    .shards
                    .get(id)
                    .and_then(|state| {
                        state.lanes[lane_no]
                            .queue
                            .iter()
                            .take(n)
                            .position(|r| r.sequence_number == first)
                    })
                    .unwrap_or(0))
            }
            Err(_) => {
                self.stats.function_errors += 1;
                if self.settings.bisect_on_error && n > 1 {
                    self.stats.bisections += 1;
                    if let Some(f) = &self.faults {
                        f.note("bisected_batches");
                    }
                    if let Some(state) = self.shards.get_mut(id) {
                        state.lanes[lane_no].limit = n.div_ceil(2);
                    }
                }
                Err(0)
            }
        }
    }

    /// Moves the lane on past what succeeded (unless a redelivery is injected); after a
    /// failure counts the attempt and drops the rest of the batch once the retries are
    /// exhausted.
    async fn settle(
        &mut self,
        id: &str,
        lane_no: usize,
        n: usize,
        done: std::result::Result<usize, usize>,
    ) -> Result<bool> {
        match done {
            Ok(n) => {
                if self.faults.as_ref().is_some_and(|f| f.redeliver()) {
                    self.stats.redeliveries += 1;
                    return Ok(true);
                }
                self.advance(id, lane_no, n, true);
            }
            Err(progress) => {
                self.advance(id, lane_no, progress, progress > 0);
                let attempts = {
                    let Some(state) = self.shards.get_mut(id) else {
                        return Ok(true);
                    };
                    let lane = &mut state.lanes[lane_no];
                    lane.attempts += 1;
                    lane.attempts
                };
                let max = self.settings.max_retry_attempts;
                if max >= 0 && attempts > max {
                    self.drop_batch(id, lane_no, n - progress, Reason::RetriesExhausted)
                        .await?;
                }
            }
        }
        Ok(true)
    }

    fn advance(&mut self, id: &str, lane_no: usize, count: usize, progress: bool) {
        let batch_size = self.settings.batch_size;
        if let Some(state) = self.shards.get_mut(id) {
            let lane = &mut state.lanes[lane_no];
            for _ in 0..count {
                lane.queue.pop_front();
            }
            self.stats.records_done += count as u64;
            if progress {
                lane.attempts = 0;
                lane.limit = batch_size;
            }
            if lane.queue.is_empty() {
                lane.since_ms = None;
            }
        }
    }

    /// Drops the first `count` records of a lane, sending only the batch's metadata to
    /// the on-failure destination.
    async fn drop_batch(
        &mut self,
        id: &str,
        lane_no: usize,
        count: usize,
        reason: Reason,
    ) -> Result<()> {
        let dropped: Vec<StreamRecord> = match self.shards.get(id) {
            Some(state) => state.lanes[lane_no]
                .queue
                .iter()
                .take(count)
                .cloned()
                .collect(),
            None => return Ok(()),
        };
        let (Some(first), Some(last)) = (dropped.first(), dropped.last()) else {
            return Ok(());
        };
        let letter = DeadLetter {
            reason,
            field: None,
            detail: format!(
                "{} dropped {} records of shard {id} after {} attempts (on-failure destination: batch metadata only)",
                self.function,
                dropped.len(),
                self.settings.max_retry_attempts.max(0) + 1
            ),
            id: None,
            origin: None,
            stage: self.function.clone(),
            source_stream: self.source.stream_name().to_owned(),
            shard_id: id.to_owned(),
            sequence_number: first.sequence_number.clone(),
            line: None,
            data: None,
            end_sequence_number: Some(last.sequence_number.clone()),
            batch_size: Some(dropped.len()),
            original: None,
            summary: None,
        };
        self.on_failure
            .put_records(vec![letter.into_record(id)])
            .await?;
        if let Some(ledger) = &self.ledger {
            for r in &dropped {
                for origin in origins_of(r, self.raw_input) {
                    ledger.settled(&origin, Fate::DeadLetter(reason));
                }
            }
        }
        self.stats.dropped_batches += 1;
        self.stats.dropped_records += dropped.len() as u64;
        self.advance(id, lane_no, dropped.len(), true);
        Ok(())
    }
}

/// The lane of a partition key among `lanes`: any fixed function of the key keeps each
/// key's records in one lane, in order, which is all Lambda promises. FNV-1a, not the
/// MD5 that routes keys to shards: MD5 of every record's key (again, after the stream
/// had routed it) was a few percent of the demo.
pub fn lane_of(partition_key: &str, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in partition_key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % lanes as u64) as usize
}

/// A lane's next batch: its size, how many of its leading records are past the maximum
/// age, and (when none is) the event with whether its records left the queue.
struct Cut {
    n: usize,
    expired: usize,
    event: Option<(Batch, bool)>,
}

/// How many records the next batch takes, at most `limit`: Lambda caps a batch at 6 MB
/// of payload as well as at BatchSize records (the first record goes whatever its size).
fn batch_len(queue: &VecDeque<StreamRecord>, limit: usize) -> usize {
    let mut bytes = 0usize;
    queue
        .iter()
        .take(limit)
        .enumerate()
        .take_while(|(i, r)| {
            bytes += r.data.len() + r.partition_key.len();
            *i == 0 || bytes <= MAX_BATCH_BYTES
        })
        .count()
}

/// How many of the batch's `n` leading records are past the maximum age (negative: no
/// maximum); they are dropped before they are delivered.
fn expired_count(queue: &VecDeque<StreamRecord>, n: usize, now: i64, max_age_s: i64) -> usize {
    if max_age_s < 0 {
        return 0;
    }
    let cutoff = now - max_age_s * 1000;
    queue
        .iter()
        .take(n)
        .take_while(|r| r.arrival_ms < cutoff)
        .count()
}

/// Whether the first `batch_size` queued records fill Lambda's 6 MB payload.
fn payload_full(queue: &VecDeque<StreamRecord>, batch_size: usize) -> bool {
    let mut bytes = 0usize;
    queue.iter().take(batch_size).any(|r| {
        bytes += r.data.len() + r.partition_key.len();
        bytes >= MAX_BATCH_BYTES
    })
}

/// The event origins a record carries: for raw records the ones ingest would assign
/// (one per line of each payload, after unpacking a KPL aggregate or gzip), the
/// `origin` field of each line for inter-stage records.
pub fn origins_of(record: &StreamRecord, raw: bool) -> Vec<String> {
    if raw {
        origins_of_raw(record)
    } else {
        record
            .data
            .split(|b| *b == b'\n')
            .filter(|l| !l.trim_ascii().is_empty())
            .filter_map(|l| {
                serde_json::from_slice::<serde_json::Value>(l)
                    .ok()?
                    .get("origin")?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// Wraps a stage as a Lambda-shaped handler (the body of `sluice_core::stage::lambda_event::handle_batch`);
/// `observe` sees every batch with its outcome (for counters and the ledger: the
/// outcome's accounting names records of the batch by index).
pub fn stage_handler<S, F>(stage: Arc<S>, observe: F) -> Handler
where
    S: sluice_core::stage::Stage + 'static,
    F: Fn(&[StreamRecord], &BatchOutcome) + Send + Sync + 'static,
{
    let observe = Arc::new(observe);
    Arc::new(move |records: Batch, deadline_ms: i64| {
        let stage = stage.clone();
        let observe = observe.clone();
        Box::pin(async move {
            let outcome = stage.process(&records, Some(deadline_ms)).await;
            observe(&records, &outcome);
            Ok(sluice_core::stage::lambda_event::response_of(&outcome))
        }) as InvokeFuture
    })
}

/// Books every outcome of a stage in `ledger` (the local runner's accounting).
pub fn booking(
    ledger: Arc<MemoryLedger>,
) -> impl Fn(&[StreamRecord], &BatchOutcome) + Send + Sync + 'static {
    move |records, outcome| ledger.book(records, &outcome.accounting)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sluice_core::input::record::OutRecord;

    use super::*;
    use crate::clock::ManualClock;
    use crate::streams::MemoryStreams;
    use crate::template::EsmSettings;

    fn queued(sizes_and_arrivals: &[(usize, i64)]) -> VecDeque<StreamRecord> {
        sizes_and_arrivals
            .iter()
            .enumerate()
            .map(|(i, (size, arrival_ms))| StreamRecord {
                stream: "raw".into(),
                shard_id: "shard-0".into(),
                sequence_number: i.to_string(),
                partition_key: "k".into(),
                data: vec![b'x'; *size],
                arrival_ms: *arrival_ms,
            })
            .collect()
    }

    #[test]
    fn a_batch_stops_at_its_limit_or_at_six_megabytes() {
        let small = queued(&[(10, 0); 5]);
        assert_eq!(batch_len(&small, 3), 3);
        assert_eq!(batch_len(&small, 10), 5);
        let half = MAX_BATCH_BYTES / 2;
        // The keys count: with their one-byte keys, these two fill the cap exactly...
        let exact = queued(&[(half, 0), (half - 2, 0), (10, 0)]);
        assert_eq!(batch_len(&exact, 10), 2);
        // ...and these overflow it by a byte.
        let over = queued(&[(half, 0), (half - 1, 0), (10, 0)]);
        assert_eq!(batch_len(&over, 10), 1);
        // The first record goes whatever its size.
        assert_eq!(batch_len(&queued(&[(MAX_BATCH_BYTES * 2, 0)]), 10), 1);
    }

    #[test]
    fn only_leading_records_past_the_maximum_age_expire() {
        let q = queued(&[(1, 1_000), (1, 2_000), (1, 9_000), (1, 1_000)]);
        assert_eq!(expired_count(&q, 4, 10_000, 5), 2);
        assert_eq!(expired_count(&q, 1, 10_000, 5), 1);
        assert_eq!(expired_count(&q, 4, 10_000, 60), 0);
        assert_eq!(expired_count(&q, 4, 10_000, -1), 0);
    }

    /// The demo's situation after a long run: the mapping's simulated clock is where it
    /// started while the wall clock the stages read has moved on by ten minutes. The
    /// function must still get its whole timeout, measured on its own clock.
    #[tokio::test]
    async fn the_deadline_is_on_the_functions_clock_not_the_mappings() {
        let sim = Arc::new(ManualClock::starting_at(1_000_000));
        let wall = Arc::new(ManualClock::starting_at(1_000_000 + 600_000));
        let streams = MemoryStreams::new(sim.clone());
        streams.create("in", 1);
        streams.create("dlq", 1);
        streams
            .put(
                "in",
                vec![OutRecord {
                    partition_key: "k".into(),
                    data: b"x".to_vec(),
                }],
            )
            .expect("put");
        let deadlines = Arc::new(Mutex::new(Vec::new()));
        let seen = deadlines.clone();
        let handler: Handler = Arc::new(move |_event, deadline_ms| {
            seen.lock().expect("lock").push(deadline_ms);
            Box::pin(async { Ok(KinesisEventResponse::default()) }) as InvokeFuture
        });
        let mut mapping = EventSourceMapping::new(
            "test",
            streams.source("in"),
            EsmSettings::default(),
            handler,
            streams.sink("dlq"),
            EsmClocks {
                mapping: sim.clone(),
                function: wall.clone(),
            },
            60_000,
        );
        assert!(mapping.poll().await.expect("poll"));
        assert_eq!(
            *deadlines.lock().expect("lock"),
            vec![wall.now_ms() + 60_000]
        );
        assert_eq!(mapping.stats.records_done, 1);
    }

    /// Lambda invokes as soon as a batch reaches the 6 MB payload limit, without
    /// waiting for BatchSize records or the batching window.
    #[tokio::test]
    async fn a_batch_goes_when_its_payload_reaches_six_megabytes() {
        let clock = Arc::new(ManualClock::starting_at(1_000_000));
        let streams = MemoryStreams::new(clock.clone());
        streams.create("in", 1);
        streams.create("dlq", 1);
        let big = |b: u8| OutRecord {
            partition_key: "k".into(),
            data: vec![b; 900 * 1024],
        };
        // Two PutRecords calls: seven such records exceed one call's 5 MiB.
        streams.put("in", (0..4).map(big).collect()).expect("put");
        streams.put("in", (4..7).map(big).collect()).expect("put");
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let handler: Handler = Arc::new(move |records: Batch, _deadline_ms| {
            seen.lock().expect("lock").push(records.len());
            Box::pin(async { Ok(KinesisEventResponse::default()) }) as InvokeFuture
        });
        let settings = EsmSettings {
            batch_size: 100,
            max_batching_window_ms: 60_000,
            ..EsmSettings::default()
        };
        let mut mapping = EventSourceMapping::new(
            "test",
            streams.source("in"),
            settings,
            handler,
            streams.sink("dlq"),
            EsmClocks::shared(clock.clone()),
            60_000,
        );
        assert!(mapping.poll().await.expect("poll"));
        assert_eq!(
            *sizes.lock().expect("lock"),
            vec![6],
            "6 x 900 KiB fit in 6 MiB"
        );
        // The seventh alone waits for its window.
        assert!(!mapping.poll().await.expect("poll"));
        clock.advance_by(60_000);
        assert!(mapping.poll().await.expect("poll"));
        assert_eq!(*sizes.lock().expect("lock"), vec![6, 1]);
    }

    /// Handing a function its records gives what building its `KinesisEvent` and
    /// reading it back gave.
    #[test]
    fn batch_records_are_what_the_event_round_trip_gave() {
        let records: Vec<StreamRecord> = (0..5u8)
            .map(|i| StreamRecord {
                stream: if i % 2 == 0 { "in" } else { "elsewhere" }.into(),
                shard_id: format!("shardId-00000000000{i}"),
                sequence_number: format!("49{:054}", u64::from(i) + 1),
                partition_key: format!("k{i}"),
                data: vec![i; usize::from(i) * 7],
                arrival_ms: 1_767_225_600_000 + i64::from(i) * 1_001,
            })
            .collect();
        let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/in";
        assert_eq!(
            batch_records(&records, arn),
            sluice_core::stage::lambda_event::into_records(kinesis_event(&records, arn))
        );
    }

    #[test]
    fn lanes_are_a_fixed_function_of_the_key_and_spread_keys() {
        assert_eq!(lane_of("anything", 1), 0);
        assert_eq!(lane_of("anything", 0), 0);
        let lanes: Vec<usize> = (0..400).map(|i| lane_of(&format!("key-{i}"), 4)).collect();
        let again: Vec<usize> = (0..400).map(|i| lane_of(&format!("key-{i}"), 4)).collect();
        assert_eq!(lanes, again);
        for lane in 0..4 {
            let n = lanes.iter().filter(|l| **l == lane).count();
            assert!((50..=150).contains(&n), "lane {lane} holds {n} of 400 keys");
        }
    }
}
