//! The local event source mapping, behaviour by behaviour, against a scripted function.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::streams::KinesisEventResponse;
use sluice_core::input::record::{OutRecord, StreamRecord};
use sluice_local::clock::ManualClock;
use sluice_local::esm::{Batch, EsmClocks, EventSourceMapping, Handler, InvokeFuture};
use sluice_local::streams::{MemorySink, MemorySource, MemoryStreams};
use sluice_local::template::EsmSettings;

/// What the scripted function does with a batch.
#[derive(Clone, Copy)]
enum Reply {
    Ok,
    /// Report this record (by its payload) as the first failure.
    FailAt(&'static str),
    /// Crash (function error).
    Crash,
}

type Script = Arc<dyn Fn(&[StreamRecord], usize) -> Reply + Send + Sync>;

struct Harness {
    streams: Arc<MemoryStreams>,
    clock: Arc<ManualClock>,
    batches: Arc<Mutex<Vec<Vec<String>>>>,
    mapping: EventSourceMapping<MemorySource, MemorySink>,
}

fn payload(r: &StreamRecord) -> String {
    String::from_utf8_lossy(&r.data).into_owned()
}

fn harness(settings: EsmSettings, shards: usize, script: Script) -> Harness {
    let clock = Arc::new(ManualClock::starting_at(1_000_000));
    let streams = MemoryStreams::new(clock.clone());
    streams.create("in", shards);
    streams.create("dlq", 1);
    let batches: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let seen = batches.clone();
    let calls = Arc::new(Mutex::new(0usize));
    let handler: Handler = Arc::new(move |records: Batch, _deadline: i64| {
        let mut n = calls.lock().expect("lock");
        *n += 1;
        let reply = script(&records, *n);
        seen.lock()
            .expect("lock")
            .push(records.iter().map(payload).collect());
        let result = match reply {
            Reply::Ok => Ok(KinesisEventResponse::default()),
            Reply::FailAt(p) => {
                let mut resp = KinesisEventResponse::default();
                if let Some(r) = records.iter().find(|r| payload(r) == p) {
                    resp.add_failure(r.sequence_number.clone());
                }
                Ok(resp)
            }
            Reply::Crash => Err("crash".to_owned()),
        };
        Box::pin(async move { result }) as InvokeFuture
    });
    let mapping = EventSourceMapping::new(
        "test",
        streams.source("in"),
        settings,
        handler,
        streams.sink("dlq"),
        EsmClocks::shared(clock.clone()),
        60_000,
    );
    Harness {
        streams,
        clock,
        batches,
        mapping,
    }
}

/// Writes in `PutRecords` requests within Kinesis's limits (500 records, 5 MiB).
fn put(streams: &MemoryStreams, items: &[(&str, &str)]) {
    let records: Vec<OutRecord> = items
        .iter()
        .map(|(pk, data)| OutRecord {
            partition_key: (*pk).to_owned(),
            data: data.as_bytes().to_vec(),
        })
        .collect();
    let all: Vec<usize> = (0..records.len()).collect();
    for request in sluice_core::state::limits::kinesis::requests(&records, &all) {
        let batch = request.iter().map(|&i| records[i].clone()).collect();
        streams.put("in", batch).expect("put");
    }
}

async fn drain(h: &mut Harness) {
    for _ in 0..10_000 {
        if h.mapping.poll().await.expect("poll") {
            continue;
        }
        match h.mapping.next_due_ms() {
            Some(due) => h.clock.advance_to(due),
            None if h.mapping.is_idle() => return,
            None => {}
        }
    }
    panic!("mapping never went idle");
}

fn settings(batch_size: usize) -> EsmSettings {
    EsmSettings {
        batch_size,
        report_batch_item_failures: true,
        ..EsmSettings::default()
    }
}

fn numbered(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| ("k".to_owned(), format!("r{i:03}")))
        .collect()
}

fn put_numbered(streams: &MemoryStreams, n: usize) {
    let items = numbered(n);
    let refs: Vec<(&str, &str)> = items
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    put(streams, &refs);
}

#[tokio::test]
async fn batches_never_exceed_the_batch_size() {
    let mut h = harness(settings(100), 1, Arc::new(|_, _| Reply::Ok));
    put_numbered(&h.streams, 250);
    drain(&mut h).await;
    let sizes: Vec<usize> = h
        .batches
        .lock()
        .expect("lock")
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[tokio::test]
async fn batches_never_exceed_six_megabytes_of_payload() {
    let mut h = harness(settings(100), 1, Arc::new(|_, _| Reply::Ok));
    let big = "x".repeat(1024 * 1024 - 10);
    let items: Vec<(&str, &str)> = (0..10).map(|_| ("k", big.as_str())).collect();
    put(&h.streams, &items);
    drain(&mut h).await;
    let sizes: Vec<usize> = h
        .batches
        .lock()
        .expect("lock")
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(sizes, [6, 4]);
}

#[tokio::test]
async fn a_partial_batch_waits_for_the_batching_window() {
    let mut s = settings(100);
    s.max_batching_window_ms = 5_000;
    let mut h = harness(s, 1, Arc::new(|_, _| Reply::Ok));
    put_numbered(&h.streams, 10);
    assert!(
        !h.mapping.poll().await.expect("poll"),
        "not full, window not passed"
    );
    assert_eq!(h.mapping.next_due_ms(), Some(1_005_000));
    h.clock.advance_by(4_999);
    assert!(!h.mapping.poll().await.expect("poll"));
    h.clock.advance_by(1);
    assert!(
        h.mapping.poll().await.expect("poll"),
        "window passed: invoke"
    );
    assert_eq!(h.batches.lock().expect("lock")[0].len(), 10);
}

#[tokio::test]
async fn reported_failures_checkpoint_before_the_failed_record() {
    let mut h = harness(
        settings(10),
        1,
        Arc::new(|_, call| {
            if call == 1 {
                Reply::FailAt("r004")
            } else {
                Reply::Ok
            }
        }),
    );
    put_numbered(&h.streams, 10);
    drain(&mut h).await;
    let batches = h.batches.lock().expect("lock").clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1][0], "r004", "retried from the failed record");
    assert_eq!(batches[1].len(), 6);
    assert_eq!(h.mapping.stats.partial_failures, 1);
}

#[tokio::test]
async fn without_report_batch_item_failures_a_reported_failure_is_ignored() {
    let mut s = settings(10);
    s.report_batch_item_failures = false;
    let mut h = harness(s, 1, Arc::new(|_, _| Reply::FailAt("r004")));
    put_numbered(&h.streams, 10);
    drain(&mut h).await;
    assert_eq!(h.batches.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn function_errors_bisect_and_a_poison_record_ends_in_the_on_failure_destination() {
    let mut s = settings(8);
    s.bisect_on_error = true;
    s.max_retry_attempts = 2;
    // The function crashes on any batch containing r005.
    let mut h = harness(
        s,
        1,
        Arc::new(|records, _| {
            if records.iter().any(|r| payload(r) == "r005") {
                Reply::Crash
            } else {
                Reply::Ok
            }
        }),
    );
    put_numbered(&h.streams, 8);
    drain(&mut h).await;
    let batches = h.batches.lock().expect("lock").clone();
    let delivered_ok: Vec<String> = batches
        .iter()
        .filter(|b| !b.contains(&"r005".to_owned()))
        .flatten()
        .cloned()
        .collect();
    for i in [0, 1, 2, 3, 4, 6, 7] {
        assert!(
            delivered_ok.contains(&format!("r{i:03}")),
            "r{i:03} processed"
        );
    }
    assert!(
        h.mapping.stats.bisections >= 2,
        "halved at least twice: 8 → 4 → 2"
    );
    let dlq = h.streams.records("dlq");
    assert_eq!(dlq.len(), 1);
    let meta: serde_json::Value = serde_json::from_slice(&dlq[0].data).expect("json");
    assert_eq!(meta["reason"], "retries_exhausted");
    assert_eq!(meta["batch_size"], 1);
    assert!(
        meta.get("data").is_none(),
        "metadata only, as Lambda's on-failure destination"
    );
    assert_eq!(meta["shard_id"], "shardId-000000000000");
}

#[tokio::test]
async fn records_older_than_the_maximum_age_are_dropped_with_metadata() {
    let mut s = settings(10);
    s.max_record_age_s = 60;
    let mut h = harness(s, 1, Arc::new(|_, _| Reply::Ok));
    put_numbered(&h.streams, 5);
    h.clock.advance_by(61_000);
    put(&h.streams, &[("k", "fresh")]);
    drain(&mut h).await;
    let batches = h.batches.lock().expect("lock").clone();
    assert_eq!(batches, vec![vec!["fresh".to_owned()]]);
    let meta: serde_json::Value =
        serde_json::from_slice(&h.streams.records("dlq")[0].data).expect("json");
    assert_eq!(meta["reason"], "record_too_old");
    assert_eq!(meta["batch_size"], 5);
}

#[tokio::test]
async fn parallelization_keeps_order_per_partition_key() {
    let mut s = settings(5);
    s.parallelization_factor = 4;
    let mut h = harness(s, 2, Arc::new(|_, _| Reply::Ok));
    let items: Vec<(String, String)> = (0..200)
        .map(|i| (format!("key-{}", i % 17), format!("{}:{i:04}", i % 17)))
        .collect();
    let refs: Vec<(&str, &str)> = items
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    put(&h.streams, &refs);
    drain(&mut h).await;
    let batches = h.batches.lock().expect("lock").clone();
    let mut last: HashMap<String, String> = HashMap::new();
    let mut total = 0;
    for b in &batches {
        for p in b {
            let (key, n) = p.split_once(':').expect("payload");
            if let Some(prev) = last.get(key) {
                assert!(n > prev.as_str(), "key {key}: {n} after {prev}");
            }
            last.insert(key.to_owned(), n.to_owned());
            total += 1;
        }
    }
    assert_eq!(total, 200);
    // Several lanes per shard: some batch mixes fewer keys than a single lane would.
    let keys_per_batch: Vec<usize> = batches
        .iter()
        .map(|b| {
            b.iter()
                .map(|p| p.split_once(':').expect("p").0)
                .collect::<std::collections::HashSet<_>>()
                .len()
        })
        .collect();
    assert!(keys_per_batch.iter().all(|k| *k <= 5));
    assert!(batches.len() >= 40);
}

/// A dropped raw batch settles the events ingest would have seen: the lines of each
/// user record of a KPL aggregate and of an inflated gzip record, not the record's
/// bytes split by newline.
#[tokio::test]
async fn a_dropped_kpl_record_settles_the_origins_ingest_assigns() {
    use sluice_core::input::envelope::Reason;
    use sluice_local::ledger::{MemoryLedger, Settled};

    let mut s = settings(10);
    s.max_retry_attempts = 0;
    let Harness {
        streams,
        clock,
        batches,
        mapping,
    } = harness(s, 1, Arc::new(|_, _| Reply::Crash));
    let ledger = Arc::new(MemoryLedger::new());
    let mut h = Harness {
        streams,
        clock,
        batches,
        mapping: mapping.with_ledger(ledger.clone(), true),
    };
    let kpl = sluice_core::input::unpack::aggregate(&[("a", b"x\ny"), ("b", b"z")]);
    h.streams
        .put(
            "in",
            vec![OutRecord {
                partition_key: "k".into(),
                data: kpl,
            }],
        )
        .expect("put");
    drain(&mut h).await;
    assert_eq!(h.mapping.stats.dropped_records, 1);
    let record = &h.streams.records("in")[0];
    let dropped = Settled::DeadLetter(Reason::RetriesExhausted);
    let origin = |tail: &str| format!("{}:{}:{tail}", record.shard_id, record.sequence_number);
    for tail in ["0:0", "0:1", "1:0"] {
        assert_eq!(ledger.fate(&origin(tail)), Some(dropped), "{tail}");
    }
    assert_eq!(
        ledger.fate(&origin("0")),
        None,
        "not the record's own first line"
    );
    assert_eq!(
        sluice_local::esm::origins_of(record, true).len(),
        3,
        "one origin per user-record line"
    );
}
