//! The detect stage's history read (`WindowHistory::closed_windows`, one `Query`) and the
//! watermark's closing range, against moto's DynamoDB (see infra/local/up).
#![cfg(feature = "integration")]

mod common;

use sluice_aws::DynamoAggregateStore;
use sluice_core::ports::{AggregateStore, Commit, WindowHistory};
use sluice_core::resources::AGGREGATES_TABLE;
use sluice_core::state::item::{
    AggregateItem, ClosingRange, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite,
};
use sluice_core::state::sequence::SeqNo;
use sluice_core::state::window::WindowSpec;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

fn group(key: &str) -> GroupKey {
    GroupKey {
        key: key.into(),
        metric: "temp".into(),
    }
}

/// A first write of one item of `window` starting at `start_ms` with `count` events
/// (and as many fingerprints: the read must leave them out).
fn write(g: &GroupKey, window: WindowSpec, start_ms: i64, count: u64) -> ItemWrite {
    let mut item = AggregateItem::new(ItemKey {
        group: g.clone(),
        window,
        start_ms,
    });
    item.version = 1;
    item.state = (0..count).map(|v| v as f64).collect();
    item.fingerprints.extend(0..count * 10);
    ItemWrite {
        item,
        expected_version: 0,
        sealed_page: Vec::new(),
    }
}

#[tokio::test]
async fn history_is_one_group_and_size_newest_first_with_the_lookback() {
    let c = common::clients().await;
    let table = common::unique("sluice-it-history");
    c.provisioner()
        .ensure_table(&table, &AGGREGATES_TABLE)
        .await
        .expect("table");
    let store = DynamoAggregateStore::new(c.dynamodb.clone(), &table);
    let (g, other) = (group("sensor-1"), group("sensor-10"));
    let minute = WindowSpec::tumbling(60);
    // Minutes 0..40 of the group but 7 (no data), its hour, a 600 s window (label
    // `600` starts like `60`), a hopping 120/60 window, the same minutes of another
    // group whose partition key extends this one's, and a watermark.
    let mut writes: Vec<ItemWrite> = (0..40)
        .filter(|m| *m != 7)
        .map(|m| write(&g, minute, T0 + m * MINUTE, m as u64 + 1))
        .collect();
    writes.push(write(&g, WindowSpec::tumbling(3600), T0, 500));
    writes.push(write(&g, WindowSpec::tumbling(600), T0, 500));
    writes.push(write(
        &g,
        WindowSpec::hopping(120, 60),
        T0 + 5 * MINUTE,
        500,
    ));
    writes.extend((0..40).map(|m| write(&other, minute, T0 + m * MINUTE, 1000)));
    for chunk in writes.chunks(90) {
        assert_eq!(
            store.commit(chunk, None).await.expect("commit"),
            Commit::Done
        );
    }
    let wm = WatermarkWrite {
        watermark: GroupWatermark {
            group: g.clone(),
            watermark_ms: T0 + 39 * MINUTE,
            closed_from_ms: T0 + 9 * MINUTE,
            last_record: Some((
                "shardId-000000000000".into(),
                SeqNo::parse("49590338271490256608559692538361571095921575989136588898")
                    .expect("digits"),
            )),
            version: 1,
        },
        expected_version: 0,
    };
    assert_eq!(
        store.commit(&[], Some(&wm)).await.expect("watermark"),
        Commit::Done
    );
    let loaded = store
        .load(&[], std::slice::from_ref(&g))
        .await
        .expect("load");
    assert_eq!(
        loaded.watermarks,
        vec![wm.watermark.clone()],
        "closing state round-trips"
    );

    // Windows ending in [10 min, 14 min): minutes 9..=12; lookback 3: 8, 6, 5 (7 has no data).
    let closing = ClosingRange {
        from_ms: T0 + 10 * MINUTE,
        to_ms: T0 + 14 * MINUTE,
    };
    let (reads_before, _) = store.estimated_units();
    let got = store
        .closed_windows(&g, 60, closing, 3)
        .await
        .expect("query");
    let starts: Vec<i64> = got.iter().map(|w| (w.window_start - T0) / MINUTE).collect();
    assert_eq!(starts, [12, 11, 10, 9, 8, 6, 5]);
    assert!(
        got.iter()
            .all(|w| w.key == "sensor-1" && w.metric == "temp")
    );
    assert!(
        got.iter()
            .all(|w| (w.window_seconds, w.slide_seconds) == (60, 60))
    );
    assert_eq!(
        (got[0].count, got[0].sum),
        (13, (0..13).sum::<u64>() as f64)
    );
    let (reads_after, _) = store.estimated_units();
    assert!(
        reads_after - reads_before <= 2.0,
        "a few small items, strongly consistent: {}",
        reads_after - reads_before
    );

    // The hour: ends in [1 h, 2 h) closes it; it has no earlier hour.
    let hours = store
        .closed_windows(
            &g,
            3600,
            ClosingRange {
                from_ms: T0 + 60 * MINUTE,
                to_ms: T0 + 120 * MINUTE,
            },
            20,
        )
        .await
        .expect("query");
    assert_eq!(hours.len(), 1);
    assert_eq!((hours[0].window_start, hours[0].count), (T0, 500));

    // A range with no window with data: nothing, not even history.
    let none = store
        .closed_windows(
            &g,
            60,
            ClosingRange {
                from_ms: T0 + 8 * MINUTE,
                to_ms: T0 + 8 * MINUTE + 1,
            },
            20,
        )
        .await
        .expect("query");
    assert!(none.is_empty(), "{none:?}");

    // A long backfill range and a lookback longer than the history: everything there is.
    let all = store
        .closed_windows(
            &g,
            60,
            ClosingRange {
                from_ms: T0 + 20 * MINUTE,
                to_ms: T0 + 41 * MINUTE,
            },
            1000,
        )
        .await
        .expect("query");
    assert_eq!(all.len(), 39);
    assert!(
        all.windows(2)
            .all(|p| p[0].window_start > p[1].window_start)
    );

    c.provisioner()
        .delete_table(&table)
        .await
        .expect("delete table");
}
