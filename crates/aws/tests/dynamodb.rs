//! The aggregates table adapter against moto's DynamoDB (see infra/local/up): what only
//! the AWS adapter has (the stored attributes and TTL, `Query`/`Scan`, units, a missing
//! table). Its conditional writes, sealed pages and watermarks are checked by the
//! conformance suite both adapters run (`conformance.rs`).
#![cfg(feature = "integration")]

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use sluice_aws::DynamoAggregateStore;
use sluice_core::ports::{AggregateStore, Commit};
use sluice_core::state::fingerprint::FingerprintSet;
use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
use sluice_core::state::sequence::SeqNo;
use sluice_core::state::window::WindowSpec;
use sluice_core::testing::conformance::{self, Harness};
use sluice_core::testing::{T0, group, next_write, versioned, watermark_at};

fn key(g: &GroupKey, secs: i64, start_ms: i64) -> ItemKey {
    ItemKey {
        group: g.clone(),
        window: WindowSpec::tumbling(secs),
        start_ms,
    }
}

async fn raw(
    c: &common::Clients,
    table: &str,
    pk: &str,
    sk: &str,
) -> HashMap<String, AttributeValue> {
    c.dynamodb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
        .expect("item exists")
}

/// The conformance suite's conditional writes (two items in a transaction, one alone,
/// a load of five keys, a winner and a loser, a second first write, a cancelled
/// transaction), costed from sizes (all items < 1 KB): writes 2x2 (transaction) + 1 +
/// 1 + 1 (conflict) + 1 (conflict) + 2x2 (cancelled transaction); reads 4 keys (one
/// absent) + 1 + 1. A write whose condition fails is charged, as DynamoDB charges it.
#[tokio::test]
async fn conditional_writes_and_conflicts_cost_the_units_computed_from_sizes() {
    let table = common::DynamoTable::new("sluice-it-agg").await;
    conformance::dynamodb_conditional_writes_conflict_on_a_stale_version(&table).await;
    assert_eq!(table.store.estimated_units(), (6.0, 12.0));
    let (read_units, write_units) = table.store.units();
    assert!(
        read_units > 0.0 && write_units > 0.0,
        "{:?}",
        table.store.units()
    );
    table.finish().await;
}

#[tokio::test]
async fn stored_items_have_the_documented_shape_and_ttl() {
    let (c, store) = common::aggregates_table("sluice-it-shape").await;
    let g = group("sensor#7 🦀");
    let k = ItemKey {
        group: g.clone(),
        window: WindowSpec::hopping(3600, 600),
        start_ms: T0,
    };
    let mut it = versioned(&k, 1, &[1e100, -1e100, 2.5, 1e-125]);
    it.fingerprints.extend([u64::MAX, 0, 42]);
    it.sealed_pages = 2;
    it.high_water.insert(
        "shardId-000000000001".into(),
        SeqNo::parse("49590338271490256608559692538361571095921575989136588898").expect("digits"),
    );
    it.expires_at_s = Some(1_900_000_000);
    let mut page = FingerprintSet::new();
    page.extend([3, 4]);
    let w = ItemWrite {
        item: it.clone(),
        expected_version: 0,
        sealed_page: vec![(2, page)],
    };
    assert_eq!(
        store
            .commit(&[w], Some(&watermark_at(&g, T0, 1)))
            .await
            .expect("commit"),
        Commit::Done
    );

    let m = raw(
        &c,
        store.table(),
        "temp#sensor#7 🦀",
        "3600/600#2026-01-01T00:00:00Z",
    )
    .await;
    let kind = |name: &str| match m.get(name) {
        Some(AttributeValue::S(_)) => "S",
        Some(AttributeValue::N(_)) => "N",
        Some(AttributeValue::B(_)) => "B",
        Some(AttributeValue::M(_)) => "M",
        Some(_) => "other",
        None => "absent",
    };
    for (name, want) in [
        ("pk", "S"),
        ("sk", "S"),
        ("key", "S"),
        ("type", "S"),
        ("window_seconds", "N"),
        ("slide_seconds", "N"),
        ("window_start", "S"),
        ("window_start_ms", "N"),
        ("count", "N"),
        ("sum", "N"),
        ("sum_comp", "N"),
        ("min", "N"),
        ("max", "N"),
        ("mean", "N"),
        ("m2", "S"), // about 1.5e200: beyond DynamoDB's number range
        ("version", "N"),
        ("fps", "B"),
        ("fp_pages", "N"),
        ("hwm", "M"),
        ("expires_at", "N"),
    ] {
        assert_eq!(kind(name), want, "attribute {name}");
    }
    assert_eq!(m.len(), 20, "no other attributes: {:?}", m.keys());
    assert_eq!(m["key"], AttributeValue::S("sensor#7 🦀".into()));
    assert_eq!(
        m["window_start"],
        AttributeValue::S("2026-01-01T00:00:00Z".into())
    );
    assert_eq!(m["slide_seconds"].as_n().map(String::as_str), Ok("600"));
    assert_eq!(m["expires_at"].as_n().map(String::as_str), Ok("1900000000"));
    assert_eq!(m["fps"].as_b().map(|b| b.as_ref().len()), Ok(24));
    let hwm = m["hwm"].as_m().expect("map");
    assert_eq!(
        hwm["shardId-000000000001"],
        AttributeValue::S("49590338271490256608559692538361571095921575989136588898".into())
    );
    // Everything round-trips through the server, except that a magnitude below
    // DynamoDB's range (the 1e-125 lost by the compensated sum) is stored as 0.
    assert_eq!(it.state.sum_comp, 1e-125);
    let mut expected = it.clone();
    expected.state.sum_comp = 0.0;
    let back = store
        .load(std::slice::from_ref(&k), &[])
        .await
        .expect("load");
    assert_eq!(back.items, vec![expected], "round trip through the server");

    let p = raw(&c, store.table(), &k.pk(), &k.page_sk(2)).await;
    assert!(matches!(p.get("fps"), Some(AttributeValue::B(b)) if b.as_ref().len() == 16));
    assert_eq!(p["expires_at"].as_n().map(String::as_str), Ok("1900000000"));
    let wm = raw(&c, store.table(), &k.pk(), "~wm").await;
    assert_eq!(
        wm["wm"].as_n().map(String::as_str),
        Ok(T0.to_string().as_str())
    );
    assert_eq!(wm["version"].as_n().map(String::as_str), Ok("1"));

    let ttl = c
        .dynamodb
        .describe_time_to_live()
        .table_name(store.table())
        .send()
        .await
        .expect("ttl");
    let ttl = ttl.time_to_live_description().expect("description");
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    common::drop_table(&c, store.table()).await;
}

#[tokio::test]
async fn query_and_scan_return_aggregates_only() {
    let (c, store) = common::aggregates_table("sluice-it-query").await;
    let g = group("q");
    let h = group("other");
    let minute = |n: i64| key(&g, 60, T0 + n * 60_000);
    let mut writes: Vec<ItemWrite> = (0..3)
        .map(|n| next_write(&versioned(&minute(n), 1, &[n as f64])))
        .collect();
    writes.push(next_write(&versioned(
        &key(&g, 3600, T0),
        1,
        &[0.0, 1.0, 2.0],
    )));
    let mut anchor = versioned(&minute(3), 1, &[3.0]);
    anchor.sealed_pages = 1;
    let mut page = FingerprintSet::new();
    page.insert(7);
    writes.push(ItemWrite {
        item: anchor.clone(),
        expected_version: 0,
        sealed_page: vec![(1, page)],
    });
    assert_eq!(
        store
            .commit(&writes, Some(&watermark_at(&g, T0, 1)))
            .await
            .expect("commit"),
        Commit::Done
    );
    assert_eq!(
        store
            .commit(&[next_write(&versioned(&key(&h, 60, T0), 1, &[1.0]))], None)
            .await
            .expect("commit"),
        Commit::Done
    );

    let starts = |items: &[AggregateItem]| -> Vec<(i64, i64)> {
        items
            .iter()
            .map(|i| (i.key.window.size_secs(), i.key.start_ms))
            .collect()
    };
    let q = store
        .query(
            &g,
            Some(WindowSpec::tumbling(60)),
            T0 + 60_000,
            T0 + 120_000,
        )
        .await
        .expect("query");
    assert_eq!(starts(&q), vec![(60, T0 + 60_000), (60, T0 + 120_000)]);
    // Bounds that are not whole seconds.
    let q = store
        .query(&g, Some(WindowSpec::tumbling(60)), T0 + 1, T0 + 180_500)
        .await
        .expect("query");
    assert_eq!(
        starts(&q),
        vec![(60, T0 + 60_000), (60, T0 + 120_000), (60, T0 + 180_000)]
    );
    let q = store.query(&g, None, T0, T0 + 60_000).await.expect("query");
    assert_eq!(starts(&q), vec![(60, T0), (3600, T0), (60, T0 + 60_000)]);
    assert!(q.iter().all(|i| i.key.group == g));
    let q = store
        .query(&g, Some(WindowSpec::tumbling(60)), T0 + 10, T0 + 20)
        .await
        .expect("query");
    assert!(q.is_empty());

    let all = store.scan_all().await.expect("scan");
    assert_eq!(all.len(), 6, "five of g and one of h, no watermark or page");
    assert!(
        all.iter()
            .any(|i| i.key == anchor.key && i.sealed_pages == 1)
    );
    common::drop_table(&c, store.table()).await;
}

#[tokio::test]
async fn loads_more_keys_than_one_batch_holds() {
    let (c, store) = common::aggregates_table("sluice-it-batch").await;
    let g = group("many");
    let keys: Vec<ItemKey> = (0..150).map(|n| key(&g, 60, T0 + n * 60_000)).collect();
    for chunk in keys.chunks(50) {
        let writes: Vec<ItemWrite> = chunk
            .iter()
            .map(|k| next_write(&versioned(k, 1, &[1.0])))
            .collect();
        assert_eq!(
            store.commit(&writes, None).await.expect("commit"),
            Commit::Done
        );
    }
    let mut asked = keys.clone();
    asked.extend(keys[..30].iter().cloned());
    asked.extend((150..170).map(|n| key(&g, 60, T0 + n * 60_000)));
    let loaded = store
        .load(&asked, std::slice::from_ref(&g))
        .await
        .expect("load");
    assert_eq!(loaded.items.len(), 150);
    assert!(loaded.watermarks.is_empty());
    common::drop_table(&c, store.table()).await;
}

#[tokio::test]
async fn a_missing_table_is_a_non_retryable_error_naming_it() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-nowhere");
    let store = DynamoAggregateStore::new(c.dynamodb.clone(), &table);
    let err = store
        .load(&[key(&group("k"), 60, T0)], &[])
        .await
        .expect_err("no such table");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains(&table), "{err}");
    let err = store
        .commit(
            &[next_write(&versioned(&key(&group("k"), 60, T0), 1, &[1.0]))],
            None,
        )
        .await
        .expect_err("no such table");
    assert!(
        !err.is_retryable() && err.to_string().contains(&table),
        "{err}"
    );
}
