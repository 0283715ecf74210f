//! Ingest handler: raw producer records in; valid events to the valid stream (keyed by
//! `key`), rejected lines to the dead-letter stream. Generic over its ports; the binary
//! wires Kinesis sinks, the local runner in-process streams.

use sluice_core::config::IngestConfig;
use sluice_core::ports::{NoLedger, RecordSink, SystemClock};
pub use sluice_core::stage::ingest::Ingest;

/// The stage as deployed: no ledger (metrics only) and the system clock.
pub type IngestHandler<O, D> = Ingest<O, D, NoLedger, SystemClock>;

pub fn handler<O: RecordSink, D: RecordSink>(
    output: O,
    dead_letters: D,
    config: IngestConfig,
) -> IngestHandler<O, D> {
    Ingest {
        output,
        dead_letters,
        ledger: NoLedger,
        clock: SystemClock,
        config,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::kinesis::KinesisEvent;
    use sluice_core::ports::SystemClock;
    use sluice_local::streams::MemoryStreams;

    use super::*;

    const FIXTURE: &str = include_str!("../../../events/ingest/mixed.json");

    #[tokio::test]
    async fn fixture_mixed_batch_splits_into_valid_and_dead_letters() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("valid", 2);
        streams.create("dlq", 1);
        let stage = handler(
            streams.sink("valid"),
            streams.sink("dlq"),
            IngestConfig::default(),
        );
        let event: KinesisEvent = serde_json::from_str(FIXTURE).expect("fixture is a KinesisEvent");
        let (response, outcome) = sluice_core::lambda::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.events_in, 10);
        assert_eq!(outcome.stats.passed_on, 4);

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
        let mut ids: Vec<&str> = valid
            .iter()
            .map(|v| v["id"].as_str().expect("id"))
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["t-1", "t-2", "t-3", "t-4"]);
        let t1 = valid.iter().find(|v| v["id"] == "t-1").expect("t-1");
        assert_eq!(
            t1["ts"], 1_767_225_605_000_i64,
            "RFC 3339 normalized to epoch ms"
        );
        assert_eq!(t1["attrs"]["unit"], "C");
        assert!(
            streams
                .records("valid")
                .iter()
                .all(|r| r.partition_key.starts_with("sensor-"))
        );

        let mut reasons: Vec<String> = streams
            .records("dlq")
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.data).expect("json");
                format!(
                    "{}:{}",
                    v["reason"].as_str().expect("reason"),
                    v["field"].as_str().unwrap_or("-")
                )
            })
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                "key_too_long:key",
                "missing_field:key",
                "non_finite_value:value",
                "not_json:-",
                "ts_out_of_range:ts",
                "wrong_type:value",
            ]
        );
    }
}
