//! Kinesis adapters: [`KinesisSink`] (the [`RecordSink`] port, `PutRecords`) and
//! [`KinesisShardSource`] (the [`ShardSource`] port, `ListShards` + `GetRecords`), plus
//! [`stream_arn`].
//!
//! ## Writing: order per partition key, retries of failed entries only
//! `PutRecords` is not atomic: each entry succeeds or fails on its own, and a retried
//! entry lands after entries that were sent later. So the sink sends in *rounds*: round
//! `r` holds the `r`-th record of every partition key (keys in first-appearance order),
//! so one key never has two records in flight. Each round is cut into requests within
//! the API limits (500 entries, 5 MiB of data plus partition keys); the entries that
//! failed (`ErrorCode` set, e.g. `ProvisionedThroughputExceededException`) are sent again
//! after a capped, jittered exponential backoff, and only they. A round completes before
//! the next starts. When the attempts run out the call fails with
//! [`Error::SinkExhausted`] (retryable: the stage reports the batch for a retry).
//! Whole-request failures are classified ([`crate::classify`]) and, when retryable, retried
//! within the same attempt budget. [`KinesisSink::written`] and [`KinesisSink::retried`]
//! count what the sink (and its clones) wrote and sent again, for progress reports. Stages pack many lines into one record per key
//! ([`sluice_core::input::record::pack_lines`]), so a batch is normally a single round.
//!
//! ## Reading
//! `read(shard, after, limit)` keeps the `NextShardIterator` of each shard keyed by the
//! last sequence number it returned, so sequential reads cost one `GetRecords` each and
//! no `GetShardIterator`; an expired iterator is replaced by a fresh one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use sluice_core::input::record::{OutRecord, StreamRecord};
use sluice_core::ports::{RecordSink, ShardInfo, ShardRead, ShardSource};
use sluice_core::state::limits::kinesis as limits;
use sluice_core::{Error, Result};

use crate::backoff::RetryPolicy;
use crate::classify::{self, KINESIS, Verdict};

/// `PutRecords` limits (from [`sluice_core::state::limits::kinesis`]).
pub const MAX_ENTRIES_PER_REQUEST: usize = limits::MAX_RECORDS_PER_REQUEST;
pub const MAX_BYTES_PER_REQUEST: usize = limits::MAX_REQUEST_BYTES;
/// One record: data plus partition key (the default stream limit).
pub const MAX_RECORD_BYTES: usize = limits::MAX_RECORD_BYTES;
pub const MAX_PARTITION_KEY_CHARS: usize = limits::MAX_PARTITION_KEY_CHARS;
/// `GetRecords` returns at most this many records per call.
pub const MAX_GET_RECORDS: usize = 10_000;

/// Per-entry error codes that no retry fixes.
const FATAL_ENTRY_CODES: &[&str] = &[
    "InvalidArgumentException",
    "ValidationException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSOptInRequired",
];

/// What became of one entry of a `PutRecords` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutResult {
    Written {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: String,
    },
}

/// The one `PutRecords` call the sink makes, behind a trait so a test can wrap the
/// real client (e.g. to fail chosen entries). Returns one result per record, in order;
/// whole-request failures come back classified.
pub trait PutRecordsApi: Send + Sync {
    fn put_records(
        &self,
        stream: &str,
        records: &[&OutRecord],
    ) -> impl Future<Output = Result<Vec<PutResult>>> + Send;
}

impl PutRecordsApi for Client {
    async fn put_records(&self, stream: &str, records: &[&OutRecord]) -> Result<Vec<PutResult>> {
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let entry = PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.clone()))
                .partition_key(&r.partition_key)
                .build()
                .map_err(|e| classify::build_error(KINESIS, "PutRecords", stream, e))?;
            entries.push(entry);
        }
        let out = self
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(|e| classify::kinesis("PutRecords", stream, e))?;
        Ok(out
            .records()
            .iter()
            .map(|e| match e.error_code() {
                Some(code) => PutResult::Failed {
                    code: code.to_owned(),
                    message: e.error_message().unwrap_or_default().to_owned(),
                },
                None => PutResult::Written {
                    shard_id: e.shard_id().unwrap_or_default().to_owned(),
                    sequence_number: e.sequence_number().unwrap_or_default().to_owned(),
                },
            })
            .collect())
    }
}

/// Writes records to one stream; see the module documentation.
#[derive(Clone, Debug)]
pub struct KinesisSink<A = Client> {
    api: A,
    stream: String,
    retry: RetryPolicy,
    counters: Arc<Counters>,
}

/// Entries written and entries sent again, shared by a sink's clones.
#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    retried: AtomicU64,
}

impl KinesisSink<Client> {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        Self::with_api(client, stream)
    }
}

impl<A: PutRecordsApi> KinesisSink<A> {
    /// A sink over any [`PutRecordsApi`] (a wrapped client in tests).
    pub fn with_api(api: A, stream: impl Into<String>) -> Self {
        KinesisSink {
            api,
            stream: stream.into(),
            retry: RetryPolicy::default(),
            counters: Arc::default(),
        }
    }

    /// Replaces the default retry policy (50 ms base, 2 s cap, 8 attempts per round).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn api(&self) -> &A {
        &self.api
    }

    /// Entries written so far (each record once, however often it was sent).
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Entries sent again after a failed attempt so far (a record sent three times
    /// counts twice).
    pub fn retried(&self) -> u64 {
        self.counters.retried.load(Ordering::Relaxed)
    }

    fn check(&self, index: usize, r: &OutRecord) -> Result<()> {
        limits::check_record(r).map_err(|e| {
            tracing::warn!(
                stream = %self.stream,
                record = index,
                partition_key = %r.partition_key.chars().take(64).collect::<String>(),
                error = %e,
                "record rejected before sending"
            );
            e
        })
    }

    async fn send_round(&self, records: &[OutRecord], round: Vec<usize>) -> Result<()> {
        let mut pending = round;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut failed = Vec::new();
            let mut last_code = String::new();
            for chunk in chunks(records, &pending) {
                let batch: Vec<&OutRecord> = chunk.iter().map(|&i| &records[i]).collect();
                match self.api.put_records(&self.stream, &batch).await {
                    Ok(results) if results.len() == chunk.len() => {
                        for (&i, result) in chunk.iter().zip(results) {
                            if matches!(result, PutResult::Written { .. }) {
                                self.counters.written.fetch_add(1, Ordering::Relaxed);
                            }
                            if let PutResult::Failed { code, message } = result {
                                if let Some(limit) =
                                    classify::limit_of(KINESIS, "PutRecords", &code, &message)
                                {
                                    return Err(limit);
                                }
                                if FATAL_ENTRY_CODES.contains(&code.as_str()) {
                                    return Err(classify::to_error(
                                        KINESIS,
                                        "PutRecords",
                                        &self.stream,
                                        Verdict::Fatal,
                                        &format!("record {i}: {code}: {message}"),
                                        None,
                                    ));
                                }
                                failed.push(i);
                                last_code = code;
                            }
                        }
                    }
                    Ok(results) => {
                        tracing::warn!(
                            stream = %self.stream,
                            sent = chunk.len(),
                            results = results.len(),
                            "PutRecords answered with the wrong number of results"
                        );
                        failed.extend_from_slice(&chunk);
                        last_code = "MismatchedResponse".into();
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::debug!(stream = %self.stream, error = %e, "PutRecords request failed");
                        failed.extend_from_slice(&chunk);
                        last_code = e.code().to_owned();
                    }
                    Err(e) => return Err(e),
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if attempt >= self.retry.max_attempts.max(1) {
                return Err(Error::SinkExhausted {
                    stream: self.stream.clone(),
                    failed: failed.len(),
                    total: records.len(),
                    attempts: attempt,
                    last_code,
                });
            }
            tracing::debug!(
                stream = %self.stream,
                failed = failed.len(),
                attempt,
                code = %last_code,
                "retrying failed PutRecords entries"
            );
            self.retry.sleep(attempt).await;
            self.counters
                .retried
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
            pending = failed;
        }
    }
}

impl<A: PutRecordsApi> RecordSink for KinesisSink<A> {
    fn stream_name(&self) -> &str {
        &self.stream
    }

    async fn put_records(&self, records: Vec<OutRecord>) -> Result<()> {
        for (i, r) in records.iter().enumerate() {
            self.check(i, r)?;
        }
        for round in rounds(&records) {
            self.send_round(&records, round).await?;
        }
        Ok(())
    }
}

/// Indices of `records` by round: round `r` holds the `r`-th record of every partition
/// key, keys in order of first appearance.
pub fn rounds(records: &[OutRecord]) -> Vec<Vec<usize>> {
    let mut key_slot: HashMap<&str, usize> = HashMap::new();
    let mut per_key: Vec<Vec<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let slot = *key_slot.entry(&r.partition_key).or_insert_with(|| {
            per_key.push(Vec::new());
            per_key.len() - 1
        });
        per_key[slot].push(i);
    }
    let depth = per_key.iter().map(Vec::len).max().unwrap_or(0);
    (0..depth)
        .map(|r| per_key.iter().filter_map(|k| k.get(r).copied()).collect())
        .collect()
}

/// Cuts `indices` into requests within the entry and byte limits, keeping their order
/// ([`sluice_core::state::limits::kinesis::requests`], which the in-memory sink uses too).
pub fn chunks(records: &[OutRecord], indices: &[usize]) -> Vec<Vec<usize>> {
    limits::requests(records, indices)
}

/// The ARN of a stream (`DescribeStreamSummary`).
pub async fn stream_arn(client: &Client, stream: &str) -> Result<String> {
    let out = client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| classify::kinesis("DescribeStreamSummary", stream, e))?;
    Ok(out
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .unwrap_or_default())
}

#[derive(Clone, Debug)]
struct CachedIterator {
    /// The sequence number the iterator continues after (`None`: from the oldest).
    after: Option<String>,
    iterator: String,
}

/// Reads a stream shard by shard for the local event source mapping (`sluice run`).
#[derive(Debug)]
pub struct KinesisShardSource {
    client: Client,
    stream: String,
    stream_arn: String,
    iterators: Mutex<HashMap<String, CachedIterator>>,
}

impl KinesisShardSource {
    pub fn new(client: Client, stream: impl Into<String>, stream_arn: impl Into<String>) -> Self {
        KinesisShardSource {
            client,
            stream: stream.into(),
            stream_arn: stream_arn.into(),
            iterators: Mutex::new(HashMap::new()),
        }
    }

    /// Looks the stream's ARN up first.
    pub async fn connect(client: Client, stream: impl Into<String>) -> Result<Self> {
        let stream = stream.into();
        let arn = stream_arn(&client, &stream).await?;
        Ok(Self::new(client, stream, arn))
    }

    fn cached(&self, shard_id: &str, after: Option<&str>) -> Option<String> {
        let cache = self.iterators.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(shard_id)
            .filter(|c| c.after.as_deref() == after)
            .map(|c| c.iterator.clone())
    }

    fn remember(&self, shard_id: &str, entry: Option<CachedIterator>) {
        let mut cache = self.iterators.lock().unwrap_or_else(|p| p.into_inner());
        match entry {
            Some(e) => cache.insert(shard_id.to_owned(), e),
            None => cache.remove(shard_id),
        };
    }

    async fn fresh_iterator(&self, shard_id: &str, after: Option<&str>) -> Result<String> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard_id);
        let request = match after {
            Some(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let out = request
            .send()
            .await
            .map_err(|e| classify::kinesis("GetShardIterator", &self.stream, e))?;
        out.shard_iterator().map(str::to_owned).ok_or_else(|| {
            classify::to_error(
                KINESIS,
                "GetShardIterator",
                &self.stream,
                Verdict::Retryable,
                &format!("no iterator returned for shard {shard_id:?}"),
                None,
            )
        })
    }
}

impl KinesisShardSource {
    fn stream_records(
        &self,
        shard_id: &str,
        records: &[aws_sdk_kinesis::types::Record],
    ) -> Vec<StreamRecord> {
        records
            .iter()
            .map(|r| StreamRecord {
                stream: self.stream.clone(),
                shard_id: shard_id.to_owned(),
                sequence_number: r.sequence_number().to_owned(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: r.data().as_ref().to_vec(),
                arrival_ms: r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(0),
            })
            .collect()
    }

    /// Up to `limit` records of a shard from sequence number `at` on (the record `at`
    /// first, when the stream still holds it): `sluice replay` reads back the raw
    /// records behind dead letters with this. One `GetShardIterator`
    /// (`AT_SEQUENCE_NUMBER`) and one `GetRecords`; iterators are not cached.
    pub async fn read_at(
        &self,
        shard_id: &str,
        at: &str,
        limit: usize,
    ) -> Result<Vec<StreamRecord>> {
        let iterator = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(at)
            .send()
            .await
            .map_err(|e| classify::kinesis("GetShardIterator", &self.stream, e))?;
        let Some(iterator) = iterator.shard_iterator() else {
            return Ok(Vec::new());
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit.clamp(1, MAX_GET_RECORDS) as i32)
            .send()
            .await
            .map_err(|e| classify::kinesis("GetRecords", &self.stream, e))?;
        Ok(self.stream_records(shard_id, out.records()))
    }
}

impl ShardSource for KinesisShardSource {
    fn stream_name(&self) -> &str {
        &self.stream
    }

    fn stream_arn(&self) -> String {
        self.stream_arn.clone()
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self.client.list_shards();
            let request = match &token {
                // The stream name must not be repeated along with a token.
                Some(t) => request.next_token(t),
                None => request.stream_name(&self.stream),
            };
            let out = request
                .send()
                .await
                .map_err(|e| classify::kinesis("ListShards", &self.stream, e))?;
            for s in out.shards() {
                shards.push(ShardInfo {
                    shard_id: s.shard_id().to_owned(),
                    parents: [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                        .into_iter()
                        .flatten()
                        .map(str::to_owned)
                        .collect(),
                });
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(shards)
    }

    async fn read(&self, shard_id: &str, after: Option<&str>, limit: usize) -> Result<ShardRead> {
        let limit = limit.clamp(1, MAX_GET_RECORDS) as i32;
        let (mut iterator, mut fresh) = match self.cached(shard_id, after) {
            Some(it) => (it, false),
            None => (self.fresh_iterator(shard_id, after).await?, true),
        };
        let out = loop {
            match self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(limit)
                .send()
                .await
            {
                Ok(out) => break out,
                Err(e) if !fresh && classify::code_of(&e) == Some("ExpiredIteratorException") => {
                    tracing::debug!(stream = %self.stream, shard_id, "shard iterator expired");
                    iterator = self.fresh_iterator(shard_id, after).await?;
                    fresh = true;
                }
                // The cached iterator stays: it is still good for a retry.
                Err(e) => return Err(classify::kinesis("GetRecords", &self.stream, e)),
            }
        };
        let records = self.stream_records(shard_id, out.records());
        let next = out.next_shard_iterator().filter(|s| !s.is_empty());
        let last = records
            .last()
            .map(|r| r.sequence_number.clone())
            .or_else(|| after.map(str::to_owned));
        self.remember(
            shard_id,
            next.map(|it| CachedIterator {
                after: last,
                iterator: it.to_owned(),
            }),
        );
        Ok(ShardRead {
            records,
            ended: next.is_none(),
            behind_ms: out.millis_behind_latest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, data: &str) -> OutRecord {
        OutRecord {
            partition_key: key.into(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn rounds_hold_one_record_per_key_in_order() {
        let records = vec![
            rec("a", "a1"),
            rec("b", "b1"),
            rec("a", "a2"),
            rec("c", "c1"),
            rec("a", "a3"),
            rec("b", "b2"),
        ];
        let r = rounds(&records);
        assert_eq!(r, vec![vec![0, 1, 3], vec![2, 5], vec![4]]);
        for round in &r {
            let mut keys: Vec<&str> = round
                .iter()
                .map(|&i| records[i].partition_key.as_str())
                .collect();
            let n = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), n, "a key twice in one round");
        }
        assert!(rounds(&[]).is_empty());
    }

    #[test]
    fn chunks_respect_entry_and_byte_limits() {
        let many: Vec<OutRecord> = (0..1200).map(|i| rec(&format!("k{i}"), "x")).collect();
        let idx: Vec<usize> = (0..many.len()).collect();
        let c = chunks(&many, &idx);
        assert_eq!(
            c.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        assert_eq!(c.concat(), idx, "order kept");

        let big = vec![0u8; 1024 * 1024 - 10];
        let large: Vec<OutRecord> = (0..12)
            .map(|i| OutRecord {
                partition_key: format!("key{i:02}"),
                data: big.clone(),
            })
            .collect();
        let idx: Vec<usize> = (0..large.len()).collect();
        let c = chunks(&large, &idx);
        for chunk in &c {
            let bytes: usize = chunk
                .iter()
                .map(|&i| large[i].data.len() + large[i].partition_key.len())
                .sum();
            assert!(bytes <= MAX_BYTES_PER_REQUEST, "{bytes}");
        }
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 5, 2]);
    }

    /// Fails the first attempt of every third record it has not seen, and fails
    /// everything for keys starting with `never`.
    #[derive(Default)]
    struct Fake {
        seen: Mutex<std::collections::HashSet<Vec<u8>>>,
        sent: Mutex<Vec<Vec<String>>>,
    }

    impl PutRecordsApi for Fake {
        async fn put_records(
            &self,
            _stream: &str,
            records: &[&OutRecord],
        ) -> Result<Vec<PutResult>> {
            let mut seen = self.seen.lock().expect("lock");
            let mut call = Vec::new();
            let results = records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    call.push(String::from_utf8_lossy(&r.data).into_owned());
                    let first = seen.insert(r.data.clone());
                    if r.partition_key.starts_with("never") || (first && i % 3 == 0) {
                        PutResult::Failed {
                            code: "ProvisionedThroughputExceededException".into(),
                            message: "slow down".into(),
                        }
                    } else {
                        PutResult::Written {
                            shard_id: "shardId-000000000000".into(),
                            sequence_number: "1".into(),
                        }
                    }
                })
                .collect();
            self.sent.lock().expect("lock").push(call);
            Ok(results)
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            base: std::time::Duration::from_millis(1),
            cap: std::time::Duration::from_millis(2),
            max_attempts: 4,
        }
    }

    #[tokio::test]
    async fn only_failed_entries_are_sent_again_round_by_round() {
        let sink = KinesisSink::with_api(Fake::default(), "s").with_retry(quick());
        let records = vec![
            rec("a", "a1"),
            rec("b", "b1"),
            rec("c", "c1"),
            rec("d", "d1"),
            rec("a", "a2"),
            rec("b", "b2"),
        ];
        sink.put_records(records).await.expect("written");
        let sent = sink.api().sent.lock().expect("lock").clone();
        assert_eq!(
            sent,
            vec![
                vec!["a1", "b1", "c1", "d1"],
                vec!["a1", "d1"],
                vec!["a2", "b2"],
                vec!["a2"],
            ]
        );
    }

    #[tokio::test]
    async fn counts_written_and_retried_entries() {
        let sink = KinesisSink::with_api(Fake::default(), "s").with_retry(quick());
        assert_eq!((sink.written(), sink.retried()), (0, 0));
        let records = vec![
            rec("a", "a1"),
            rec("b", "b1"),
            rec("c", "c1"),
            rec("d", "d1"),
            rec("a", "a2"),
            rec("b", "b2"),
        ];
        sink.put_records(records).await.expect("written");
        // a1 and d1 fail once in round 1, a2 once in round 2 (see the test above).
        assert_eq!((sink.written(), sink.retried()), (6, 3));
        sink.put_records(vec![rec("ok", "7"), rec("never", "8")])
            .await
            .expect_err("never succeeds");
        // `ok` (index 0, first sight) fails once and is written on its retry; `never`
        // is sent 4 times and never written: 1 + 3 more retries.
        assert_eq!((sink.written(), sink.retried()), (7, 7));
    }

    #[tokio::test]
    async fn gives_up_with_sink_exhausted() {
        let sink = KinesisSink::with_api(Fake::default(), "s").with_retry(quick());
        let err = sink
            .put_records(vec![rec("ok", "1"), rec("never", "2")])
            .await
            .expect_err("never succeeds");
        match &err {
            Error::SinkExhausted {
                failed,
                total,
                attempts,
                last_code,
                ..
            } => {
                assert_eq!((*failed, *total, *attempts), (1, 2, 4));
                assert_eq!(last_code, "ProvisionedThroughputExceededException");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.is_retryable());
        let too_long = "k".repeat(257);
        let err = sink
            .put_records(vec![rec(&too_long, "x")])
            .await
            .expect_err("key too long");
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    max: 256,
                    actual: 257,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn an_oversize_record_fails_before_anything_is_sent() {
        let sink = KinesisSink::with_api(Fake::default(), "s").with_retry(quick());
        let err = sink
            .put_records(vec![
                rec("a", "fine"),
                OutRecord {
                    partition_key: "k".into(),
                    data: vec![0; MAX_RECORD_BYTES],
                },
            ])
            .await
            .expect_err("1 MiB + 1 with its key");
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    max: MAX_RECORD_BYTES,
                    actual,
                    ..
                } if actual == MAX_RECORD_BYTES + 1
            ),
            "{err:?}"
        );
        assert!(
            sink.api().sent.lock().expect("lock").is_empty(),
            "nothing sent"
        );
        let err = sink
            .put_records(vec![rec("", "x")])
            .await
            .expect_err("empty key");
        assert!(
            matches!(
                err,
                Error::Remote {
                    retryable: false,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// Answers every entry with the per-entry error kinesis-local gives a record over
    /// its size limit.
    struct TooLarge;

    impl PutRecordsApi for TooLarge {
        async fn put_records(
            &self,
            _stream: &str,
            records: &[&OutRecord],
        ) -> Result<Vec<PutResult>> {
            Ok(records
                .iter()
                .map(|r| PutResult::Failed {
                    code: "InvalidArgumentException".into(),
                    message: format!(
                        "Record data size {} exceeds the stream's max record size of 1048576 bytes",
                        r.data.len()
                    ),
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn an_entry_rejected_for_its_size_is_limit_exceeded_not_retried() {
        let sink = KinesisSink::with_api(TooLarge, "s").with_retry(quick());
        let err = sink
            .put_records(vec![rec("a", "xyz")])
            .await
            .expect_err("rejected entry");
        assert!(
            matches!(err, Error::LimitExceeded { actual: 3, .. }),
            "{err:?}"
        );
        assert_eq!(sink.retried(), 0, "never sent again");
    }
}
