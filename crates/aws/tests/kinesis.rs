//! Kinesis adapters against kinesis-local (see infra/local/up).
#![cfg(feature = "integration")]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use sluice_aws::RetryPolicy;
use sluice_aws::kinesis::{KinesisShardSource, KinesisSink, PutRecordsApi, PutResult};
use sluice_core::Result;
use sluice_core::input::record::OutRecord;
use sluice_core::ports::{RecordSink, ShardSource};
use sluice_core::state::sequence::SeqNo;
use sluice_core::testing::read_all;

/// Forwards to the real server, except that it fails (as throttled, without sending
/// them) the entries chosen by `fails` the first time it is offered them.
struct Flaky {
    inner: aws_sdk_kinesis::Client,
    fails: fn(&[u8]) -> bool,
    offered: Mutex<HashMap<Vec<u8>, u32>>,
    forwarded: Mutex<Vec<Vec<u8>>>,
    calls: Mutex<Vec<usize>>,
}

impl Flaky {
    fn new(inner: aws_sdk_kinesis::Client, fails: fn(&[u8]) -> bool) -> Self {
        Flaky {
            inner,
            fails,
            offered: Mutex::new(HashMap::new()),
            forwarded: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl PutRecordsApi for Flaky {
    async fn put_records(&self, stream: &str, records: &[&OutRecord]) -> Result<Vec<PutResult>> {
        self.calls.lock().expect("lock").push(records.len());
        let fail: Vec<bool> = {
            let mut offered = self.offered.lock().expect("lock");
            records
                .iter()
                .map(|r| {
                    let n = offered.entry(r.data.clone()).or_insert(0);
                    *n += 1;
                    *n == 1 && (self.fails)(&r.data)
                })
                .collect()
        };
        let forward: Vec<&OutRecord> = records
            .iter()
            .zip(&fail)
            .filter(|(_, f)| !**f)
            .map(|(r, _)| *r)
            .collect();
        let mut real = if forward.is_empty() {
            Vec::new()
        } else {
            PutRecordsApi::put_records(&self.inner, stream, &forward).await?
        }
        .into_iter();
        self.forwarded
            .lock()
            .expect("lock")
            .extend(forward.iter().map(|r| r.data.clone()));
        Ok(fail
            .iter()
            .map(|f| {
                if *f {
                    PutResult::Failed {
                        code: "ProvisionedThroughputExceededException".into(),
                        message: "Rate exceeded for shard (injected by the test)".into(),
                    }
                } else {
                    real.next().expect("one real result per forwarded entry")
                }
            })
            .collect())
    }
}

fn parse(data: &[u8]) -> (usize, usize) {
    let text = std::str::from_utf8(data).expect("utf8");
    let (k, i) = text.split_once(':').expect("k:i");
    (k.parse().expect("k"), i.parse().expect("i"))
}

fn fails_every_third(data: &[u8]) -> bool {
    let (k, i) = parse(data);
    (k + i) % 3 == 0
}

#[tokio::test]
async fn partial_failures_retry_only_failed_entries_and_keep_order_per_key() {
    let c = common::clients().await;
    let stream = common::unique("sluice-it-sink");
    c.provisioner()
        .ensure_stream(&stream, 2)
        .await
        .expect("stream");

    // 550 keys (so a round needs two requests of <= 500 entries) with 3 records each,
    // then a burst of 7 more records for key 0 (7 more rounds of one record).
    const KEYS: usize = 550;
    let mut records = Vec::new();
    for i in 0..3 {
        for k in 0..KEYS {
            records.push(OutRecord {
                partition_key: format!("key-{k}"),
                data: format!("{k}:{i}").into_bytes(),
            });
        }
    }
    for i in 3..10 {
        records.push(OutRecord {
            partition_key: "key-0".into(),
            data: format!("0:{i}").into_bytes(),
        });
    }
    let total = records.len();
    let expected_failures = records
        .iter()
        .filter(|r| fails_every_third(&r.data))
        .count();
    assert!(
        expected_failures > 500,
        "the test injects plenty of failures"
    );

    let sink = KinesisSink::with_api(Flaky::new(c.kinesis.clone(), fails_every_third), &stream)
        .with_retry(RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
            max_attempts: 8,
        });
    assert_eq!(sink.stream_name(), stream);
    sink.put_records(records.clone())
        .await
        .expect("all written");

    let api = sink.api();
    // Each entry was offered twice if it failed the first time, once otherwise.
    let offered = api.offered.lock().expect("lock").clone();
    assert_eq!(offered.len(), total);
    for r in &records {
        let want = if fails_every_third(&r.data) { 2 } else { 1 };
        assert_eq!(
            offered[&r.data],
            want,
            "{:?}",
            String::from_utf8_lossy(&r.data)
        );
    }
    // Each reached the server exactly once.
    let forwarded = api.forwarded.lock().expect("lock").clone();
    assert_eq!(forwarded.len(), total);
    assert_eq!(forwarded.iter().collect::<HashSet<_>>().len(), total);
    // Requests stayed within 500 entries; the first round needed two.
    let calls = api.calls.lock().expect("lock").clone();
    assert!(calls.iter().all(|n| *n <= 500), "{calls:?}");
    assert_eq!(&calls[..2], &[500, 50]);

    // Read everything back and check order per key.
    let source = KinesisShardSource::connect(c.kinesis.clone(), &stream)
        .await
        .expect("source");
    assert!(
        source.stream_arn().ends_with(&format!(":stream/{stream}")),
        "{}",
        source.stream_arn()
    );
    let shards = source.shards().await.expect("shards");
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|s| s.parents.is_empty()));
    let back = read_all(&source).await;
    assert_eq!(back.len(), total, "nothing lost, nothing duplicated");
    let mut per_key: BTreeMap<usize, Vec<(usize, String)>> = BTreeMap::new();
    let mut per_shard_seq: HashMap<String, Vec<SeqNo>> = HashMap::new();
    for r in &back {
        assert_eq!(r.stream, stream);
        assert!(
            r.arrival_ms > 1_700_000_000_000,
            "arrival time {}",
            r.arrival_ms
        );
        let (k, i) = parse(&r.data);
        assert_eq!(r.partition_key, format!("key-{k}"));
        per_key.entry(k).or_default().push((i, r.shard_id.clone()));
        per_shard_seq
            .entry(r.shard_id.clone())
            .or_default()
            .push(SeqNo::parse(&r.sequence_number).expect("digits"));
    }
    for seqs in per_shard_seq.values() {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence order");
        assert!(
            seqs[0].as_str().len() >= 20,
            "real sequence numbers: {}",
            seqs[0]
        );
    }
    assert_eq!(per_key.len(), KEYS);
    for (k, seen) in &per_key {
        let order: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
        let n = if *k == 0 { 10 } else { 3 };
        assert_eq!(order, (0..n).collect::<Vec<_>>(), "order of key {k}");
        assert!(
            seen.iter().all(|(_, s)| *s == seen[0].1),
            "one shard per key"
        );
    }

    c.provisioner()
        .delete_stream(&stream)
        .await
        .expect("delete");
}

#[tokio::test]
async fn reads_resume_after_any_sequence_number() {
    let c = common::clients().await;
    let stream = common::unique("sluice-it-read");
    c.provisioner()
        .ensure_stream(&stream, 1)
        .await
        .expect("stream");
    let records: Vec<OutRecord> = (0..30)
        .map(|i| OutRecord {
            partition_key: format!("k{}", i % 4),
            data: format!("{}:{i}", i % 4).into_bytes(),
        })
        .collect();
    KinesisSink::new(c.kinesis.clone(), &stream)
        .put_records(records)
        .await
        .expect("written");
    let source = KinesisShardSource::connect(c.kinesis.clone(), &stream)
        .await
        .expect("source");
    let shard = source.shards().await.expect("shards").remove(0).shard_id;

    let first = source.read(&shard, None, 10).await.expect("read");
    assert_eq!(first.records.len(), 10, "the limit is honoured");
    assert!(!first.ended);
    assert!(
        first.behind_ms.is_some_and(|b| b >= 0),
        "{:?}",
        first.behind_ms
    );
    let all = read_all(&source).await;
    assert_eq!(all.len(), 30);
    assert_eq!(first.records[..], all[..10]);

    // Sequential reads (cached iterator) and reads from an older point (fresh iterator)
    // return the same continuation.
    let next = source
        .read(&shard, Some(&all[9].sequence_number), 5)
        .await
        .expect("read");
    assert_eq!(next.records[..], all[10..15]);
    let cached = source
        .read(&shard, Some(&all[14].sequence_number), 5)
        .await
        .expect("read");
    assert_eq!(cached.records[..], all[15..20]);
    let rewound = source
        .read(&shard, Some(&all[2].sequence_number), 4)
        .await
        .expect("read");
    assert_eq!(rewound.records[..], all[3..7]);
    let tail = source
        .read(&shard, Some(&all[29].sequence_number), 100)
        .await
        .expect("read");
    assert!(tail.records.is_empty() && !tail.ended);

    c.provisioner()
        .delete_stream(&stream)
        .await
        .expect("delete");
}

#[tokio::test]
async fn a_missing_stream_is_a_non_retryable_error_naming_it() {
    let c = common::clients().await;
    let stream = common::unique("sluice-it-missing");
    let err = KinesisSink::new(c.kinesis.clone(), &stream)
        .put_records(vec![OutRecord {
            partition_key: "k".into(),
            data: b"x".to_vec(),
        }])
        .await
        .expect_err("no such stream");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&stream), "{err}");
    let err = KinesisShardSource::connect(c.kinesis.clone(), &stream)
        .await
        .expect_err("no such stream");
    assert!(
        !err.is_retryable() && err.to_string().contains(&stream),
        "{err}"
    );
}
