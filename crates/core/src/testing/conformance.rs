//! One conformance suite for the two sets of adapters of the ports: the AWS ones
//! (`sluice-aws`, run against kinesis-local and moto on loopback) and the in-memory ones
//! (`sluice-local`) must behave alike, limits included. Each check is written once here,
//! generic over the ports ([`AggregateStore`], [`RecordSink`], [`ShardSource`]), and
//! both crates run every check through [`conformance_suite!`](crate::conformance_suite):
//! `crates/local/tests/conformance.rs` (in memory) and `crates/aws/tests/conformance.rs`
//! (feature `integration`, local servers). A check added here and to the macro's list
//! runs on both.
//!
//! What the suite covers. At a limit passes; one over fails with
//! [`Error::LimitExceeded`] (not retryable, code `limit_exceeded`, the limit's `max`
//! and the request's `actual`) and writes nothing:
//! - Kinesis, through the sink: a record of 1 MiB (data + partition key); a partition
//!   key of 256 characters (not bytes; an empty one is a non-retryable
//!   `Error::Remote`); no request the sink sends holds more than 500 records or 5 MiB,
//!   whatever it is given.
//! - DynamoDB, through the aggregates store: an item of 400 KB, alone (`PutItem`) or in
//!   a transaction; 100 actions per transaction; one action per item per transaction;
//!   4 MB per transaction; a partition key of 2048 bytes; a load of more keys than one
//!   `BatchGetItem` takes (100) and of more than one answer holds (16 MB) never fails
//!   on size; limits are checked before conditions (an oversize write with a stale
//!   version is a limit, not a conflict).
//!
//! And beyond the limits, the aggregates table's conditional writes: a load reads what
//! was committed (duplicate keys collapse, missing ones are absent); a write on a
//! stale version, a second first write of an item, a page sealed twice or a watermark
//! written on a stale version is a `Commit::Conflict`, and a transaction with one
//! stale condition changes nothing; sealed pages and the group's watermark commit with
//! their items.
//!
//! What differs between the adapters is asked of a small harness ([`Table`],
//! [`Stream`]) instead of being written twice:
//! - [`Table::largest_item`]: the largest item the table stores. DynamoDB's 409,600
//!   bytes in memory; moto 5.2.5 sizes items its own way and stops at 405,000, so the
//!   AWS harness stores 400,000 where the in-memory one stores exactly 409,600. One
//!   byte over DynamoDB's limit is refused by both adapters' own check, so every
//!   `max`/`actual` is asserted on both.
//! - [`Stream::requests`]: the size of each `PutRecords` request the sink sent, where
//!   the harness sees them (the AWS sink over a recording API). The in-memory stream
//!   rejects an oversize request itself, so there everything written was within the
//!   limits.
//! - [`Table::batch_get_requests`]: `BatchGetItem` requests a load took, where the
//!   adapter counts them (the in-memory meter, which splits as DynamoDB does).
//!
//! What each server enforces itself (kinesis-local 0.6.2 accepts 501 records and 6 MiB
//! in one request; moto 5.2.5 accepts transactions over 4 MB) is noted in
//! `crates/aws/tests/conformance.rs`; checks that only one adapter can make stay in
//! its own test files (`crates/aws/tests/server_limits.rs`,
//! `crates/local/tests/memory_limits.rs`).

use std::future::Future;

use crate::Error;
use crate::input::record::OutRecord;
use crate::ports::{AggregateStore, Commit, RecordSink, ShardSource};
use crate::state::fingerprint::FingerprintSet;
use crate::state::item::{AggregateItem, ItemKey, ItemWrite};
use crate::state::limits::{dynamodb as ddb, kinesis};
use crate::state::window::WindowSpec;
use crate::testing::{
    T0, group, key, new_item, next_write, pad_to, read_all, record, versioned, watermark,
    watermark_at, write,
};

const MIB: usize = 1024 * 1024;

/// Set-up and clean-up of one check's adapter (a fresh table or stream each).
pub trait Harness {
    /// Removes what the check left behind (a table or stream on a server).
    fn finish(self) -> impl Future<Output = ()>
    where
        Self: Sized,
    {
        async {}
    }
}

/// An empty aggregates table under test.
pub trait Table: Harness {
    type Store: AggregateStore;
    fn store(&self) -> &Self::Store;
    /// The largest item the table stores (at most [`ddb::MAX_ITEM_BYTES`]).
    fn largest_item(&self) -> usize;
    /// Every aggregate item the table holds (no pages, no watermarks), in any order.
    fn items(&self) -> impl Future<Output = Vec<AggregateItem>>;
    /// `BatchGetItem` requests sent so far, where the adapter counts them.
    fn batch_get_requests(&self) -> Option<u64>;
}

/// An empty stream under test, written by a sink and read by a source.
pub trait Stream: Harness {
    type Sink: RecordSink;
    type Source: ShardSource;
    fn sink(&self) -> &Self::Sink;
    fn source(&self) -> &Self::Source;
    /// (records, bytes) of every `PutRecords` request the sink sent, where seen.
    fn requests(&self) -> Option<Vec<(usize, usize)>>;
}

/// Runs every check of the suite as a `#[tokio::test]` named after it. `table` and
/// `stream` are expressions whose `.await` is a fresh [`Table`] and [`Stream`].
#[macro_export]
macro_rules! conformance_suite {
    (table: $table:expr, stream: $stream:expr $(,)?) => {
        $crate::conformance_suite!(@each $table;
            dynamodb_item_of_400_kb_passes_and_one_byte_more_fails_alone_or_in_a_transaction,
            dynamodb_transaction_of_100_actions_passes_and_101_fails,
            dynamodb_transaction_must_not_touch_one_item_twice,
            dynamodb_transaction_of_4_mb_passes_and_one_byte_more_fails,
            dynamodb_limits_are_checked_before_conditions,
            dynamodb_partition_key_of_2048_bytes_passes_and_one_byte_more_fails,
            dynamodb_batch_get_reads_100_keys_per_request_and_16_mb_per_answer,
            dynamodb_conditional_writes_conflict_on_a_stale_version,
            dynamodb_sealed_pages_and_group_watermarks_commit_with_the_items,
        );
        $crate::conformance_suite!(@each $stream;
            kinesis_record_of_1_mib_with_its_key_passes_and_one_byte_more_fails,
            kinesis_partition_key_of_256_characters_passes_and_257_fails,
            kinesis_sink_never_sends_more_than_500_records_or_5_mib_per_request,
        );
    };
    (@each $harness:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let harness = $harness.await;
                $crate::testing::conformance::$check(&harness).await;
                $crate::testing::conformance::Harness::finish(harness).await;
            }
        )+
    };
}

/// Asserts a final `LimitExceeded` of `limit` with `max` and `actual`.
pub fn assert_limit(err: &Error, limit: &str, max: usize, actual: usize) {
    assert_limit_max(err, limit, max);
    assert!(
        matches!(err, Error::LimitExceeded { actual: a, .. } if *a == actual),
        "expected actual {actual}: {err:?}"
    );
}

/// Asserts a final `LimitExceeded` of `limit` with `max`, whatever its `actual` (a
/// server's rejection need not say how far over it was).
pub fn assert_limit_max(err: &Error, limit: &str, max: usize) {
    match err {
        Error::LimitExceeded {
            limit: l, max: m, ..
        } => assert_eq!((*l, *m), (limit, max), "{err}"),
        other => panic!("expected LimitExceeded({limit}), got {other:?}"),
    }
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.code(), "limit_exceeded");
}

/// How many records a stream holds, read shard by shard through the source.
async fn stream_len<S: ShardSource>(source: &S) -> usize {
    read_all(source).await.len()
}

/// The table's items in key order.
async fn stored<T: Table>(t: &T) -> Vec<AggregateItem> {
    let mut items = t.items().await;
    items.sort_by(|a, b| a.key.cmp(&b.key));
    items
}

/// `n` new items of `bytes` each, minutes `0..n` of the group `g`.
fn items_of_size(g: &str, n: i64, bytes: usize) -> Vec<AggregateItem> {
    let g = group(g);
    (0..n)
        .map(|m| pad_to(new_item(&key(&g, m)), bytes))
        .collect()
}

// ---------------------------------------------------------------- DynamoDB

pub async fn dynamodb_item_of_400_kb_passes_and_one_byte_more_fails_alone_or_in_a_transaction<
    T: Table,
>(
    t: &T,
) {
    let store = t.store();
    let g = group("sensor-1");
    let fits = pad_to(new_item(&key(&g, 0)), t.largest_item());
    assert_eq!(
        store
            .commit(&[write(&fits)], None)
            .await
            .expect("the largest item"),
        Commit::Done
    );
    // Over 400 KB: refused before anything is sent, alone or in a transaction.
    let over = pad_to(new_item(&key(&g, 1)), ddb::MAX_ITEM_BYTES + 1);
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
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                operation: "TransactWriteItems",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(stored(t).await, vec![fits], "nothing else was written");
}

pub async fn dynamodb_transaction_of_100_actions_passes_and_101_fails<T: Table>(t: &T) {
    let store = t.store();
    let g = group("sensor-1");
    let writes: Vec<ItemWrite> = (0..99).map(|m| write(&new_item(&key(&g, m)))).collect();
    // 99 items and the watermark: 100 actions.
    store
        .commit(&writes, Some(&watermark(&g)))
        .await
        .expect("100 actions");
    let before = stored(t).await;
    assert_eq!(before.len(), 99);

    let h = group("sensor-2");
    let writes: Vec<ItemWrite> = (0..100).map(|m| write(&new_item(&key(&h, m)))).collect();
    let err = store
        .commit(&writes, Some(&watermark(&h)))
        .await
        .expect_err("101 actions");
    assert_limit(&err, ddb::LIMIT_ACTIONS, 100, 101);
    assert_eq!(stored(t).await, before, "nothing was written");
}

pub async fn dynamodb_transaction_must_not_touch_one_item_twice<T: Table>(t: &T) {
    let store = t.store();
    let g = group("sensor-1");
    let a = new_item(&key(&g, 0));
    let b = new_item(&key(&g, 1));
    // One action per item, a sealed page beside its anchor: distinct items.
    let mut with_page = write(&a);
    let mut page = FingerprintSet::new();
    page.extend([1, 2, 3]);
    with_page.sealed_page = vec![(1, page.clone())];
    store
        .commit(&[with_page, write(&b)], Some(&watermark(&g)))
        .await
        .expect("distinct items");
    assert_eq!(store.load_page(&a.key, 1).await.expect("page"), Some(page));

    let h = group("sensor-2");
    let c = new_item(&key(&h, 0));
    let err = store
        .commit(&[write(&c), write(&c)], None)
        .await
        .expect_err("the same item twice");
    assert_limit(&err, ddb::LIMIT_ACTIONS_PER_ITEM, 1, 2);
    assert_eq!(stored(t).await, vec![a, b], "nothing was written");
}

pub async fn dynamodb_transaction_of_4_mb_passes_and_one_byte_more_fails<T: Table>(t: &T) {
    let store = t.store();
    // Ten of the largest items and one of the rest: exactly 4 MB (in memory: ten of
    // 400 KB and one of 96 KB).
    let largest = t.largest_item();
    let rest = ddb::MAX_TRANSACTION_BYTES - 10 * largest;
    let mut items = items_of_size("sensor-1", 10, largest);
    items.push(pad_to(new_item(&key(&group("sensor-1"), 10)), rest));
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    store.commit(&writes, None).await.expect("exactly 4 MB");
    assert_eq!(stored(t).await.len(), 11);

    let mut items = items_of_size("sensor-2", 10, largest);
    items.push(pad_to(new_item(&key(&group("sensor-2"), 10)), rest + 1));
    let writes: Vec<ItemWrite> = items.iter().map(write).collect();
    let err = store.commit(&writes, None).await.expect_err("4 MB + 1");
    assert_limit(&err, ddb::LIMIT_TRANSACTION_BYTES, 4 * MIB, 4 * MIB + 1);
    assert_eq!(stored(t).await.len(), 11, "nothing was written");
}

/// An oversize write whose condition would fail is a limit, not a conflict.
pub async fn dynamodb_limits_are_checked_before_conditions<T: Table>(t: &T) {
    let store = t.store();
    let g = group("sensor-1");
    let mut stale = write(&pad_to(new_item(&key(&g, 0)), ddb::MAX_ITEM_BYTES + 1));
    stale.expected_version = 7; // would be a conflict
    let err = store.commit(&[stale], None).await.expect_err("too large");
    assert_limit(&err, ddb::LIMIT_ITEM_BYTES, 409_600, 409_601);
    let mut conflict = write(&new_item(&key(&g, 1)));
    conflict.expected_version = 7;
    assert_eq!(
        store.commit(&[conflict], None).await.expect("in limits"),
        Commit::Conflict
    );
}

pub async fn dynamodb_partition_key_of_2048_bytes_passes_and_one_byte_more_fails<T: Table>(t: &T) {
    let store = t.store();
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
    assert_eq!(stored(t).await, vec![at]);
}

/// A load asks at most 100 keys per `BatchGetItem` and asks again for what did not fit
/// in a 16 MB answer: it never fails on size.
pub async fn dynamodb_batch_get_reads_100_keys_per_request_and_16_mb_per_answer<T: Table>(t: &T) {
    let store = t.store();
    let g = group("sensor-1");
    // 45 of the largest items (18 MB) in transactions of 9 (under 4 MB each).
    for chunk in items_of_size("sensor-1", 45, t.largest_item()).chunks(9) {
        let writes: Vec<ItemWrite> = chunk.iter().map(write).collect();
        store.commit(&writes, None).await.expect("stored");
    }
    let keys: Vec<ItemKey> = (0..150).map(|m| key(&g, m)).collect();
    let requests = || t.batch_get_requests();

    // 100 keys: one request, were the answer small enough; 18 MB needs two.
    let n = requests();
    let loaded = store
        .load(&keys[..100], &[])
        .await
        .expect("never fails on size");
    assert_eq!(loaded.items.len(), 45);
    if let (Some(n), Some(now)) = (n, requests()) {
        assert_eq!(now - n, 2, "18 MB: two answers");
    }
    // 150 keys and a watermark: split into requests of 100.
    let loaded = store
        .load(&keys, std::slice::from_ref(&g))
        .await
        .expect("load");
    assert_eq!(loaded.items.len(), 45);

    // Keys of nothing: 100 are one request, 101 two.
    let h = group("sensor-2");
    let absent: Vec<ItemKey> = (0..100).map(|m| key(&h, m)).collect();
    let n = requests();
    let loaded = store.load(&absent, &[]).await.expect("100 keys");
    assert!(loaded.items.is_empty());
    if let (Some(n), Some(now)) = (n, requests()) {
        assert_eq!(now - n, 1, "100 keys: one request");
    }
    let loaded = store
        .load(&absent, &[group("other")])
        .await
        .expect("101 keys");
    assert!(loaded.items.is_empty() && loaded.watermarks.is_empty());
    if let (Some(n), Some(now)) = (n, requests()) {
        assert_eq!(now - n, 3, "101 keys: two more");
    }
}

async fn load_one<S: AggregateStore>(store: &S, k: &ItemKey) -> Vec<AggregateItem> {
    store
        .load(std::slice::from_ref(k), &[])
        .await
        .expect("load")
        .items
}

/// Items are written under their expected version: of two writers that read one
/// version the first wins, and a transaction with one stale condition changes nothing.
pub async fn dynamodb_conditional_writes_conflict_on_a_stale_version<T: Table>(t: &T) {
    let store = t.store();
    let g = group("sensor-1");
    let hour = |start_ms| ItemKey {
        group: g.clone(),
        window: WindowSpec::tumbling(3600),
        start_ms,
    };
    let (ka, kb, kc) = (key(&g, 0), hour(T0), key(&g, 1));
    let a1 = versioned(&ka, 1, &[1.0, 2.0]);
    let b1 = versioned(&kb, 1, &[1.0, 2.0]);
    // Two items: one transaction.
    assert_eq!(
        store
            .commit(&[next_write(&a1), next_write(&b1)], None)
            .await
            .expect("commit"),
        Commit::Done
    );
    // One item: a conditional PutItem.
    let c1 = versioned(&kc, 1, &[5.0]);
    assert_eq!(
        store
            .commit(&[next_write(&c1)], None)
            .await
            .expect("commit"),
        Commit::Done
    );

    let asked = [ka.clone(), kb.clone(), kc.clone(), ka.clone(), key(&g, -1)];
    let loaded = store.load(&asked, &[]).await.expect("load");
    let mut items = loaded.items;
    items.sort_by(|x, y| x.key.cmp(&y.key));
    let mut expected = vec![a1.clone(), b1.clone(), c1.clone()];
    expected.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(
        items, expected,
        "duplicates collapse, missing keys are absent"
    );
    assert!(loaded.watermarks.is_empty());

    // Two writers read a at version 1; the first wins, the second conflicts.
    let winner = versioned(&ka, 2, &[1.0, 2.0, 3.0]);
    let loser = versioned(&ka, 2, &[1.0, 2.0, 100.0]);
    assert_eq!(
        store
            .commit(&[next_write(&winner)], None)
            .await
            .expect("commit"),
        Commit::Done
    );
    assert_eq!(
        store
            .commit(&[next_write(&loser)], None)
            .await
            .expect("commit"),
        Commit::Conflict
    );
    assert_eq!(
        load_one(store, &ka).await,
        vec![winner],
        "re-read gives the winner's state"
    );
    // A second "first write" of an existing item conflicts.
    assert_eq!(
        store
            .commit(&[next_write(&c1)], None)
            .await
            .expect("commit"),
        Commit::Conflict
    );
    // A transaction with one stale condition changes nothing at all.
    let b2 = versioned(&kb, 2, &[1.0, 2.0, 3.0]);
    let stale_a = versioned(&ka, 2, &[0.0]);
    assert_eq!(
        store
            .commit(&[next_write(&b2), next_write(&stale_a)], None)
            .await
            .expect("commit"),
        Commit::Conflict
    );
    assert_eq!(
        load_one(store, &kb).await,
        vec![b1],
        "the transaction was all or nothing"
    );
}

/// A sealed page is written with its anchor and never again; the group's watermark
/// commits with the items, under its own version.
pub async fn dynamodb_sealed_pages_and_group_watermarks_commit_with_the_items<T: Table>(t: &T) {
    let store = t.store();
    let g = group("hot");
    let anchor_key = key(&g, 0);
    let mut anchor = versioned(&anchor_key, 1, &[1.0]);
    anchor.fingerprints.extend([11, 12]);
    anchor.sealed_pages = 1;
    anchor.expires_at_s = Some(1_900_000_000);
    let mut page = FingerprintSet::new();
    page.extend(1..=5000);
    let with_page = ItemWrite {
        sealed_page: vec![(1, page.clone())],
        ..next_write(&anchor)
    };
    let wm1 = watermark_at(&g, T0, 1);
    assert_eq!(
        store
            .commit(std::slice::from_ref(&with_page), Some(&wm1))
            .await
            .expect("commit"),
        Commit::Done
    );
    assert_eq!(
        store.load_page(&anchor_key, 1).await.expect("page"),
        Some(page.clone())
    );
    assert_eq!(store.load_page(&anchor_key, 2).await.expect("page"), None);
    let loaded = store
        .load(
            std::slice::from_ref(&anchor_key),
            &[g.clone(), group("cold"), g.clone()],
        )
        .await
        .expect("load");
    assert_eq!(loaded.items, vec![anchor.clone()]);
    assert_eq!(loaded.watermarks, vec![wm1.watermark.clone()]);

    // Sealing page 1 again fails: pages are immutable, and the anchor stays as it was.
    let again = ItemWrite {
        sealed_page: vec![(1, FingerprintSet::new())],
        ..next_write(&AggregateItem {
            version: 2,
            ..anchor.clone()
        })
    };
    assert_eq!(
        store.commit(&[again], None).await.expect("commit"),
        Commit::Conflict
    );
    assert_eq!(
        store.load_page(&anchor_key, 1).await.expect("page"),
        Some(page)
    );
    assert_eq!(load_one(store, &anchor_key).await[0].version, 1);

    // The watermark alone: advanced under its version; a stale writer cannot lower it.
    let watermarks = || async {
        store
            .load(&[], std::slice::from_ref(&g))
            .await
            .expect("load")
            .watermarks
    };
    let wm2 = watermark_at(&g, T0 + 120_000, 2);
    assert_eq!(
        store.commit(&[], Some(&wm2)).await.expect("commit"),
        Commit::Done
    );
    let stale = watermark_at(&g, T0 + 60_000, 2);
    assert_eq!(
        store.commit(&[], Some(&stale)).await.expect("commit"),
        Commit::Conflict
    );
    assert_eq!(watermarks().await, vec![wm2.watermark.clone()]);
    // A watermark write in a transaction whose item conflicts is not applied either.
    let wm3 = watermark_at(&g, T0 + 180_000, 3);
    let conflicting = versioned(&anchor_key, 1, &[9.0]);
    assert_eq!(
        store
            .commit(&[next_write(&conflicting)], Some(&wm3))
            .await
            .expect("commit"),
        Commit::Conflict
    );
    assert_eq!(watermarks().await, vec![wm2.watermark]);
}

// ---------------------------------------------------------------- Kinesis

pub async fn kinesis_record_of_1_mib_with_its_key_passes_and_one_byte_more_fails<S: Stream>(s: &S) {
    let sink = s.sink();
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
    assert_limit(
        &err,
        kinesis::LIMIT_RECORD_BYTES,
        MIB,
        kinesis::MAX_RECORD_BYTES + 1,
    );
    assert_eq!(
        stream_len(s.source()).await,
        1,
        "nothing of the call was written"
    );
}

pub async fn kinesis_partition_key_of_256_characters_passes_and_257_fails<S: Stream>(s: &S) {
    let sink = s.sink();
    // Characters, not bytes: 'é' is two bytes.
    sink.put_records(vec![record(&"é".repeat(256), 600)])
        .await
        .expect("256 characters");
    let err = sink
        .put_records(vec![record(&"é".repeat(257), 600)])
        .await
        .expect_err("257 characters");
    assert_limit(&err, kinesis::LIMIT_PARTITION_KEY, 256, 257);
    let empty = sink
        .put_records(vec![record("", 10)])
        .await
        .expect_err("empty key");
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
    assert_eq!(stream_len(s.source()).await, 1);
}

/// The sink cuts what it is given into requests of at most 500 records and 5 MiB, and
/// writes them all.
pub async fn kinesis_sink_never_sends_more_than_500_records_or_5_mib_per_request<S: Stream>(s: &S) {
    // 1,200 small records and 6 records of 1 MiB: several requests.
    let mut records: Vec<OutRecord> = (0..1200).map(|i| record(&format!("k{i}"), 20)).collect();
    records.extend((0..6).map(|i| record(&format!("big{i}"), MIB)));
    s.sink()
        .put_records(records)
        .await
        .expect("split into requests");
    if let Some(requests) = s.requests() {
        assert!(requests.len() >= 3, "{requests:?}");
        for (n, bytes) in &requests {
            assert!(*n <= kinesis::MAX_RECORDS_PER_REQUEST, "{requests:?}");
            assert!(*bytes <= kinesis::MAX_REQUEST_BYTES, "{requests:?}");
        }
        assert_eq!(requests.iter().map(|r| r.0).sum::<usize>(), 1206);
    }
    assert_eq!(stream_len(s.source()).await, 1206);
}
