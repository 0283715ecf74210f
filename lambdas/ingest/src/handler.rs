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

    /// The raw lines of `events/sql/ingest.json`: payments for examples/payments.sql, a
    /// payment the producer sent twice, a line that is not JSON and one whose amount is
    /// not a number.
    const SQL_RAW_LINES: [&str; 8] = [
        r#"{"id": "p-1", "merchant": {"id": "m-1", "country": "DE"}, "amount": 12.5, "card": {"brand": "visa"}, "ms": 1767225600000}"#,
        r#"{"id": "p-2", "merchant": {"id": "m-2", "country": "DE"}, "amount": 150, "card": {"brand": "mc"}, "ms": 1767225610000}"#,
        r#"{"id": "p-2", "merchant": {"id": "m-2", "country": "DE"}, "amount": 150, "card": {"brand": "mc"}, "ms": 1767225610000}"#,
        "not json",
        r#"{"id": "p-x", "merchant": {"id": "m-1", "country": "DE"}, "amount": "lots", "card": {"brand": "visa"}, "ms": 1767225620000}"#,
        r#"{"id": "p-3", "merchant": {"id": "m-9", "country": "FR"}, "amount": 7.25, "card": {"brand": "test"}, "ms": 1767225670000}"#,
        r#"{"id": "p-4", "merchant": {"id": "m-1", "country": "FR"}, "amount": 3, "card": {"brand": "visa"}, "ms": 1767225680000}"#,
        r#"{"id": "p-5", "merchant": {"id": "m-2", "country": "FR"}, "amount": 250, "card": {"brand": "visa"}, "ms": 1767225730000}"#,
    ];

    fn sql_events() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/sql")
    }

    /// events/sql/ingest.json under examples/payments.sql: valid lines pass on as source
    /// lines (ids from the PRIMARY KEY), the unreadable ones are dead letters naming what
    /// is wrong; what passes on is events/sql/enrich.json, record for record.
    #[tokio::test]
    async fn fixture_sql_raw_lines_become_source_lines_or_dead_letters() {
        use sluice_local::fixtures::{SHARD, assert_fixture, kinesis_event, sequence_number};

        let raw: Vec<(String, Vec<u8>)> = SQL_RAW_LINES
            .iter()
            .map(|l| ("payments".to_owned(), l.as_bytes().to_vec()))
            .collect();
        let path = sql_events().join("ingest.json");
        assert_fixture(&path, &kinesis_event("ingest", "sluice-raw", &raw));
        let fixture = std::fs::read_to_string(&path).expect("events/sql/ingest.json");

        let pipeline = Arc::new(
            sluice_core::stage::sql::SqlPipeline::load(include_str!(
                "../../../examples/payments.sql"
            ))
            .expect("examples/payments.sql loads"),
        );
        let streams = MemoryStreams::new(Arc::new(SystemClock));
        streams.create("valid", 1);
        streams.create("dlq", 1);
        let stage = handler(
            streams.sink("valid"),
            streams.sink("dlq"),
            IngestConfig::default(),
        )
        .with_sql(pipeline.clone());
        let event: KinesisEvent = serde_json::from_str(&fixture).expect("a KinesisEvent");
        let (response, outcome) =
            sluice_core::stage::lambda_event::handle(&stage, &event, None).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(outcome.stats.events_in, 8);
        assert_eq!(outcome.stats.passed_on, 6);

        // Each valid line passes on unchanged, with its PRIMARY KEY as its id (the resent
        // p-2 too: aggregate, not ingest, collapses it) and its origin.
        let valid = lines(&streams, "valid");
        // A PRIMARY KEY's key text is a JSON array, carried as it is.
        let passed: Vec<(String, &str)> = valid
            .iter()
            .map(|v| (v["id"].to_string(), v["origin"].as_str().expect("origin")))
            .collect();
        let origin = |n: usize| format!("{SHARD}:{}:0", sequence_number(n));
        let expected: Vec<(&str, String)> = vec![
            (r#"["p-1"]"#, origin(1)),
            (r#"["p-2"]"#, origin(2)),
            (r#"["p-2"]"#, origin(3)),
            (r#"["p-3"]"#, origin(6)),
            (r#"["p-4"]"#, origin(7)),
            (r#"["p-5"]"#, origin(8)),
        ];
        assert_eq!(
            passed,
            expected
                .iter()
                .map(|(id, o)| ((*id).to_owned(), o.as_str()))
                .collect::<Vec<_>>()
        );
        // Each valid line passes on typed: its physical columns' encodings, in order.
        assert_eq!(
            valid[0]["r"],
            serde_json::json!([
                "p-1",
                ["m-1", "DE"],
                "12.50",
                ["visa"],
                1_767_225_600_000_i64
            ])
        );
        let ctx = sluice_core::sql::EvalContext { now_ms: 0 };
        for (line, raw) in valid.iter().zip([0, 1, 2, 5, 6, 7]) {
            let read = pipeline
                .program
                .source_row(SQL_RAW_LINES[raw].as_bytes(), &ctx)
                .expect("a raw line");
            let passed = pipeline
                .program
                .source_row_encoded(&line["r"].to_string(), &pipeline.computed_kept, &ctx)
                .expect("an encoded row");
            let physical = pipeline.program.physical_columns().len();
            assert_eq!(
                passed[..physical],
                read[..physical],
                "{}",
                SQL_RAW_LINES[raw]
            );
        }
        assert!(
            streams
                .records("valid")
                .iter()
                .all(|r| r.partition_key == "payments"),
            "keyed by the raw record's partition key"
        );

        let dead: Vec<(String, String, String)> = lines(&streams, "dlq")
            .iter()
            .map(|v| {
                let text = |k: &str| v[k].as_str().expect("a string").to_owned();
                (text("reason"), text("detail"), text("origin"))
            })
            .collect();
        assert_eq!(
            dead,
            [
                (
                    "not_json".to_owned(),
                    "the record is not a JSON object: expected ident at line 1 column 2".to_owned(),
                    origin(4)
                ),
                (
                    "wrong_type".to_owned(),
                    "column `amount`: \"lots\" cannot be read as DECIMAL(12, 2)".to_owned(),
                    origin(5)
                ),
            ]
        );

        let written: Vec<(String, Vec<u8>)> = streams
            .records("valid")
            .into_iter()
            .map(|r| (r.partition_key, r.data))
            .collect();
        assert_fixture(
            &sql_events().join("enrich.json"),
            &kinesis_event("enrich", "sluice-valid", &written),
        );
    }
}
