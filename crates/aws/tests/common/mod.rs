//! Shared setup of the integration tests: they need the local endpoints that
//! `eval "$(infra/local/up)"` exports, and fail (not skip) without them.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_aws::kinesis::KinesisShardSource;
use sluice_aws::{DynamoAggregateStore, Provisioner};
use sluice_core::resources::AGGREGATES_TABLE;
use sluice_core::state::item::AggregateItem;
use sluice_core::testing::conformance::{Harness, Table};

pub struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Clients {
    pub fn provisioner(&self) -> Provisioner {
        Provisioner::new(self.kinesis.clone(), self.dynamodb.clone())
    }
}

/// Clients for the local servers; panics with instructions when they are not set up.
pub async fn clients() -> Clients {
    for var in [
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ACCESS_KEY_ID",
        "AWS_REGION",
    ] {
        let set = std::env::var(var).is_ok_and(|v| !v.is_empty());
        assert!(
            set,
            "{var} is not set: start the local servers first with eval \"$(infra/local/up)\""
        );
    }
    let config = sluice_aws::sdk_config().await;
    Clients {
        kinesis: sluice_aws::kinesis_client(&config),
        dynamodb: sluice_aws::dynamodb_client(&config),
    }
}

/// A name no other test (or run) uses: prefix, time, process id and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        ms % 100_000_000,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Clients, and a new aggregates table named after `prefix` (see [`unique`]) with the
/// store over it; [`drop_table`] removes it.
pub async fn aggregates_table(prefix: &str) -> (Clients, DynamoAggregateStore) {
    let c = clients().await;
    let name = unique(prefix);
    c.provisioner()
        .ensure_table(&name, &AGGREGATES_TABLE)
        .await
        .expect("table");
    let store = DynamoAggregateStore::new(c.dynamodb.clone(), &name);
    (c, store)
}

pub async fn drop_table(c: &Clients, table: &str) {
    c.provisioner()
        .delete_table(table)
        .await
        .expect("delete table");
}

/// A new stream of one shard named after `prefix` (see [`unique`]): its name and a
/// source reading it.
pub async fn stream(c: &Clients, prefix: &str) -> (String, KinesisShardSource) {
    let name = unique(prefix);
    c.provisioner()
        .ensure_stream(&name, 1)
        .await
        .expect("stream");
    let source = KinesisShardSource::connect(c.kinesis.clone(), &name)
        .await
        .expect("source");
    (name, source)
}

/// The largest item stored in moto: under its 405,000 bytes.
pub const MOTO_LARGEST_ITEM: usize = 400_000;

/// A new aggregates table as the conformance suite's harness
/// (`sluice_core::testing::conformance::Table`), dropped when the check is done.
pub struct DynamoTable {
    pub c: Clients,
    pub store: DynamoAggregateStore,
}

impl DynamoTable {
    pub async fn new(prefix: &str) -> Self {
        let (c, store) = aggregates_table(prefix).await;
        DynamoTable { c, store }
    }
}

impl Harness for DynamoTable {
    async fn finish(self) {
        drop_table(&self.c, self.store.table()).await;
    }
}

impl Table for DynamoTable {
    type Store = DynamoAggregateStore;
    fn store(&self) -> &DynamoAggregateStore {
        &self.store
    }
    fn largest_item(&self) -> usize {
        MOTO_LARGEST_ITEM
    }
    async fn items(&self) -> Vec<AggregateItem> {
        self.store.scan_all().await.expect("scan")
    }
    fn batch_get_requests(&self) -> Option<u64> {
        None
    }
}
