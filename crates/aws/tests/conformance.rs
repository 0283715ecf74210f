//! The shared conformance suite (`sluice_core::testing::conformance`) on the AWS
//! adapters, over the loopback servers (kinesis-local for Kinesis, moto for DynamoDB;
//! see infra/local/up): the same checks the in-memory adapters pass
//! (`crates/local/tests/conformance.rs`), each on a table or stream of its own.
//!
//! What the servers enforce (probed with boto3 against the pinned versions):
//! - kinesis-local 0.6.2: record data over 1 MiB (data alone, not data + key) is a
//!   per-entry `InvalidArgumentException`; a partition key outside 1..=256 characters
//!   fails the whole request (`InvalidArgumentException`). It accepts 501 records and
//!   more than 5 MiB in one `PutRecords`: those two limits are tested through what the
//!   sink sends (the harness records every request; never more than 500 records or
//!   5 MiB).
//! - moto 5.2.5: an item over its own sizing's 405,000 bytes (AWS: 409,600; moto counts
//!   binary values in base64 and numbers as text) is a `ValidationException`, also
//!   inside a transaction; so the largest item stored here is 400,000 bytes, padded
//!   with a string (which moto sizes as DynamoDB does). More than 100 actions, two
//!   actions on one item, more than 100 keys in a `BatchGetItem` and a partition key
//!   over 2048 bytes are `ValidationException`s; a `BatchGetItem` answer stops at
//!   16 MB with the rest in `UnprocessedKeys`. It accepts transactions over 4 MB: that
//!   limit is shown by the adapter's own check only.
//!
//! The suite shows the adapter refusing to send what is over a limit; that the server's
//! own rejection of a request sent past the adapter is classified as the same
//! `LimitExceeded` is AWS-only: `server_limits.rs`.
#![cfg(feature = "integration")]

mod common;

use std::sync::Mutex;

use sluice_aws::kinesis::{KinesisShardSource, KinesisSink, PutRecordsApi, PutResult};
use sluice_core::Result;
use sluice_core::input::record::OutRecord;
use sluice_core::state::limits::kinesis;
use sluice_core::testing::conformance::{Harness, Stream};

/// Forwards to the real client and records the size of every request.
struct Recording {
    inner: aws_sdk_kinesis::Client,
    requests: Mutex<Vec<(usize, usize)>>,
}

impl PutRecordsApi for Recording {
    async fn put_records(&self, stream: &str, records: &[&OutRecord]) -> Result<Vec<PutResult>> {
        let bytes = records.iter().map(|r| kinesis::record_bytes(r)).sum();
        self.requests
            .lock()
            .expect("lock")
            .push((records.len(), bytes));
        PutRecordsApi::put_records(&self.inner, stream, records).await
    }
}

struct KinesisStream {
    c: common::Clients,
    name: String,
    sink: KinesisSink<Recording>,
    source: KinesisShardSource,
}

impl Harness for KinesisStream {
    async fn finish(self) {
        self.c
            .provisioner()
            .delete_stream(&self.name)
            .await
            .expect("delete stream");
    }
}

impl Stream for KinesisStream {
    type Sink = KinesisSink<Recording>;
    type Source = KinesisShardSource;
    fn sink(&self) -> &Self::Sink {
        &self.sink
    }
    fn source(&self) -> &KinesisShardSource {
        &self.source
    }
    fn requests(&self) -> Option<Vec<(usize, usize)>> {
        Some(self.sink.api().requests.lock().expect("lock").clone())
    }
}

async fn stream() -> KinesisStream {
    let c = common::clients().await;
    let (name, source) = common::stream(&c, "sluice-it-conf").await;
    let api = Recording {
        inner: c.kinesis.clone(),
        requests: Mutex::new(Vec::new()),
    };
    let sink = KinesisSink::with_api(api, &name);
    KinesisStream {
        c,
        name,
        sink,
        source,
    }
}

sluice_core::conformance_suite!(table: common::DynamoTable::new("sluice-it-conf"), stream: stream());
