//! What one live item costs the in-memory aggregates table, measured with a counting
//! allocator on the `iot` demo's shape: 100 groups, minute anchors holding 12
//! fingerprints each, an hour item per group and hour, every item with a TTL. The
//! docs/performance.md's Volume section quotes the bound asserted here.
//!
//! Measured as resident memory (what `time -v` reports as peak RSS), so one test only:
//! it measures the whole process. The growth over 61,000 items is some 15 MB, far
//! above what the allocator's bookkeeping can move.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use sluice_core::ports::{AggregateStore, Commit};
use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
use sluice_core::state::statistics::AggState;
use sluice_core::state::window::WindowSpec;
use sluice_local::store::MemoryAggregateStore;

/// Resident memory of this process in bytes (Linux: `/proc/self/statm`, in pages of
/// 4 KiB).
fn resident_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// The store's futures never wait: poll once.
fn now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the in-memory store does not wait"),
    }
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const GROUPS: usize = 100;
const FINGERPRINTS: u64 = 12;

fn group(i: usize) -> GroupKey {
    GroupKey {
        key: format!("sensor-{:03}", i / 2),
        metric: ["temperature", "humidity"][i % 2].into(),
    }
}

fn item(group: GroupKey, window: WindowSpec, start_ms: i64, fps: u64) -> AggregateItem {
    let mut item = AggregateItem::new(ItemKey {
        group,
        window,
        start_ms,
    });
    item.version = 1;
    item.state = AggState::of(21.5);
    item.fingerprints
        .extend((0..fps).map(|f| (start_ms as u64) ^ f));
    item.expires_at_s = Some((start_ms + window.size_ms) / 1000 + 30 * 86_400);
    item
}

/// Writes `minutes` of every group's minute items (and their hour items as the hour
/// turns), the way the aggregate stage would.
fn write_minutes(store: &MemoryAggregateStore, from: i64, minutes: i64) {
    let (minute, hour) = (WindowSpec::tumbling(60), WindowSpec::tumbling(3600));
    for m in from..from + minutes {
        let start = T0 + m * 60_000;
        for g in 0..GROUPS {
            let mut writes = vec![ItemWrite {
                item: item(group(g), minute, start, FINGERPRINTS),
                expected_version: 0,
                sealed_page: Vec::new(),
            }];
            if m % 60 == 0 {
                writes.push(ItemWrite {
                    item: item(group(g), hour, start, 0),
                    expected_version: 0,
                    sealed_page: Vec::new(),
                });
            }
            let done = now(store.commit(&writes, None)).expect("fits");
            assert_eq!(done, Commit::Done);
        }
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_live_item_costs_under_300_bytes_of_memory() {
    let store = MemoryAggregateStore::new();
    // Warm up: the groups, windows and the first tree nodes.
    write_minutes(&store, 0, 60);
    let before = resident_bytes();
    let items_before = store.item_count();
    write_minutes(&store, 60, 600);
    let grown = resident_bytes() - before;
    let items = (store.item_count() - items_before) as i64;
    assert_eq!(items, 600 * GROUPS as i64 + 10 * GROUPS as i64);
    let per_item = grown / items;
    eprintln!("{grown} bytes for {items} items: {per_item} bytes per item");
    // 12 fingerprints are 96 bytes of it: state DynamoDB holds too.
    assert!(per_item <= 300, "{per_item} bytes per item");
    // Reading the table's views does not copy it: what they allocate is theirs.
    let views = store.views();
    assert_eq!(views.len(), store.item_count());
}
