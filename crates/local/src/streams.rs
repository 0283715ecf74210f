//! In-process Kinesis-like streams: shards own contiguous ranges of the 128-bit MD5
//! hash key space (as Kinesis assigns them), a partition key goes to the shard whose
//! range holds MD5(key), and sequence numbers are 56-digit decimal strings that only
//! grow.
//!
//! ## Limits
//! [`MemoryStreams::put`] is one `PutRecords` call and enforces its limits
//! ([`sluice_core::state::limits::kinesis::check_request`]): up to 500 records, 5 MiB in all,
//! each record up to 1 MiB with its partition key, a partition key of 1 to 256
//! characters. A request that breaks one fails whole with
//! [`Error::LimitExceeded`] (an empty key: a non-retryable [`Error::Remote`]) and
//! appends nothing. [`MemorySink`] is the [`RecordSink`] port and does what the AWS
//! sink does: it checks every record first (one that can never be written fails the
//! call before anything is written), then sends requests of at most 500 records and
//! 5 MiB.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use md5::{Digest, Md5};
use sluice_core::error::{Error, Result};
use sluice_core::input::record::{OutRecord, StreamRecord};
use sluice_core::ports::{Clock, RecordSink, ShardInfo, ShardRead, ShardSource};
use sluice_core::state::limits::kinesis as limits;
use sluice_core::state::sequence::SeqNo;

/// The 128-bit hash key of a partition key, as Kinesis computes it.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The shard index for a hash key when `shards` split the key space evenly.
pub fn shard_index(hash: u128, shards: usize) -> usize {
    let width = (u128::MAX / shards as u128).saturating_add(1);
    ((hash / width) as usize).min(shards - 1)
}

/// A 56-digit sequence number, `49` then `n` zero-padded (`format!("49{n:054}")`,
/// without the formatting machinery: one is made per record written).
pub fn sequence_number(n: u64) -> String {
    let mut digits = [b'0'; 56];
    digits[0] = b'4';
    digits[1] = b'9';
    let mut rest = n;
    let mut at = digits.len();
    while rest > 0 {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    digits.iter().map(|&d| char::from(d)).collect()
}

pub fn shard_id(index: usize) -> String {
    format!("shardId-{index:012}")
}

struct Shard {
    id: String,
    /// A queue: consumers drop records from the front after every batch, which must
    /// not move what stays behind.
    records: VecDeque<StreamRecord>,
}

struct Stream {
    shards: Vec<Shard>,
    /// Bytes written so far (data and partition keys, as Kinesis meters a put's
    /// payload): what a stage's output costs in stream throughput.
    bytes_put: u64,
}

/// A set of named in-process streams.
pub struct MemoryStreams {
    streams: Mutex<BTreeMap<String, Stream>>,
    next_sequence: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl MemoryStreams {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(MemoryStreams {
            streams: Mutex::new(BTreeMap::new()),
            next_sequence: AtomicU64::new(1),
            clock,
        })
    }

    pub fn create(&self, name: &str, shards: usize) {
        let shards = (0..shards.max(1))
            .map(|i| Shard {
                id: shard_id(i),
                records: VecDeque::new(),
            })
            .collect();
        self.lock().insert(
            name.to_owned(),
            Stream {
                shards,
                bytes_put: 0,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stream>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One `PutRecords` request: appends records (all or nothing) and returns their
    /// sequence numbers; a request over a Kinesis limit appends nothing.
    pub fn put(&self, stream: &str, records: Vec<OutRecord>) -> Result<Vec<String>> {
        limits::check_request(&records)?;
        let now = self.clock.now_ms();
        let mut streams = self.lock();
        let s = streams.get_mut(stream).ok_or_else(|| Error::Remote {
            service: "kinesis",
            operation: "PutRecords",
            message: format!("stream {stream:?} does not exist"),
            retryable: false,
            source: None,
        })?;
        let n = s.shards.len();
        let mut seqs = Vec::with_capacity(records.len());
        for r in records {
            s.bytes_put += (r.data.len() + r.partition_key.len()) as u64;
            let index = shard_index(hash_key(&r.partition_key), n);
            let seq = sequence_number(self.next_sequence.fetch_add(1, Ordering::SeqCst));
            let shard = &mut s.shards[index];
            shard.records.push_back(StreamRecord {
                stream: stream.to_owned(),
                shard_id: shard.id.clone(),
                sequence_number: seq.clone(),
                partition_key: r.partition_key,
                data: r.data,
                arrival_ms: now,
            });
            seqs.push(seq);
        }
        Ok(seqs)
    }

    /// Bytes written to a stream so far (data and partition keys).
    pub fn bytes_put(&self, stream: &str) -> u64 {
        self.lock().get(stream).map_or(0, |s| s.bytes_put)
    }

    /// Every record of a stream, shard by shard.
    pub fn records(&self, stream: &str) -> Vec<StreamRecord> {
        self.lock()
            .get(stream)
            .map(|s| {
                s.shards
                    .iter()
                    .flat_map(|sh| sh.records.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn len(&self, stream: &str) -> usize {
        self.lock()
            .get(stream)
            .map_or(0, |s| s.shards.iter().map(|sh| sh.records.len()).sum())
    }

    pub fn is_empty(&self, stream: &str) -> bool {
        self.len(stream) == 0
    }

    pub fn sink(self: &Arc<Self>, stream: &str) -> MemorySink {
        MemorySink {
            streams: self.clone(),
            stream: stream.to_owned(),
        }
    }

    pub fn source(self: &Arc<Self>, stream: &str) -> MemorySource {
        MemorySource {
            streams: self.clone(),
            stream: stream.to_owned(),
        }
    }
}

/// Writes into one in-process stream.
#[derive(Clone)]
pub struct MemorySink {
    streams: Arc<MemoryStreams>,
    stream: String,
}

impl RecordSink for MemorySink {
    fn stream_name(&self) -> &str {
        &self.stream
    }

    async fn put_records(&self, records: Vec<OutRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        for r in &records {
            limits::check_record(r)?;
        }
        let all: Vec<usize> = (0..records.len()).collect();
        let requests = limits::requests(&records, &all);
        if let [_] = requests.as_slice() {
            return self.streams.put(&self.stream, records).map(|_| ());
        }
        for request in requests {
            let batch = request.iter().map(|&i| records[i].clone()).collect();
            self.streams.put(&self.stream, batch)?;
        }
        Ok(())
    }
}

/// Reads one in-process stream.
#[derive(Clone)]
pub struct MemorySource {
    streams: Arc<MemoryStreams>,
    stream: String,
}

impl ShardSource for MemorySource {
    fn stream_name(&self) -> &str {
        &self.stream
    }

    fn stream_arn(&self) -> String {
        format!(
            "arn:aws:kinesis:us-east-1:000000000000:stream/{}",
            self.stream
        )
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>> {
        Ok(self
            .streams
            .lock()
            .get(&self.stream)
            .map(|s| {
                s.shards
                    .iter()
                    .map(|sh| ShardInfo {
                        shard_id: sh.id.clone(),
                        parents: Vec::new(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn read(&self, shard_id: &str, after: Option<&str>, limit: usize) -> Result<ShardRead> {
        let streams = self.streams.lock();
        let Some(shard) = streams
            .get(&self.stream)
            .and_then(|s| s.shards.iter().find(|sh| sh.id == shard_id))
        else {
            return Ok(ShardRead::default());
        };
        let start = match after.and_then(SeqNo::parse) {
            None => 0,
            Some(after) => shard
                .records
                .partition_point(|r| SeqNo::parse(&r.sequence_number).is_some_and(|s| s <= after)),
        };
        let end = start.saturating_add(limit).min(shard.records.len());
        Ok(ShardRead {
            records: shard.records.range(start..end).cloned().collect(),
            ended: false,
            behind_ms: Some(0),
        })
    }
}

// ---- Trimming: records every consumer has checkpointed are dropped. ----
//
// Kinesis keeps records for its retention period whether or not anyone read them; the
// in-process streams keep them only until every registered consumer has checkpointed
// them, so `sluice demo` runs in memory bounded by what is in flight, not by how many
// events went through. A stream without a registered consumer (dead letters, alerts)
// keeps everything, as a real stream does within its retention.

/// How far a consumer has got in one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every record up to and including this sequence number is done.
    Through(String),
    /// Every record before this sequence number is done; this one is not.
    Before(String),
}

impl Checkpoint {
    /// How many records at the front of `records` this checkpoint covers.
    fn covers(&self, records: &VecDeque<StreamRecord>) -> usize {
        let (seq, inclusive) = match self {
            Checkpoint::Through(s) => (s, true),
            Checkpoint::Before(s) => (s, false),
        };
        let Some(at) = SeqNo::parse(seq) else {
            return 0;
        };
        records.partition_point(|r| {
            SeqNo::parse(&r.sequence_number)
                .is_some_and(|s| if inclusive { s <= at } else { s < at })
        })
    }
}

/// The consumers of a set of in-process streams and their checkpoints, by stream,
/// consumer and shard. A consumer that has not checkpointed a shard yet holds all of it.
#[derive(Default)]
pub struct Consumers {
    checkpoints: Mutex<ByStream>,
}

/// Checkpoints by stream, then consumer, then shard.
type ByStream = BTreeMap<String, BTreeMap<String, BTreeMap<String, Checkpoint>>>;

impl Consumers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a consumer of a stream: from now on the stream keeps a record until
    /// this consumer (and every other one declared) has checkpointed it.
    pub fn register(&self, stream: &str, consumer: &str) {
        self.lock()
            .entry(stream.to_owned())
            .or_default()
            .entry(consumer.to_owned())
            .or_default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByStream> {
        self.checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a consumer's checkpoint in one shard and drops from `streams` the
    /// records of that shard every consumer of the stream has checkpointed. Returns
    /// how many were dropped.
    pub fn checkpoint(
        &self,
        streams: &MemoryStreams,
        stream: &str,
        consumer: &str,
        shard_id: &str,
        checkpoint: Checkpoint,
    ) -> usize {
        let held: Vec<Option<Checkpoint>> = {
            let mut all = self.lock();
            let consumers = all.entry(stream.to_owned()).or_default();
            consumers
                .entry(consumer.to_owned())
                .or_default()
                .insert(shard_id.to_owned(), checkpoint);
            consumers
                .values()
                .map(|c| c.get(shard_id).cloned())
                .collect()
        };
        streams.trim(stream, shard_id, |records| {
            held.iter()
                .map(|c| c.as_ref().map_or(0, |c| c.covers(records)))
                .min()
                .unwrap_or(0)
        })
    }
}

impl MemoryStreams {
    /// The names of every stream, to see what they hold.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Drops the first `covered(records)` records of a shard; returns how many.
    pub fn trim(
        &self,
        stream: &str,
        shard_id: &str,
        covered: impl FnOnce(&VecDeque<StreamRecord>) -> usize,
    ) -> usize {
        let mut streams = self.lock();
        let Some(shard) = streams
            .get_mut(stream)
            .and_then(|s| s.shards.iter_mut().find(|sh| sh.id == shard_id))
        else {
            return 0;
        };
        // Not `make_contiguous`: a queue that wrapped around would be rotated whole on
        // every trim, once per poll.
        let n = covered(&shard.records).min(shard.records.len());
        shard.records.drain(..n);
        n
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequence_numbers_are_49_and_54_padded_digits() {
        for n in [0, 1, 9, 10, 12_345, u64::MAX / 3, u64::MAX] {
            assert_eq!(super::sequence_number(n), format!("49{n:054}"));
        }
    }

    use super::*;
    use sluice_core::ports::SystemClock;

    #[test]
    fn keys_map_to_shards_by_md5_range() {
        // MD5("") = d41d8cd9…, in the top half of the key space.
        assert_eq!(shard_index(hash_key(""), 2), 1);
        assert_eq!(shard_index(0, 4), 0);
        assert_eq!(shard_index(u128::MAX, 4), 3);
        assert_eq!(shard_index(u128::MAX / 4 + 1, 4), 1);
        let counts = (0..1000).fold([0usize; 4], |mut acc, i| {
            acc[shard_index(hash_key(&format!("key-{i}")), 4)] += 1;
            acc
        });
        assert!(counts.iter().all(|c| *c > 180), "{counts:?}");
    }

    #[tokio::test]
    async fn sequence_numbers_grow_within_a_shard_and_reads_resume_after_one() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("s", 2);
        let recs: Vec<OutRecord> = (0..10)
            .map(|i| OutRecord {
                partition_key: format!("k{}", i % 3),
                data: vec![i],
            })
            .collect();
        let seqs = streams.put("s", recs).expect("put");
        assert!(seqs.iter().all(|s| s.len() == 56));
        let source = streams.source("s");
        let mut total = 0;
        for shard in source.shards().await.expect("shards") {
            let all = source
                .read(&shard.shard_id, None, 100)
                .await
                .expect("read")
                .records;
            let ordered: Vec<SeqNo> = all
                .iter()
                .map(|r| SeqNo::parse(&r.sequence_number).expect("seq"))
                .collect();
            assert!(ordered.windows(2).all(|w| w[0] < w[1]));
            if all.len() > 1 {
                let rest = source
                    .read(&shard.shard_id, Some(&all[0].sequence_number), 100)
                    .await
                    .expect("read");
                assert_eq!(rest.records.len(), all.len() - 1);
            }
            total += all.len();
        }
        assert_eq!(total, 10);
        assert!(streams.put("missing", vec![]).is_err());
    }

    #[tokio::test]
    async fn records_go_once_every_consumer_has_checkpointed_them() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("s", 1);
        streams.create("unread", 1);
        let put = |stream: &str| {
            streams
                .put(
                    stream,
                    (0..5u8)
                        .map(|i| OutRecord {
                            partition_key: "k".into(),
                            data: vec![i],
                        })
                        .collect(),
                )
                .expect("put")
        };
        let seqs = put("s");
        put("unread");
        let consumers = Consumers::new();
        consumers.register("s", "a");
        consumers.register("s", "b");
        let shard = shard_id(0);
        let through = |i: usize| Checkpoint::Through(seqs[i].clone());
        // b has not checkpointed yet: nothing goes.
        assert_eq!(
            consumers.checkpoint(&streams, "s", "a", &shard, through(2)),
            0
        );
        assert_eq!(
            consumers.checkpoint(
                &streams,
                "s",
                "b",
                &shard,
                Checkpoint::Before(seqs[1].clone())
            ),
            1
        );
        assert_eq!(streams.len("s"), 4);
        assert_eq!(
            consumers.checkpoint(&streams, "s", "b", &shard, through(4)),
            2
        );
        assert_eq!(streams.len("s"), 2, "a still holds records 3 and 4");
        // Reads resume after a checkpoint that was trimmed away.
        let left: Vec<Vec<u8>> = streams
            .source("s")
            .read(&shard, Some(&seqs[0]), 100)
            .await
            .expect("read")
            .records
            .into_iter()
            .map(|r| r.data)
            .collect();
        assert_eq!(left, vec![vec![3u8], vec![4u8]]);
        // A stream without consumers (dead letters) keeps everything.
        assert_eq!(streams.len("unread"), 5);
    }
}
