//! The aggregate stage over moto's DynamoDB (see infra/local/up): the cases where the
//! real service's limits and errors matter (a backfill that needs more than one
//! transaction, a corrupt stored item confined to one group).
#![cfg(feature = "integration")]

mod common;

use std::sync::Mutex;

use aws_sdk_dynamodb::types::AttributeValue;
use sluice_core::config::AggregateConfig;
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::envelope::Reason;
use sluice_core::input::record::{OutRecord, StreamRecord};
use sluice_core::ports::{AggregateStore, RecordSink, SystemClock};
use sluice_core::stage::Stage;
use sluice_core::stage::aggregate::Aggregate;
use sluice_core::state::item::{GroupKey, ItemKey, WindowUpdate};
use sluice_core::state::window::WindowSpec;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

#[derive(Default)]
struct Collect {
    records: Mutex<Vec<OutRecord>>,
}

impl Collect {
    fn lines(&self) -> Vec<serde_json::Value> {
        let records = self.records.lock().expect("lock");
        records
            .iter()
            .flat_map(|r| {
                r.data
                    .split(|b| *b == b'\n')
                    .map(|l| serde_json::from_slice(l).expect("json"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl RecordSink for Collect {
    fn stream_name(&self) -> &str {
        "collect"
    }
    async fn put_records(&self, records: Vec<OutRecord>) -> sluice_core::Result<()> {
        self.records.lock().expect("lock").extend(records);
        Ok(())
    }
}

fn records(events: &[(&str, String, i64)]) -> Vec<StreamRecord> {
    events
        .iter()
        .enumerate()
        .map(|(i, (key, id, ts))| {
            let line = serde_json::json!({
                "id": id, "key": key, "type": "t", "ts": ts, "value": 1.0, "origin": format!("o-{id}"),
            });
            StreamRecord {
                stream: "enriched".into(),
                shard_id: "shardId-000000000000".into(),
                sequence_number: format!("{:056}", i + 1),
                partition_key: (*key).to_owned(),
                data: line.to_string().into_bytes(),
                arrival_ms: T0,
            }
        })
        .collect()
}

fn key(k: &str, secs: i64, start_ms: i64) -> ItemKey {
    ItemKey {
        group: GroupKey {
            key: k.into(),
            metric: "t".into(),
        },
        window: WindowSpec::tumbling(secs),
        start_ms,
    }
}

#[tokio::test]
async fn a_backfill_of_98_minutes_of_one_key_is_counted_over_the_wire() {
    let (c, store) = common::aggregates_table("sluice-it-backfill").await;
    let stage = Aggregate::new(
        store.clone(),
        Collect::default(),
        Collect::default(),
        SystemClock,
        AggregateConfig::default(),
    );
    let events: Vec<(&str, String, i64)> = (0..98)
        .map(|i| ("k", format!("e{i}"), T0 + i * MINUTE))
        .collect();
    let batch = records(&events);
    let out = stage.process(&batch, None).await;
    assert!(out.is_complete(), "{:?}", out.failure);
    assert_eq!(out.stats.counted, 98);
    assert_eq!(out.stats.transactions, 2, "101 actions do not fit in one");
    let loaded = store
        .load(&[key("k", 3600, T0), key("k", 3600, T0 + 60 * MINUTE)], &[])
        .await
        .expect("load");
    assert_eq!(loaded.items.iter().map(|i| i.state.count).sum::<u64>(), 98);
    // Delivered again: all duplicates, and every window is emitted again as a snapshot.
    let again = stage.process(&batch, None).await;
    assert_eq!(again.stats.duplicates, 98);
    let updates: Vec<WindowUpdate> = stage
        .updates
        .lines()
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a window update"))
        .collect();
    assert_eq!(updates.len(), 2 * 100);
    common::drop_table(&c, store.table()).await;
}

#[tokio::test]
async fn a_corrupt_stored_item_dead_letters_its_group_and_the_rest_is_counted() {
    let (c, store) = common::aggregates_table("sluice-it-corrupt").await;
    let bad = key("bad", 60, T0);
    c.dynamodb
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(bad.pk()))
        .item("sk", AttributeValue::S(bad.sk()))
        .item("count", AttributeValue::S("not a number".into()))
        .item("version", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("put a corrupt item");
    let stage = Aggregate::new(
        store.clone(),
        Collect::default(),
        Collect::default(),
        SystemClock,
        AggregateConfig::default(),
    );
    let batch = records(&[
        ("good", "1".into(), T0),
        ("bad", "2".into(), T0),
        ("good", "3".into(), T0 + MINUTE),
    ]);
    let out = stage.process(&batch, None).await;
    assert!(out.is_complete(), "{:?}", out.failure);
    assert_eq!(out.stats.counted, 2);
    let dead: Vec<DeadLetter> = stage
        .dead_letters
        .lines()
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a dead letter"))
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, Reason::Unprocessable);
    assert_eq!(dead[0].id.as_deref(), Some("2"));
    assert!(dead[0].detail.contains("t#bad"), "{}", dead[0].detail);
    common::drop_table(&c, store.table()).await;
}
