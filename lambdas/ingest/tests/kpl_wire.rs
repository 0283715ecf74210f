//! Records made by real producer libraries, over the wire: `infra/producers/kpl_put.py`
//! writes KPL aggregates (the reference `aws-kinesis-agg` library), gzip records and one
//! corrupt aggregate to a stream on the loopback Kinesis (boto3); the ingest stage reads
//! that stream through the same shard source `sluice run` uses and must count every user
//! record exactly. Needs `eval "$(infra/local/up)"` (endpoints and the producer venv).
#![cfg(feature = "integration")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_aws::{KinesisShardSource, Provisioner};
use sluice_core::config::IngestConfig;
use sluice_core::input::envelope::Reason;
use sluice_core::input::record::StreamRecord;
use sluice_core::ports::SystemClock;
use sluice_core::stage::Stage;
use sluice_core::stage::outcome::{Accounting, Booking, Fate};
use sluice_core::testing::read_all;
use sluice_local::streams::MemoryStreams;

#[derive(Default)]
struct Ledger {
    received: Mutex<Vec<String>>,
    settled: Mutex<BTreeMap<String, Fate>>,
}

impl Ledger {
    fn book(&self, records: &[StreamRecord], accounting: &Accounting) {
        for booking in accounting.bookings(records) {
            match booking {
                Booking::Received(origin) => self.received.lock().expect("lock").push(origin),
                Booking::Settled(origin, fate) => {
                    self.settled.lock().expect("lock").insert(origin, fate);
                }
                Booking::InDoubt(_) => {}
            }
        }
    }
}

fn env(var: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{var} is not set: start the local servers first with eval \"$(infra/local/up)\""
            )
        })
}

fn unique(prefix: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", ms % 100_000_000, std::process::id())
}

/// Runs the producer script; returns what it says it wrote.
fn produce(stream: &str) -> serde_json::Value {
    let python = env("SLUICE_PRODUCER_PYTHON");
    env("AWS_ENDPOINT_URL_KINESIS");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/producers/kpl_put.py");
    let out = Command::new(python)
        .arg(script)
        .args([
            "--stream",
            stream,
            "--aggregates",
            "4",
            "--per-aggregate",
            "25",
        ])
        .args(["--gzip", "3", "--corrupt"])
        .output()
        .expect("the producer script runs");
    assert!(
        out.status.success(),
        "kpl_put.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the producer prints one JSON object")
}

#[tokio::test]
async fn kpl_and_gzip_records_from_the_reference_library_count_exactly() {
    let config = sluice_aws::sdk_config().await;
    let kinesis = sluice_aws::kinesis_client(&config);
    let provisioner = Provisioner::new(kinesis.clone(), sluice_aws::dynamodb_client(&config));
    let stream = unique("kpl-wire");
    provisioner.ensure_stream(&stream, 2).await.expect("stream");

    let wrote = produce(&stream);
    let source = KinesisShardSource::connect(kinesis, &stream)
        .await
        .expect("source");
    let records = read_all(&source).await;
    assert_eq!(
        records.len() as u64,
        wrote["kinesis_records"].as_u64().expect("count"),
        "every Kinesis record the producer wrote was read"
    );
    // The library really wrote the formats under test.
    let kpl = records
        .iter()
        .filter(|r| r.data.starts_with(&sluice_core::input::unpack::KPL_MAGIC))
        .count();
    let gz = records
        .iter()
        .filter(|r| r.data.starts_with(&sluice_core::input::unpack::GZIP_MAGIC))
        .count();
    assert_eq!((kpl, gz), (records.len() - 3, 3));
    assert!(kpl >= 5, "4 aggregates and a corrupt one");

    let streams = MemoryStreams::new(Arc::new(SystemClock));
    streams.create("valid", 1);
    streams.create("dlq", 1);
    let stage = sluice_ingest::handler(
        streams.sink("valid"),
        streams.sink("dlq"),
        IngestConfig::default(),
    );
    let ledger = Ledger::default();
    // Batches as an event source mapping would cut them.
    let mut stats = sluice_core::stage::outcome::StageStats::default();
    for batch in records.chunks(7) {
        let outcome = stage.process(batch, None).await;
        ledger.book(batch, &outcome.accounting);
        assert!(outcome.is_complete(), "{:?}", outcome.failure);
        stats += &outcome.stats;
    }

    let events = wrote["events"].as_u64().expect("events");
    assert_eq!(stats.passed_on, events, "every user record's events passed");
    assert_eq!(stats.dead_lettered.get(&Reason::CorruptAggregate), Some(&1));
    assert_eq!(stats.dead_lettered_total(), 1, "{:?}", stats.dead_lettered);

    let valid: Vec<serde_json::Value> = streams
        .records("valid")
        .iter()
        .flat_map(|r| {
            r.data
                .split(|b| *b == b'\n')
                .map(|l| serde_json::from_slice(l).expect("json"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(valid.len() as u64, events);
    let ids: BTreeSet<&str> = valid
        .iter()
        .map(|v| v["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids.len() as u64,
        events,
        "ids are distinct, derived ones too"
    );
    let produced: BTreeSet<&str> = wrote["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id"))
        .collect();
    assert!(produced.is_subset(&ids), "every producer id arrived");
    let derived = ids.len() - produced.len();
    assert_eq!(derived as u64, wrote["id_less"].as_u64().expect("id_less"));
    let origins: BTreeSet<&str> = valid
        .iter()
        .map(|v| v["origin"].as_str().expect("origin"))
        .collect();
    assert_eq!(origins.len() as u64, events, "one origin per event");
    // KPL user records carry their sub-sequence index: shard:sequence:sub:line.
    assert!(
        valid
            .iter()
            .filter(|v| v["id"].as_str().is_some_and(|id| !id.starts_with("kpl-")))
            .all(|v| v["origin"].as_str().expect("o").split(':').count() == 4)
    );

    // The ledger has one fate for each line: every received origin is either passed on
    // (settled downstream) or dead-lettered here.
    let received = ledger.received.lock().expect("lock").clone();
    assert_eq!(received.len() as u64, events + 1);
    assert_eq!(
        received.iter().collect::<BTreeSet<_>>().len(),
        received.len(),
        "no origin twice"
    );
    let settled = ledger.settled.lock().expect("lock").clone();
    assert_eq!(settled.len(), 1);
    assert!(
        settled
            .values()
            .all(|f| *f == Fate::DeadLetter(Reason::CorruptAggregate))
    );
    provisioner.delete_stream(&stream).await.expect("delete");
}
