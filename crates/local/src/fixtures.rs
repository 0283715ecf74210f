//! Lambda-shaped Kinesis event payloads for `events/`, made from the records a stage
//! really wrote, so that one stage's output is the next stage's fixture.
//!
//! A fixture test builds the payload it expects and compares it with the file
//! ([`assert_fixture`]); `SLUICE_BLESS_FIXTURES=1` writes the file instead (run the
//! stages' tests in pipeline order: each reads the file the previous one wrote).

use std::path::Path;

use base64::Engine;
use serde_json::{Value, json};

/// The shard every fixture record is on.
pub const SHARD: &str = "shardId-000000000000";

/// The arrival time of every fixture record (2026-01-01T00:01:01.5Z), as Lambda writes
/// it: seconds with a fraction.
pub const ARRIVAL_SECONDS: f64 = 1_767_225_661.5;

/// The `n`th (from 1) sequence number of the fixtures' shard: 56 digits, as Kinesis'.
pub fn sequence_number(n: usize) -> String {
    format!("495903382714902566085596925383615710959215759891360{n:05}")
}

/// A Kinesis event as Lambda hands it to `function`, from `stream`: one record per
/// `(partition key, data)`, in order, with [`sequence_number`]s from 1. Pretty-printed,
/// ending in a newline (the shape of the other files under `events/`).
pub fn kinesis_event(function: &str, stream: &str, records: &[(String, Vec<u8>)]) -> String {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, (partition_key, data))| {
            let seq = sequence_number(i + 1);
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": partition_key,
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": ARRIVAL_SECONDS,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD}:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": format!("arn:aws:iam::123456789012:role/sluice-{function}-role"),
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"),
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&json!({ "Records": records }))
        .unwrap_or_else(|e| panic!("a JSON value always prints: {e}"));
    text.push('\n');
    text
}

/// Panics unless the file at `path` holds `expected`; with `SLUICE_BLESS_FIXTURES` set,
/// writes `expected` there instead.
pub fn assert_fixture(path: &Path, expected: &str) {
    if std::env::var_os("SLUICE_BLESS_FIXTURES").is_some() {
        std::fs::write(path, expected)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let found =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        found == expected,
        "{} is not what the stage makes now; if the change is intended, regenerate it with \
         SLUICE_BLESS_FIXTURES=1 (ingest's tests, then enrich's). Expected:\n{expected}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_their_records() {
        let text = kinesis_event(
            "ingest",
            "sluice-raw",
            &[("k".into(), b"{\"a\":1}".to_vec())],
        );
        let event: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_str(&text).expect("a KinesisEvent");
        let r = &event.records[0];
        assert_eq!(r.kinesis.partition_key, "k");
        assert_eq!(r.kinesis.data.0, b"{\"a\":1}");
        assert_eq!(r.kinesis.sequence_number, sequence_number(1));
        assert_eq!(sequence_number(1).len(), 56);
        assert_eq!(
            r.event_source_arn.as_deref(),
            Some("arn:aws:kinesis:us-east-1:123456789012:stream/sluice-raw")
        );
        assert!(text.ends_with("}\n"));
    }
}
