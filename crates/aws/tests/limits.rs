//! The AWS adapters return `Error::LimitExceeded` for the same inputs as the in-memory
//! ones (crates/local/tests/limits.rs), over the loopback servers (kinesis-local for
//! Kinesis, moto for DynamoDB; see infra/local/up).
//!
//! What the servers enforce (probed with boto3 against the pinned versions):
//! - kinesis-local 0.6.2: record data over 1 MiB (data alone, not data + key) is a
//!   per-entry `InvalidArgumentException`; a partition key outside 1..=256 characters
//!   fails the whole request (`InvalidArgumentException`). It accepts 501 records and
//!   more than 5 MiB in one `PutRecords`: those two limits are tested through what the
//!   sink sends (never more than 500 records or 5 MiB per request).
//! - moto 5.2.5: an item over its own sizing's 405,000 bytes (AWS: 409,600; moto counts
//!   binary values in base64 and numbers as text) is a `ValidationException`, also
//!   inside a transaction; more than 100 actions, two actions on one item, more than
//!   100 keys in a `BatchGetItem` and a partition key over 2048 bytes are
//!   `ValidationException`s; a `BatchGetItem` answer stops at 16 MB with the rest in
//!   `UnprocessedKeys`. It accepts transactions over 4 MB: that limit is tested on the
//!   adapter's own check.
//!
//! Each limit is shown twice where the server enforces it: the adapter refuses to send
//! (its check), and the server's own rejection of a request sent past the adapter is
//! classified as the same `LimitExceeded`.
#![cfg(feature = "integration")]

mod common;

use std::sync::Mutex;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use sluice_aws::DynamoAggregateStore;
use sluice_aws::classify;
use sluice_aws::kinesis::{KinesisShardSource, KinesisSink, PutRecordsApi, PutResult};
use sluice_core::input::record::OutRecord;
use sluice_core::ports::{AggregateStore, Commit, RecordSink, ShardSource};
use sluice_core::resources::AGGREGATES_TABLE;
use sluice_core::state::item::{AggregateItem, ItemKey, ItemWrite};
use sluice_core::state::limits::{dynamodb as ddb, kinesis};
use sluice_core::testing::{group, key, new_item, pad_to, record, watermark, write};
use sluice_core::{Error, Result};

const MIB: usize = 1024 * 1024;

fn assert_limit(err: &Error, limit: &str, max: usize) {
    match err {
        Error::LimitExceeded {
            limit: l, max: m, ..
        } => {
            assert_eq!((*l, *m), (limit, max), "{err}")
        }
        other => panic!("expected LimitExceeded({limit}), got {other:?}"),
    }
    assert!(!err.is_retryable(), "{err}");
}

// ---------------------------------------------------------------- Kinesis

/// Forwards to the real client and records the size of every request.
struct Recording {
    inner: aws_sdk_kinesis::Client,
    requests: Mutex<Vec<(usize, usize)>>,
}

impl PutRecordsApi for Recording {
    async fn put_records(&self, stream: &str, records: &[&OutRecord]) -> Result<Vec<PutResult>> {
        let bytes = records.iter().map(|r| kinesis::record_bytes(r)).sum();
        self.requests
            .lock()
            .expect("lock")
            .push((records.len(), bytes));
        PutRecordsApi::put_records(&self.inner, stream, records).await
    }
}

async fn stream(c: &common::Clients, prefix: &str) -> (String, KinesisShardSource) {
    let name = common::unique(prefix);
    c.provisioner()
        .ensure_stream(&name, 1)
        .await
        .expect("stream");
    let source = KinesisShardSource::connect(c.kinesis.clone(), &name)
        .await
        .expect("source");
    (name, source)
}

async fn count(source: &KinesisShardSource) -> usize {
    let mut n = 0;
    for shard in source.shards().await.expect("shards") {
        let mut after: Option<String> = None;
        loop {
            let read = source
                .read(&shard.shard_id, after.as_deref(), 1000)
                .await
                .expect("read");
            let Some(last) = read.records.last() else {
                break;
            };
            after = Some(last.sequence_number.clone());
            n += read.records.len();
        }
    }
    n
}

/// One raw `PutRecords` of one record, past the sink's checks: the adapter's own
/// request (`PutRecordsApi`), which sends what it is given.
async fn raw_put(
    c: &common::Clients,
    stream: &str,
    key: &str,
    data: Vec<u8>,
) -> std::result::Result<Vec<PutResult>, Error> {
    let record = OutRecord {
        partition_key: key.to_owned(),
        data,
    };
    PutRecordsApi::put_records(&c.kinesis, stream, &[&record]).await
}

#[tokio::test]
async fn kinesis_record_size_limit() {
    let c = common::clients().await;
    let (name, source) = stream(&c, "sluice-it-lim-rec").await;
    let sink = KinesisSink::new(c.kinesis.clone(), &name);
    sink.put_records(vec![record("key", kinesis::MAX_RECORD_BYTES)])
        .await
        .expect("exactly 1 MiB with its key");
    let err = sink
        .put_records(vec![
            record("fine", 10),
            record("key", kinesis::MAX_RECORD_BYTES + 1),
        ])
        .await
        .expect_err("1 MiB + 1");
    assert_limit(&err, kinesis::LIMIT_RECORD_BYTES, MIB);
    assert_eq!(count(&source).await, 1, "nothing of the call was sent");

    // kinesis-local rejects data over 1 MiB (without the key) as a per-entry error;
    // the sink's reading of that answer is the same LimitExceeded.
    let results = raw_put(&c, &name, "k", vec![b'x'; MIB + 1])
        .await
        .expect("request accepted");
    let PutResult::Failed { code, message } = &results[0] else {
        panic!("kinesis-local accepted 1 MiB + 1 of data: {results:?}");
    };
    let err = classify::limit_of("kinesis", "PutRecords", code, message).expect("a limit");
    assert!(
        matches!(err, Error::LimitExceeded { actual, .. } if actual == MIB + 1),
        "{err:?}"
    );
    c.provisioner().delete_stream(&name).await.expect("delete");
}

#[tokio::test]
async fn kinesis_partition_key_limit() {
    let c = common::clients().await;
    let (name, source) = stream(&c, "sluice-it-lim-pk").await;
    let sink = KinesisSink::new(c.kinesis.clone(), &name);
    sink.put_records(vec![record(&"k".repeat(256), 300)])
        .await
        .expect("256 characters");
    let err = sink
        .put_records(vec![record(&"k".repeat(257), 300)])
        .await
        .expect_err("257 characters");
    assert_limit(&err, kinesis::LIMIT_PARTITION_KEY, 256);
    assert_eq!(count(&source).await, 1);

    let err = raw_put(&c, &name, &"k".repeat(257), b"x".to_vec())
        .await
        .expect_err("the server rejects 257 characters");
    assert_limit(&err, kinesis::LIMIT_PARTITION_KEY, 256);
    c.provisioner().delete_stream(&name).await.expect("delete");
}

/// kinesis-local does not enforce 500 records or 5 MiB per request (it accepted 501
/// records and 6 MiB in one call when probed), so this shows that the sink never sends
/// more, whatever it is given.
#[tokio::test]
async fn kinesis_put_records_count_and_size_limits_are_kept_by_the_sink() {
    let c = common::clients().await;
    let (name, source) = stream(&c, "sluice-it-lim-req").await;
    let api = Recording {
        inner: c.kinesis.clone(),
        requests: Mutex::new(Vec::new()),
    };
    let sink = KinesisSink::with_api(api, &name);
    let mut records: Vec<OutRecord> = (0..501).map(|i| record(&format!("k{i}"), 20)).collect();
    records.extend((0..6).map(|i| record(&format!("big{i}"), MIB)));
    sink.put_records(records).await.expect("written");
    let requests = sink.api().requests.lock().expect("lock").clone();
    assert!(requests.len() >= 3, "{requests:?}");
    for (n, bytes) in &requests {
        assert!(*n <= kinesis::MAX_RECORDS_PER_REQUEST, "{requests:?}");
        assert!(*bytes <= kinesis::MAX_REQUEST_BYTES, "{requests:?}");
    }
    assert_eq!(requests.iter().map(|r| r.0).sum::<usize>(), 507);
    assert_eq!(count(&source).await, 507);
    c.provisioner().delete_stream(&name).await.expect("delete");
}

// ---------------------------------------------------------------- DynamoDB

async fn table(prefix: &str) -> (common::Clients, DynamoAggregateStore) {
    let c = common::clients().await;
    let name = common::unique(prefix);
    c.provisioner()
        .ensure_table(&name, &AGGREGATES_TABLE)
        .await
        .expect("table");
    let store = DynamoAggregateStore::new(c.dynamodb.clone(), &name);
    (c, store)
}

async fn drop_table(c: &common::Clients, store: &DynamoAggregateStore) {
    c.provisioner()
        .delete_table(store.table())
        .await
        .expect("delete table");
}

/// A new item of exactly `bytes` (as DynamoDB sizes it), padded with a long
/// high-water shard name: a string, which moto sizes like DynamoDB (it sizes binary
/// values in base64, so fingerprints would count 4/3 there).
fn item_of_size(k: &ItemKey, bytes: usize) -> AggregateItem {
    pad_to(new_item(k), bytes)
}

fn put(table: &str, pk: &str, sk: &str) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::S(sk.into()))
        .build()
        .expect("put");
    TransactWriteItem::builder().put(put).build()
}

async fn stored(store: &DynamoAggregateStore) -> usize {
    store.scan_all().await.expect("scan").len()
}

#[tokio::test]
async fn dynamodb_item_size_limit() {
    let (c, store) = table("sluice-it-lim-item").await;
    let g = group("sensor-1");
    let fits = item_of_size(&key(&g, 0), 400_000);
    assert_eq!(
        store
            .commit(&[write(&fits)], None)
            .await
            .expect("400,000 bytes"),
        Commit::Done
    );
    // Over 400 KB: the adapter does not send it, alone or in a transaction.
    let over = item_of_size(&key(&g, 1), ddb::MAX_ITEM_BYTES + 1);
    let err = store
        .commit(&[write(&over)], None)
        .await
        .expect_err("alone");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, ddb::MAX_ITEM_BYTES);
    let err = store
        .commit(&[write(&over)], Some(&watermark(&g)))
        .await
        .expect_err("in a transaction");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, ddb::MAX_ITEM_BYTES);
    // Under AWS's limit but over moto's (405,000): the server's ValidationException
    // is read as the same limit, alone (PutItem) and in a transaction.
    let moto_over = item_of_size(&key(&g, 2), 407_000);
    let err = store
        .commit(&[write(&moto_over)], None)
        .await
        .expect_err("moto rejects");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, ddb::MAX_ITEM_BYTES);
    let err = store
        .commit(&[write(&moto_over)], Some(&watermark(&g)))
        .await
        .expect_err("moto rejects in a transaction");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, ddb::MAX_ITEM_BYTES);
    assert_eq!(stored(&store).await, 1, "only the item that fits");
    drop_table(&c, &store).await;
}

#[tokio::test]
async fn dynamodb_transaction_action_limit() {
    let (c, store) = table("sluice-it-lim-tx").await;
    let g = group("sensor-1");
    let writes: Vec<ItemWrite> = (0..99).map(|m| write(&new_item(&key(&g, m)))).collect();
    store
        .commit(&writes, Some(&watermark(&g)))
        .await
        .expect("100 actions");
    let h = group("sensor-2");
    let writes: Vec<ItemWrite> = (0..100).map(|m| write(&new_item(&key(&h, m)))).collect();
    let err = store
        .commit(&writes, Some(&watermark(&h)))
        .await
        .expect_err("101 actions");
    assert_limit(&err, ddb::LIMIT_ACTIONS, 100);
    assert_eq!(stored(&store).await, 99);

    let items: Vec<TransactWriteItem> = (0..101)
        .map(|i| put(store.table(), "p", &format!("s{i}")))
        .collect();
    let err = c
        .dynamodb
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
        .map_err(|e| classify::dynamodb("TransactWriteItems", store.table(), e))
        .expect_err("moto rejects 101 actions");
    assert_limit(&err, ddb::LIMIT_ACTIONS, 100);
    drop_table(&c, &store).await;
}

#[tokio::test]
async fn dynamodb_transaction_must_not_touch_one_item_twice() {
    let (c, store) = table("sluice-it-lim-dup").await;
    let g = group("sensor-1");
    let a = new_item(&key(&g, 0));
    let err = store
        .commit(&[write(&a), write(&a)], None)
        .await
        .expect_err("the same item twice");
    assert_limit(&err, ddb::LIMIT_ACTIONS_PER_ITEM, 1);
    let err = c
        .dynamodb
        .transact_write_items()
        .transact_items(put(store.table(), "p", "s"))
        .transact_items(put(store.table(), "p", "s"))
        .send()
        .await
        .map_err(|e| classify::dynamodb("TransactWriteItems", store.table(), e))
        .expect_err("moto rejects it too");
    assert_limit(&err, ddb::LIMIT_ACTIONS_PER_ITEM, 1);
    assert_eq!(stored(&store).await, 0);
    drop_table(&c, &store).await;
}

/// moto accepts transactions over 4 MB (11 items of 400 KB went through when
/// probed): this is the adapter's own check, at the limit and one byte over.
#[tokio::test]
async fn dynamodb_transaction_size_limit() {
    let (c, store) = table("sluice-it-lim-4mb").await;
    let g = group("sensor-1");
    // Ten items of 400,000 bytes (under moto's 405,000) and one of the rest: 4 MB.
    let mut items: Vec<AggregateItem> = (0..10)
        .map(|m| item_of_size(&key(&g, m), 400_000))
        .collect();
    items.push(item_of_size(
        &key(&g, 10),
        ddb::MAX_TRANSACTION_BYTES - 4_000_000,
    ));
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    store.commit(&writes, None).await.expect("exactly 4 MB");
    let h = group("sensor-2");
    let mut items: Vec<AggregateItem> = (0..10)
        .map(|m| item_of_size(&key(&h, m), 400_000))
        .collect();
    items.push(item_of_size(
        &key(&h, 10),
        ddb::MAX_TRANSACTION_BYTES - 4_000_000 + 1,
    ));
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    let err = store.commit(&writes, None).await.expect_err("4 MB + 1");
    assert_limit(
        &err,
        ddb::LIMIT_TRANSACTION_BYTES,
        ddb::MAX_TRANSACTION_BYTES,
    );
    assert_eq!(stored(&store).await, 11);
    drop_table(&c, &store).await;
}

#[tokio::test]
async fn dynamodb_partition_key_size_limit() {
    let (c, store) = table("sluice-it-lim-pk").await;
    let at = new_item(&key(&group(&"k".repeat(2048 - 5)), 0));
    store.commit(&[write(&at)], None).await.expect("2048 bytes");
    let over = new_item(&key(&group(&"k".repeat(2049 - 5)), 0));
    let err = store.commit(&[write(&over)], None).await.expect_err("2049");
    assert_limit(&err, ddb::LIMIT_PARTITION_KEY_BYTES, 2048);
    let err = c
        .dynamodb
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S("k".repeat(2049)))
        .item("sk", AttributeValue::S("s".into()))
        .send()
        .await
        .map_err(|e| classify::dynamodb("PutItem", store.table(), e))
        .expect_err("moto rejects 2049 bytes");
    assert_limit(&err, ddb::LIMIT_PARTITION_KEY_BYTES, 2048);
    assert_eq!(stored(&store).await, 1);
    drop_table(&c, &store).await;
}

#[tokio::test]
async fn dynamodb_batch_get_key_and_answer_limits() {
    let (c, store) = table("sluice-it-lim-bget").await;
    let g = group("sensor-1");
    // 45 items of 400,000 bytes: 18 MB, more than one 16 MB answer holds.
    let items: Vec<AggregateItem> = (0..45)
        .map(|m| item_of_size(&key(&g, m), 400_000))
        .collect();
    for chunk in items.chunks(9) {
        let writes: Vec<ItemWrite> = chunk.iter().map(write).collect();
        store.commit(&writes, None).await.expect("stored");
    }
    let keys: Vec<ItemKey> = (0..150).map(|m| key(&g, m)).collect();
    // The adapter splits 150 keys into requests of 100 and asks again for what did
    // not fit in 16 MB: the load never fails on size.
    let loaded = store
        .load(&keys, std::slice::from_ref(&g))
        .await
        .expect("load");
    assert_eq!(loaded.items.len(), 45);

    // moto answers 100 keys of these with UnprocessedKeys (the 16 MB cap) ...
    let raw_keys = |n: usize| -> KeysAndAttributes {
        let mut k = KeysAndAttributes::builder().consistent_read(true);
        for key in &keys[..n] {
            k = k.keys(std::collections::HashMap::from([
                ("pk".to_owned(), AttributeValue::S(key.pk())),
                ("sk".to_owned(), AttributeValue::S(key.sk())),
            ]));
        }
        k.build().expect("keys")
    };
    let out = c
        .dynamodb
        .batch_get_item()
        .request_items(store.table(), raw_keys(100))
        .send()
        .await
        .expect("100 keys");
    let unprocessed = out
        .unprocessed_keys()
        .and_then(|u| u.get(store.table()))
        .map_or(0, |k| k.keys().len());
    assert!(unprocessed > 0, "moto did not cap the answer at 16 MB");
    // ... and rejects 101 keys, which reads as the limit.
    let err = c
        .dynamodb
        .batch_get_item()
        .request_items(store.table(), raw_keys(101))
        .send()
        .await
        .map_err(|e| classify::dynamodb("BatchGetItem", store.table(), e))
        .expect_err("101 keys");
    assert_limit(&err, ddb::LIMIT_BATCH_GET_KEYS, 100);
    drop_table(&c, &store).await;
}
