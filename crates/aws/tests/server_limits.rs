//! The servers' own rejections: a request sent past the adapter's checks (the raw SDK
//! client, or the sink's `PutRecordsApi` which sends what it is given) is refused by
//! the server and classified as the same `Error::LimitExceeded` the adapter returns
//! before sending. Only the AWS side has a server behind the adapter; the adapters'
//! own checks, shared with the in-memory ones, are in the conformance suite
//! (`conformance.rs`, which also notes what kinesis-local 0.6.2 and moto 5.2.5 enforce).
//! Limits a server does not enforce (kinesis-local: 500 records and 5 MiB per request;
//! moto: 4 MB per transaction) have no test here.
#![cfg(feature = "integration")]

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};
use sluice_aws::classify;
use sluice_aws::kinesis::{PutRecordsApi, PutResult};
use sluice_core::input::record::OutRecord;
use sluice_core::ports::AggregateStore;
use sluice_core::state::item::{AggregateItem, ItemKey, ItemWrite};
use sluice_core::state::limits::{dynamodb as ddb, kinesis};
use sluice_core::testing::conformance::assert_limit_max;
use sluice_core::testing::{group, key, new_item, pad_to, watermark, write};
use sluice_core::{Error, Result};

const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------- Kinesis

/// One raw `PutRecords` of one record to a new stream, past the sink's checks: the
/// adapter's own request (`PutRecordsApi`), which sends what it is given.
async fn raw_put(key: &str, data: Vec<u8>) -> Result<Vec<PutResult>> {
    let c = common::clients().await;
    let (name, _) = common::stream(&c, "sluice-it-srv").await;
    let record = OutRecord {
        partition_key: key.to_owned(),
        data,
    };
    let out = PutRecordsApi::put_records(&c.kinesis, &name, &[&record]).await;
    c.provisioner().delete_stream(&name).await.expect("delete");
    out
}

/// kinesis-local rejects data over 1 MiB (without the key) as a per-entry error; the
/// sink's reading of that answer is the same LimitExceeded.
#[tokio::test]
async fn kinesis_local_refuses_data_over_1_mib_as_the_record_limit() {
    let results = raw_put("k", vec![b'x'; MIB + 1])
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
}

#[tokio::test]
async fn kinesis_local_refuses_a_partition_key_of_257_characters_as_the_same_limit() {
    let err = raw_put(&"k".repeat(257), b"x".to_vec())
        .await
        .expect_err("the server rejects 257 characters");
    assert_limit_max(&err, kinesis::LIMIT_PARTITION_KEY, 256);
}

// ---------------------------------------------------------------- DynamoDB

fn put(table: &str, pk: &str, sk: &str) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::S(sk.into()))
        .build()
        .expect("put");
    TransactWriteItem::builder().put(put).build()
}

/// Under DynamoDB's 409,600 bytes but over moto's 405,000: the adapter sends it, and
/// the server's ValidationException is read as the item limit, alone (`PutItem`) and
/// in a transaction.
#[tokio::test]
async fn moto_refuses_an_item_over_its_405_000_bytes_as_the_item_limit() {
    let (c, store) = common::aggregates_table("sluice-it-srv").await;
    let g = group("sensor-1");
    let moto_over = pad_to(new_item(&key(&g, 0)), 407_000);
    let err = store
        .commit(&[write(&moto_over)], None)
        .await
        .expect_err("moto rejects");
    assert_limit_max(&err, ddb::LIMIT_ITEM_BYTES, ddb::MAX_ITEM_BYTES);
    let err = store
        .commit(&[write(&moto_over)], Some(&watermark(&g)))
        .await
        .expect_err("moto rejects in a transaction");
    assert_limit_max(&err, ddb::LIMIT_ITEM_BYTES, ddb::MAX_ITEM_BYTES);
    assert!(store.scan_all().await.expect("scan").is_empty());
    common::drop_table(&c, store.table()).await;
}

/// More than 100 actions, or two on one item, in one raw `TransactWriteItems`.
#[tokio::test]
async fn moto_refuses_101_actions_or_two_on_one_item_as_the_same_limits() {
    let (c, store) = common::aggregates_table("sluice-it-srv").await;
    let t = store.table();
    let cases = [
        (
            (0..101).map(|i| put(t, "p", &format!("s{i}"))).collect(),
            ddb::LIMIT_ACTIONS,
            100,
        ),
        (
            vec![put(t, "p", "s"), put(t, "p", "s")],
            ddb::LIMIT_ACTIONS_PER_ITEM,
            1,
        ),
    ];
    for (items, limit, max) in cases {
        let err = c
            .dynamodb
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| classify::dynamodb("TransactWriteItems", t, e))
            .expect_err(limit);
        assert_limit_max(&err, limit, max);
    }
    common::drop_table(&c, t).await;
}

#[tokio::test]
async fn moto_refuses_a_partition_key_of_2049_bytes_as_the_same_limit() {
    let (c, store) = common::aggregates_table("sluice-it-srv").await;
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
    assert_limit_max(&err, ddb::LIMIT_PARTITION_KEY_BYTES, 2048);
    common::drop_table(&c, store.table()).await;
}

#[tokio::test]
async fn moto_caps_a_batch_get_answer_at_16_mb_and_refuses_101_keys_as_the_key_limit() {
    let (c, store) = common::aggregates_table("sluice-it-srv").await;
    let g = group("sensor-1");
    // 45 items of 400,000 bytes: 18 MB, more than one 16 MB answer holds.
    let items: Vec<AggregateItem> = (0..45)
        .map(|m| pad_to(new_item(&key(&g, m)), common::MOTO_LARGEST_ITEM))
        .collect();
    for chunk in items.chunks(9) {
        let writes: Vec<ItemWrite> = chunk.iter().map(write).collect();
        store.commit(&writes, None).await.expect("stored");
    }
    let keys: Vec<ItemKey> = (0..101).map(|m| key(&g, m)).collect();
    let raw_keys = |n: usize| -> KeysAndAttributes {
        let mut k = KeysAndAttributes::builder().consistent_read(true);
        for key in &keys[..n] {
            k = k.keys(HashMap::from([
                ("pk".to_owned(), AttributeValue::S(key.pk())),
                ("sk".to_owned(), AttributeValue::S(key.sk())),
            ]));
        }
        k.build().expect("keys")
    };
    // moto answers 100 keys of these with UnprocessedKeys (the 16 MB cap) ...
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
    assert_limit_max(&err, ddb::LIMIT_BATCH_GET_KEYS, 100);
    common::drop_table(&c, store.table()).await;
}
