//! Fixtures for tests of the DynamoDB and Kinesis adapters, shared by the in-memory
//! adapters' tests (`sluice-local`) and the AWS adapters' (`sluice-aws`), and the
//! [`conformance`] suite both run. Built only with the `testing` feature (the crates'
//! dev-dependencies turn it on).

pub mod conformance;

use crate::input::record::{OutRecord, StreamRecord};
use crate::ports::ShardSource;
use crate::state::item::{
    AggregateItem, GroupKey, GroupWatermark, ItemKey, ItemWrite, WatermarkWrite,
};
use crate::state::limits::dynamodb::aggregate_item_size;
use crate::state::sequence::SeqNo;
use crate::state::window::WindowSpec;

/// 2026-01-01T00:00:00Z in epoch milliseconds.
pub const T0: i64 = 1_767_225_600_000;

/// The group of `key` for the metric `temp`.
pub fn group(key: &str) -> GroupKey {
    GroupKey {
        key: key.into(),
        metric: "temp".into(),
    }
}

/// The one-minute tumbling window of `g` starting `minute` minutes after [`T0`].
pub fn key(g: &GroupKey, minute: i64) -> ItemKey {
    ItemKey {
        group: g.clone(),
        window: WindowSpec::tumbling(60),
        start_ms: T0 + minute * 60_000,
    }
}

/// A new item (version 1) of two values.
pub fn new_item(k: &ItemKey) -> AggregateItem {
    let mut item = AggregateItem::new(k.clone());
    item.version = 1;
    item.state = [1.5, 2.5].into_iter().collect();
    item
}

/// `item` grown to exactly `bytes` stored bytes by the name of one high-water shard
/// `s…` (a string, which every server sizes as DynamoDB does).
pub fn pad_to(mut item: AggregateItem, bytes: usize) -> AggregateItem {
    let seq = SeqNo::parse("1").expect("seq");
    item.high_water.insert("s".into(), seq.clone());
    let base = aggregate_item_size(&item);
    assert!(base <= bytes, "{base} > {bytes}");
    item.high_water.clear();
    item.high_water
        .insert(format!("s{}", "x".repeat(bytes - base)), seq);
    assert_eq!(aggregate_item_size(&item), bytes);
    item
}

/// The write of a new `item` (expected version 0, no sealed pages).
pub fn write(item: &AggregateItem) -> ItemWrite {
    ItemWrite {
        item: item.clone(),
        expected_version: 0,
        sealed_page: Vec::new(),
    }
}

/// The write of a new watermark of `g` at [`T0`].
pub fn watermark(g: &GroupKey) -> WatermarkWrite {
    WatermarkWrite {
        watermark: GroupWatermark {
            group: g.clone(),
            watermark_ms: T0,
            closed_from_ms: T0,
            last_record: None,
            version: 1,
        },
        expected_version: 0,
    }
}

/// Version `version` of the item at `k`, of `values`.
pub fn versioned(k: &ItemKey, version: u64, values: &[f64]) -> AggregateItem {
    let mut item = AggregateItem::new(k.clone());
    item.version = version;
    item.state = values.iter().copied().collect();
    item
}

/// The write of `item` over its previous version.
pub fn next_write(item: &AggregateItem) -> ItemWrite {
    ItemWrite {
        item: item.clone(),
        expected_version: item.version - 1,
        sealed_page: Vec::new(),
    }
}

/// Version `version` of the watermark of `g`, at `ms`.
pub fn watermark_at(g: &GroupKey, ms: i64, version: u64) -> WatermarkWrite {
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

/// A record of exactly `bytes` (data plus partition key).
pub fn record(key: &str, bytes: usize) -> OutRecord {
    OutRecord {
        partition_key: key.to_owned(),
        data: vec![b'x'; bytes - key.len()],
    }
}

/// Every record of an open stream, shard by shard, each shard oldest first.
pub async fn read_all<S: ShardSource>(source: &S) -> Vec<StreamRecord> {
    let mut all = Vec::new();
    for shard in source.shards().await.expect("shards") {
        let mut after: Option<String> = None;
        loop {
            let read = source
                .read(&shard.shard_id, after.as_deref(), 1000)
                .await
                .expect("read");
            assert!(!read.ended, "an open shard never ends");
            let Some(last) = read.records.last() else {
                break;
            };
            after = Some(last.sequence_number.clone());
            all.extend(read.records);
        }
    }
    all
}
