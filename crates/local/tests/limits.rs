//! The in-memory adapters enforce every Kinesis and DynamoDB limit the pipeline can run
//! into, like the services: exactly at a limit passes; one over fails with
//! `Error::LimitExceeded` (not retryable) and changes nothing.

use std::sync::Arc;

use sluice_core::Error;
use sluice_core::detect::rules::{Alert, Op, RuleKind, Severity, Stat};
use sluice_core::input::record::OutRecord;
use sluice_core::ports::AlertStore;
use sluice_core::ports::{AggregateStore, Commit, RecordSink, SystemClock};
use sluice_core::state::fingerprint::FingerprintSet;
use sluice_core::state::item::{AggregateItem, ItemKey, ItemWrite};
use sluice_core::state::limits::{dynamodb as ddb, kinesis};
use sluice_core::state::sequence::SeqNo;
use sluice_core::testing::{group, key, new_item, pad_to, record, watermark, write};
use sluice_local::store::{MemoryAggregateStore, MemoryAlerts, alert_item_size};
use sluice_local::streams::MemoryStreams;

const MIB: usize = 1024 * 1024;

/// Asserts a `LimitExceeded` of `limit` with `max` and `actual`, and that it is final.
fn assert_limit(err: &Error, limit: &str, max: usize, actual: usize) {
    match err {
        Error::LimitExceeded {
            limit: l,
            max: m,
            actual: a,
            ..
        } => assert_eq!((*l, *m, *a), (limit, max, actual), "{err}"),
        other => panic!("expected LimitExceeded({limit}), got {other:?}"),
    }
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.code(), "limit_exceeded");
}

// ---------------------------------------------------------------- Kinesis

fn streams() -> Arc<MemoryStreams> {
    let s = MemoryStreams::new(Arc::new(SystemClock));
    s.create("s", 2);
    s
}

#[test]
fn kinesis_record_of_1_mib_with_its_key_passes_and_one_byte_more_fails() {
    let s = streams();
    s.put("s", vec![record("key", kinesis::MAX_RECORD_BYTES)])
        .expect("exactly 1 MiB");
    assert_eq!(s.len("s"), 1);
    let err = s
        .put(
            "s",
            vec![
                record("ok", 10),
                record("key", kinesis::MAX_RECORD_BYTES + 1),
            ],
        )
        .expect_err("1 MiB + 1");
    assert_limit(
        &err,
        kinesis::LIMIT_RECORD_BYTES,
        MIB,
        kinesis::MAX_RECORD_BYTES + 1,
    );
    assert_eq!(s.len("s"), 1, "the whole request is rejected");
}

#[test]
fn kinesis_partition_key_of_256_characters_passes_and_257_fails() {
    let s = streams();
    // Characters, not bytes: 'é' is two bytes.
    s.put("s", vec![record(&"é".repeat(256), 600)])
        .expect("256 characters");
    let err = s
        .put("s", vec![record(&"é".repeat(257), 600)])
        .expect_err("257 characters");
    assert_limit(&err, kinesis::LIMIT_PARTITION_KEY, 256, 257);
    let empty = s.put("s", vec![record("", 10)]).expect_err("empty key");
    assert!(
        matches!(
            empty,
            Error::Remote {
                retryable: false,
                ..
            }
        ),
        "{empty:?}"
    );
    assert_eq!(s.len("s"), 1);
}

#[test]
fn kinesis_put_records_of_500_records_passes_and_501_fails() {
    let s = streams();
    let many = |n: usize| (0..n).map(|i| record(&format!("k{i}"), 20)).collect();
    s.put("s", many(500)).expect("500 records");
    let err = s.put("s", many(501)).expect_err("501 records");
    assert_limit(&err, kinesis::LIMIT_RECORDS, 500, 501);
    assert_eq!(s.len("s"), 500);
}

#[test]
fn kinesis_put_records_of_5_mib_passes_and_one_byte_more_fails() {
    let s = streams();
    // Four records of 1 MiB, then what decides.
    let request = |tail: &[OutRecord]| -> Vec<OutRecord> {
        let mut r: Vec<OutRecord> = (0..4).map(|i| record(&format!("k{i}"), MIB)).collect();
        r.extend_from_slice(tail);
        r
    };
    s.put("s", request(&[record("k4", MIB)]))
        .expect("exactly 5 MiB");
    let err = s
        .put("s", request(&[record("k4", MIB - 2), record("k5", 3)]))
        .expect_err("5 MiB + 1");
    assert_limit(&err, kinesis::LIMIT_REQUEST_BYTES, 5 * MIB, 5 * MIB + 1);
    assert_eq!(s.len("s"), 5);
}

#[tokio::test]
async fn the_sink_splits_like_the_aws_sink_and_rejects_an_oversize_record_before_writing() {
    let s = streams();
    let sink = s.sink("s");
    // 1,200 small records and 6 records of 1 MiB: several requests, all written.
    let mut records: Vec<OutRecord> = (0..1200).map(|i| record(&format!("k{i}"), 20)).collect();
    records.extend((0..6).map(|i| record(&format!("big{i}"), MIB)));
    sink.put_records(records)
        .await
        .expect("split into requests");
    assert_eq!(s.len("s"), 1206);

    let err = sink
        .put_records(vec![
            record("fine", 10),
            record("big", kinesis::MAX_RECORD_BYTES + 1),
        ])
        .await
        .expect_err("a record that can never be written");
    assert_limit(
        &err,
        kinesis::LIMIT_RECORD_BYTES,
        MIB,
        kinesis::MAX_RECORD_BYTES + 1,
    );
    assert_eq!(s.len("s"), 1206, "nothing of the call is written");
}

// ---------------------------------------------------------------- DynamoDB

/// A new item of exactly `bytes` stored bytes: fingerprints fill it to within 8
/// bytes, the name of a high-water shard adds the rest byte by byte.
fn item_of_size(k: &ItemKey, bytes: usize) -> AggregateItem {
    let mut item = new_item(k);
    let seq = SeqNo::parse("1").expect("seq");
    item.high_water.insert("s".into(), seq.clone());
    item.fingerprints.insert(0);
    let base = ddb::aggregate_item_size(&item);
    assert!(base <= bytes, "{base} > {bytes}");
    item.fingerprints.extend(1..=((bytes - base) / 8) as u64);
    pad_to(item, bytes)
}

#[tokio::test]
async fn dynamodb_item_of_400_kb_passes_and_one_byte_more_fails_alone_or_in_a_transaction() {
    let store = MemoryAggregateStore::new();
    let g = group("sensor-1");
    let at = item_of_size(&key(&g, 0), ddb::MAX_ITEM_BYTES);
    assert_eq!(
        store.commit(&[write(&at)], None).await.expect("400 KB"),
        Commit::Done
    );

    let over = item_of_size(&key(&g, 1), ddb::MAX_ITEM_BYTES + 1);
    let err = store
        .commit(&[write(&over)], None)
        .await
        .expect_err("alone: PutItem");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, 409_600, 409_601);
    let err = store
        .commit(&[write(&over)], Some(&watermark(&g)))
        .await
        .expect_err("with the watermark: TransactWriteItems");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, 409_600, 409_601);
    assert!(matches!(
        err,
        Error::LimitExceeded {
            operation: "TransactWriteItems",
            ..
        }
    ));
    assert_eq!(store.items(), vec![at], "nothing else was written");
}

#[tokio::test]
async fn dynamodb_transaction_of_100_actions_passes_and_101_fails() {
    let store = MemoryAggregateStore::new();
    let g = group("sensor-1");
    let items: Vec<AggregateItem> = (0..100).map(|m| new_item(&key(&g, m))).collect();
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    // 99 items and the watermark: 100 actions.
    store
        .commit(&writes[..99], Some(&watermark(&g)))
        .await
        .expect("100 actions");
    let before = store.items();
    assert_eq!(before.len(), 99);

    let h = group("sensor-2");
    let writes: Vec<ItemWrite> = (0..100).map(|m| write(&new_item(&key(&h, m)))).collect();
    let err = store
        .commit(&writes, Some(&watermark(&h)))
        .await
        .expect_err("101 actions");
    assert_limit(&err, ddb::LIMIT_ACTIONS, 100, 101);
    assert_eq!(store.items(), before, "nothing was written");
}

#[tokio::test]
async fn dynamodb_transaction_of_4_mb_passes_and_one_byte_more_fails() {
    let store = MemoryAggregateStore::new();
    let g = group("sensor-1");
    // Ten items of 400 KB and one of 96 KB: exactly 4 MB.
    let mut items: Vec<AggregateItem> = (0..10)
        .map(|m| item_of_size(&key(&g, m), ddb::MAX_ITEM_BYTES))
        .collect();
    items.push(item_of_size(&key(&g, 10), 96 * 1024));
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    store.commit(&writes, None).await.expect("exactly 4 MB");
    assert_eq!(store.items().len(), 11);

    let h = group("sensor-2");
    let mut items: Vec<AggregateItem> = (0..10)
        .map(|m| item_of_size(&key(&h, m), ddb::MAX_ITEM_BYTES))
        .collect();
    items.push(item_of_size(&key(&h, 10), 96 * 1024 + 1));
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    let err = store.commit(&writes, None).await.expect_err("4 MB + 1");
    assert_limit(&err, ddb::LIMIT_TRANSACTION_BYTES, 4 * MIB, 4 * MIB + 1);
    assert_eq!(store.items().len(), 11, "nothing was written");
}

#[tokio::test]
async fn dynamodb_transaction_must_not_touch_one_item_twice() {
    let store = MemoryAggregateStore::new();
    let g = group("sensor-1");
    let a = new_item(&key(&g, 0));
    let b = new_item(&key(&g, 1));
    // One action per item, a sealed page beside its anchor: distinct items.
    let mut with_page = write(&a);
    let mut page = FingerprintSet::new();
    page.extend([1, 2, 3]);
    with_page.sealed_page = vec![(1, page)];
    store
        .commit(&[with_page, write(&b)], Some(&watermark(&g)))
        .await
        .expect("distinct items");
    assert_eq!(store.page_count(), 1);

    let h = group("sensor-2");
    let c = new_item(&key(&h, 0));
    let err = store
        .commit(&[write(&c), write(&c)], None)
        .await
        .expect_err("the same item twice");
    assert_limit(&err, ddb::LIMIT_ACTIONS_PER_ITEM, 1, 2);
    assert_eq!(store.items().len(), 2, "nothing was written");
}

#[tokio::test]
async fn dynamodb_limits_are_checked_before_conditions() {
    let store = MemoryAggregateStore::new();
    let g = group("sensor-1");
    let mut stale = write(&item_of_size(&key(&g, 0), ddb::MAX_ITEM_BYTES + 1));
    stale.expected_version = 7; // would be a conflict
    let err = store.commit(&[stale], None).await.expect_err("too large");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, 409_600, 409_601);
    let fine = write(&new_item(&key(&g, 1)));
    let mut conflict = fine.clone();
    conflict.expected_version = 7;
    assert_eq!(
        store.commit(&[conflict], None).await.expect("in limits"),
        Commit::Conflict
    );
}

#[tokio::test]
async fn dynamodb_batch_get_reads_100_keys_per_request_and_16_mb_per_answer() {
    let store = MemoryAggregateStore::new();
    let g = group("sensor-1");
    // 45 items of 400 KB (18 MB) in transactions of 9 (3.6 MB each).
    let items: Vec<AggregateItem> = (0..45)
        .map(|m| item_of_size(&key(&g, m), ddb::MAX_ITEM_BYTES))
        .collect();
    for chunk in items.chunks(9) {
        let writes: Vec<ItemWrite> = chunk.iter().map(write).collect();
        store.commit(&writes, None).await.expect("stored");
    }
    let keys: Vec<ItemKey> = (0..100).map(|m| key(&g, m)).collect();

    // 100 keys: one request, were the answer small enough; 18 MB needs two.
    let loaded = store.load(&keys, &[]).await.expect("never fails on size");
    assert_eq!(loaded.items.len(), 45);
    assert_eq!(store.meter.batch_get_requests(), 2);

    let small = MemoryAggregateStore::new();
    let n = small.meter.batch_get_requests();
    small.load(&keys, &[]).await.expect("100 keys");
    assert_eq!(
        small.meter.batch_get_requests() - n,
        1,
        "100 keys: one request"
    );
    small
        .load(&keys, &[group("other")])
        .await
        .expect("101 keys");
    assert_eq!(
        small.meter.batch_get_requests() - n,
        3,
        "101 keys: two more"
    );
}

#[tokio::test]
async fn dynamodb_partition_key_of_2048_bytes_passes_and_one_byte_more_fails() {
    let store = MemoryAggregateStore::new();
    // pk = "temp#" + key.
    let at = new_item(&key(&group(&"k".repeat(2048 - 5)), 0));
    assert_eq!(at.key.pk().len(), 2048);
    store.commit(&[write(&at)], None).await.expect("2048 bytes");
    let over = new_item(&key(&group(&"k".repeat(2049 - 5)), 0));
    let err = store
        .commit(&[write(&over)], None)
        .await
        .expect_err("2049 bytes");
    assert_limit(&err, ddb::LIMIT_PARTITION_KEY_BYTES, 2048, 2049);
    assert_eq!(store.items(), vec![at]);
}

fn alert_with_rule(rule_id: String) -> Alert {
    Alert {
        kind: "alert".into(),
        alert_id: "a-1".into(),
        rule_id,
        kind_of_rule: RuleKind::Threshold,
        severity: Severity::Critical,
        key: "sensor-1".into(),
        metric: "temp".into(),
        window_seconds: 60,
        window_start: "2026-01-01T00:00:00Z".into(),
        stat: Stat::Mean,
        op: Some(Op::Gt),
        threshold: 30.0,
        value: 31.5,
        observed: 31.5,
        count: 3,
        previous: None,
        mean: None,
        stddev: None,
        z: None,
        history: None,
        description: String::new(),
    }
}

#[tokio::test]
async fn dynamodb_alert_item_of_400_kb_passes_and_one_byte_more_fails() {
    let alerts = MemoryAlerts::new();
    let base = alert_item_size(&alert_with_rule(String::new())).expect("size");
    let at = alert_with_rule("r".repeat(ddb::MAX_ITEM_BYTES - base));
    assert_eq!(alert_item_size(&at).expect("size"), ddb::MAX_ITEM_BYTES);
    alerts.raise(&at).await.expect("400 KB");
    let mut over = alert_with_rule("r".repeat(ddb::MAX_ITEM_BYTES - base + 1));
    over.alert_id = "a-2".into();
    let err = alerts.raise(&over).await.expect_err("400 KB + 1");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, 409_600, 409_601);
    assert_eq!(alerts.alerts().len(), 1, "nothing stored");
}
