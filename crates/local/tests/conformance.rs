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
