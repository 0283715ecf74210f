//! The aggregates table adapter against moto's DynamoDB (see infra/local/up).
#![cfg(feature = "integration")]

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use sluice_aws::DynamoAggregateStore;
use sluice_core::fingerprint::FingerprintSet;
use sluice_core::item::{
    AggregateItem, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite,
};
use sluice_core::ports::{AggregateStore, Commit};
use sluice_core::sequence::SeqNo;
use sluice_core::window::WindowSpec;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn group(key: &str) -> GroupKey {
    GroupKey {
        key: key.into(),
        metric: "temp".into(),
    }
}

fn key(g: &GroupKey, secs: i64, start_ms: i64) -> ItemKey {
    ItemKey {
        group: g.clone(),
        window: WindowSpec::tumbling(secs),
        start_ms,
    }
}

fn item(k: &ItemKey, version: u64, values: &[f64]) -> AggregateItem {
    let mut item = AggregateItem::new(k.clone());
    item.version = version;
    item.state = values.iter().copied().collect();
    item
}

fn write(item: &AggregateItem) -> ItemWrite {
    ItemWrite {
        item: item.clone(),
        expected_version: item.version - 1,
        sealed_page: Vec::new(),
    }
}

fn watermark(g: &GroupKey, ms: i64, version: u64) -> WatermarkWrite {
    WatermarkWrite {
        watermark: GroupWatermark {
            group: g.clone(),
            watermark_ms: ms,
            closed_from_ms: ms,
            last_record: None,
            version,
        },
        expected_version: version - 1,
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

#[tokio::test]
async fn commits_new_items_and_detects_version_conflicts() {
    let (c, store) = common::aggregates_table("sluice-it-agg").await;
    let g = group("sensor-1");
    let (ka, kb, kc) = (key(&g, 60, T0), key(&g, 3600, T0), key(&g, 60, T0 + 60_000));
    let a1 = item(&ka, 1, &[1.0, 2.0]);
    let b1 = item(&kb, 1, &[1.0, 2.0]);

    // Two items: one transaction.
    assert_eq!(
        store
            .commit(&[write(&a1), write(&b1)], None)
            .await
            .expect("commit"),
        Commit::Done
    );
    // One item: a conditional PutItem.
    let c1 = item(&kc, 1, &[5.0]);
    assert_eq!(
        store.commit(&[write(&c1)], None).await.expect("commit"),
        Commit::Done
    );

    let loaded = store
        .load(
            &[
                ka.clone(),
                kb.clone(),
                kc.clone(),
                ka.clone(),
                key(&g, 60, T0 - 60_000),
            ],
            &[],
        )
        .await
        .expect("load");
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
    let winner = item(&ka, 2, &[1.0, 2.0, 3.0]);
    let loser = item(&ka, 2, &[1.0, 2.0, 100.0]);
    assert_eq!(
        store.commit(&[write(&winner)], None).await.expect("commit"),
        Commit::Done
    );
    assert_eq!(
        store.commit(&[write(&loser)], None).await.expect("commit"),
        Commit::Conflict
    );
    let again = store
        .load(std::slice::from_ref(&ka), &[])
        .await
        .expect("load");
    assert_eq!(
        again.items,
        vec![winner.clone()],
        "re-read gives the winner's state"
    );

    // A second "first write" of an existing item conflicts.
    assert_eq!(
        store.commit(&[write(&c1)], None).await.expect("commit"),
        Commit::Conflict
    );

    // A transaction with one stale condition changes nothing at all.
    let b2 = item(&kb, 2, &[1.0, 2.0, 3.0]);
    let stale_a = item(&ka, 2, &[0.0]);
    assert_eq!(
        store
            .commit(&[write(&b2), write(&stale_a)], None)
            .await
            .expect("commit"),
        Commit::Conflict
    );
    let after = store
        .load(std::slice::from_ref(&kb), &[])
        .await
        .expect("load");
    assert_eq!(after.items, vec![b1], "the transaction was all or nothing");

    // Computed from sizes (all items < 1 KB): writes 2x2 (transaction) + 1 + 1 + 1
    // (conflict) + 1 (conflict) + 2x2 (cancelled transaction); reads 4 keys (one absent)
    // + 1 + 1.
    assert_eq!(store.estimated_units(), (6.0, 12.0));
    let (read_units, write_units) = store.units();
    assert!(read_units > 0.0 && write_units > 0.0, "{:?}", store.units());
    common::drop_table(&c, store.table()).await;
}

#[tokio::test]
async fn sealed_pages_and_group_watermarks_commit_with_the_items() {
    let (c, store) = common::aggregates_table("sluice-it-page").await;
    let g = group("hot");
    let anchor_key = key(&g, 60, T0);
    let mut anchor = item(&anchor_key, 1, &[1.0]);
    anchor.fingerprints.extend([11, 12]);
    anchor.sealed_pages = 1;
    anchor.expires_at_s = Some(1_900_000_000);
    let mut page = FingerprintSet::new();
    page.extend(1..=5000);
    let with_page = ItemWrite {
        item: anchor.clone(),
        expected_version: 0,
        sealed_page: vec![(1, page.clone())],
    };
    let wm1 = watermark(&g, T0, 1);
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

    let other = group("cold");
    let loaded = store
        .load(
            std::slice::from_ref(&anchor_key),
            &[g.clone(), other.clone(), g.clone()],
        )
        .await
        .expect("load");
    assert_eq!(loaded.items, vec![anchor.clone()]);
    assert_eq!(loaded.watermarks, vec![wm1.watermark.clone()]);

    // Sealing page 1 again fails: pages are immutable, and the anchor stays as it was.
    let mut anchor2 = anchor.clone();
    anchor2.version = 2;
    let again = ItemWrite {
        item: anchor2,
        expected_version: 1,
        sealed_page: vec![(1, FingerprintSet::new())],
    };
    assert_eq!(
        store.commit(&[again], None).await.expect("commit"),
        Commit::Conflict
    );
    assert_eq!(
        store.load_page(&anchor_key, 1).await.expect("page"),
        Some(page)
    );
    let loaded = store
        .load(std::slice::from_ref(&anchor_key), &[])
        .await
        .expect("load");
    assert_eq!(loaded.items[0].version, 1);

    // The watermark alone: advanced under its version; a stale writer cannot lower it.
    let wm2 = watermark(&g, T0 + 120_000, 2);
    assert_eq!(
        store.commit(&[], Some(&wm2)).await.expect("commit"),
        Commit::Done
    );
    let stale = watermark(&g, T0 + 60_000, 2);
    assert_eq!(
        store.commit(&[], Some(&stale)).await.expect("commit"),
        Commit::Conflict
    );
    let fresh = store
        .load(&[], std::slice::from_ref(&g))
        .await
        .expect("load");
    assert_eq!(fresh.watermarks, vec![wm2.watermark.clone()]);
    // A watermark write in a transaction whose item conflicts is not applied either.
    let wm3 = watermark(&g, T0 + 180_000, 3);
    let conflicting = item(&anchor_key, 1, &[9.0]);
    assert_eq!(
        store
            .commit(&[write(&conflicting)], Some(&wm3))
            .await
            .expect("commit"),
        Commit::Conflict
    );
    let fresh = store
        .load(&[], std::slice::from_ref(&g))
        .await
        .expect("load");
    assert_eq!(fresh.watermarks, vec![wm2.watermark]);
    common::drop_table(&c, store.table()).await;
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
    let mut it = item(&k, 1, &[1e100, -1e100, 2.5, 1e-125]);
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
            .commit(&[w], Some(&watermark(&g, T0, 1)))
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
        .map(|n| write(&item(&minute(n), 1, &[n as f64])))
        .collect();
    writes.push(write(&item(&key(&g, 3600, T0), 1, &[0.0, 1.0, 2.0])));
    let mut anchor = item(&minute(3), 1, &[3.0]);
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
            .commit(&writes, Some(&watermark(&g, T0, 1)))
            .await
            .expect("commit"),
        Commit::Done
    );
    assert_eq!(
        store
            .commit(&[write(&item(&key(&h, 60, T0), 1, &[1.0]))], None)
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
        let writes: Vec<ItemWrite> = chunk.iter().map(|k| write(&item(k, 1, &[1.0]))).collect();
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
        .commit(&[write(&item(&key(&group("k"), 60, T0), 1, &[1.0]))], None)
        .await
        .expect_err("no such table");
    assert!(
        !err.is_retryable() && err.to_string().contains(&table),
        "{err}"
    );
}
