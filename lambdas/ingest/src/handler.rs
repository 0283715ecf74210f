//! Ingest handler: raw producer records in; valid events to the valid stream (keyed by
//! `key`), rejected lines to the dead-letter stream. Generic over its ports; the binary
//! wires Kinesis sinks, the local runner in-process streams.

use sluice_core::config::IngestConfig;
use sluice_core::ports::{Clock, RecordSink, SystemClock};
pub use sluice_core::stage::ingest::Ingest;

/// The stage as deployed, on the system clock.
pub type IngestHandler<O, D> = Ingest<O, D, SystemClock>;

/// The stage as the Lambda binary builds it.
pub fn handler<O: RecordSink, D: RecordSink>(
    output: O,
    dead_letters: D,
    config: IngestConfig,
) -> IngestHandler<O, D> {
    handler_with_clock(output, dead_letters, SystemClock, config)
}

/// The same stage on another clock (the local runner passes its wall clock, tests a
/// fixed one): the one place the stage is assembled, for the binary and `sluice`.
pub fn handler_with_clock<O: RecordSink, D: RecordSink, C: Clock>(
    output: O,
    dead_letters: D,
    clock: C,
    config: IngestConfig,
) -> Ingest<O, D, C> {
    Ingest::new(output, dead_letters, clock, config)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lambda_events::event::kinesis::KinesisEvent;
    use sluice_core::ports::SystemClock;
    use sluice_local::streams::MemoryStreams;

    use super::*;

    const FIXTURE: &str = include_str!("../../../events/ingest/mixed.json");
    /// Made by the reference KPL library and gzip (infra/producers/kpl_fixture.py).
    const KPL_FIXTURE: &str = include_str!("../../../events/ingest/kpl.json");

    fn lines(streams: &MemoryStreams, stream: &str) -> Vec<serde_json::Value> {
        streams
            .records(stream)
            .iter()
            .flat_map(|r| {
                r.data
                    .split(|b| *b == b'\n')
                    .map(|l| serde_json::from_slice(l).expect("json"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn fixture_kpl_aggregate_gzip_and_corrupt_aggregate() {
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("valid", 2);
        streams.create("dlq", 1);
        let stage = handler(
            streams.sink("valid"),
            streams.sink("dlq"),
            IngestConfig::default(),
        );
        let event: KinesisEvent =
            serde_json::from_str(KPL_FIXTURE).expect("fixture is a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        // 6 lines in 5 user records, 2 gzip lines, 1 corrupt aggregate.
        assert_eq!(outcome.stats.events_in, 9);
        assert_eq!(outcome.stats.passed_on, 7);

        let valid = lines(&streams, "valid");
        let mut ids: Vec<&str> = valid
            .iter()
            .map(|v| v["id"].as_str().expect("id"))
            .collect();
        ids.sort_unstable();
        let seq = "49590338271490256608559692538361571095921575989136000001";
        let derived_2 = format!("shardId-000000000000:{seq}:2:0");
        let derived_3 = format!("shardId-000000000000:{seq}:3:0");
        let mut expected = vec![
            "gz-1",
            "gz-2",
            "kpl-1",
            "kpl-2",
            "kpl-3",
            derived_2.as_str(),
            derived_3.as_str(),
        ];
        expected.sort_unstable();
        assert_eq!(
            ids, expected,
            "two identical id-less user records, two events"
        );
        let kpl3 = valid.iter().find(|v| v["id"] == "kpl-3").expect("kpl-3");
        assert_eq!(
            kpl3["origin"],
            format!("shardId-000000000000:{seq}:1:1"),
            "line 1 of user record 1"
        );
        let gz2 = valid.iter().find(|v| v["id"] == "gz-2").expect("gz-2");
        assert_eq!(
            gz2["origin"],
            "shardId-000000000000:49590338271490256608559692538361571095921575989136000002:1"
        );

        let dead = lines(&streams, "dlq");
        let mut reasons: Vec<&str> = dead
            .iter()
            .map(|v| v["reason"].as_str().expect("reason"))
            .collect();
        reasons.sort_unstable();
        assert_eq!(reasons, ["corrupt_aggregate", "not_json"]);
        let junk = dead
            .iter()
            .find(|v| v["reason"] == "not_json")
            .expect("junk");
        assert_eq!(junk["origin"], format!("shardId-000000000000:{seq}:4:0"));
        assert_eq!(junk["data"], "bm90IGpzb24=", "the user record's own bytes");
    }

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
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
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
