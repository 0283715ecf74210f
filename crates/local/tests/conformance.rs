//! The shared conformance suite (`sluice_core::testing::conformance`) on the in-memory
//! adapters: the aggregates store and the in-process streams' sink and source. The
//! AWS adapters run the same checks (`crates/aws/tests/conformance.rs`); what only the
//! in-memory adapters can show is in `memory_limits.rs`.
//!
//! In memory, an item of exactly 409,600 bytes is stored (moto stops earlier), the
//! store's meter counts `BatchGetItem` requests as DynamoDB would split them, and the
//! in-process stream rejects any request over 500 records or 5 MiB itself, so all the
//! sink wrote was within the limits.

use std::future::Future;
use std::sync::Arc;

use sluice_core::ports::SystemClock;
use sluice_core::state::item::AggregateItem;
use sluice_core::state::limits::dynamodb as ddb;
use sluice_core::testing::conformance::{Harness, Stream, Table};
use sluice_local::store::MemoryAggregateStore;
use sluice_local::streams::{MemorySink, MemorySource, MemoryStreams};

struct MemoryTable(MemoryAggregateStore);

impl Harness for MemoryTable {}

impl Table for MemoryTable {
    type Store = MemoryAggregateStore;
    fn store(&self) -> &MemoryAggregateStore {
        &self.0
    }
    fn largest_item(&self) -> usize {
        ddb::MAX_ITEM_BYTES
    }
    fn items(&self) -> impl Future<Output = Vec<AggregateItem>> {
        std::future::ready(self.0.items())
    }
    fn batch_get_requests(&self) -> Option<u64> {
        Some(self.0.meter.batch_get_requests())
    }
}

struct MemoryStream {
    sink: MemorySink,
    source: MemorySource,
}

impl Harness for MemoryStream {}

impl Stream for MemoryStream {
    type Sink = MemorySink;
    type Source = MemorySource;
    fn sink(&self) -> &MemorySink {
        &self.sink
    }
    fn source(&self) -> &MemorySource {
        &self.source
    }
    fn requests(&self) -> Option<Vec<(usize, usize)>> {
        None
    }
}

async fn table() -> MemoryTable {
    MemoryTable(MemoryAggregateStore::new())
}

/// A stream of two shards.
async fn stream() -> MemoryStream {
    let streams = MemoryStreams::new(Arc::new(SystemClock));
    streams.create("s", 2);
    MemoryStream {
        sink: streams.sink("s"),
        source: streams.source("s"),
    }
}

sluice_core::conformance_suite!(table: table(), stream: stream());

/// The units of the suite's conditional-write sequence are the AWS adapter's estimate
/// for the same sequence (`crates/aws/tests/dynamodb.rs` asserts the same (6, 12)): a
/// write whose condition fails is charged, as DynamoDB charges it. The in-memory meter
/// used to charge nothing for it (6, 6), and so under-reported the units of conflicts.
#[tokio::test]
async fn conditional_writes_and_conflicts_cost_the_units_the_aws_adapter_estimates() {
    let table = table().await;
    sluice_core::testing::conformance::dynamodb_conditional_writes_conflict_on_a_stale_version(
        &table,
    )
    .await;
    let meter = &table.0.meter;
    assert_eq!((meter.read_units(), meter.write_units()), (6.0, 12.0));
}
