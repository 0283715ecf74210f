//! The Lambda event shape at the edge: `KinesisEvent` in, `KinesisEventResponse` out.
//! Every stage handler is `records_of` → the stage → `response_of`.
//!
//! The Lambdas read their event as a [`KinesisBatch`]: the same JSON, read straight into
//! [`StreamRecord`]s. `aws_lambda_events`' `KinesisEvent` keeps every field as its own
//! `String` and buffers each record through a `serde_json::Map` (a `#[serde(flatten)]`
//! catch-all), then [`records_of`] copies what a stage needs: measured, that was about
//! 70 % of ingest's time per batch (issue 9's profiles; in the README's git history).

use std::borrow::Cow;
use std::fmt;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::input::record::StreamRecord;
use crate::stage::Stage;
use crate::stage::outcome::BatchOutcome;

/// `arn:aws:kinesis:us-east-1:123456789012:stream/sluice-raw` → `sluice-raw`.
pub fn stream_name_of_arn(arn: &str) -> &str {
    arn.rsplit_once("stream/").map_or(arn, |(_, name)| name)
}

/// `shardId-000000000000:4959…` → `shardId-000000000000`.
pub fn shard_of_event_id(event_id: &str) -> &str {
    event_id
        .split_once(':')
        .map_or(event_id, |(shard, _)| shard)
}

pub fn records_of(event: &KinesisEvent) -> Vec<StreamRecord> {
    event
        .records
        .iter()
        .map(|r| StreamRecord {
            stream: stream_name_of_arn(r.event_source_arn.as_deref().unwrap_or_default())
                .to_owned(),
            shard_id: shard_of_event_id(r.event_id.as_deref().unwrap_or_default()).to_owned(),
            sequence_number: r.kinesis.sequence_number.clone(),
            partition_key: r.kinesis.partition_key.clone(),
            data: r.kinesis.data.0.clone(),
            arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
        })
        .collect()
}

/// [`records_of`] for a caller done with the event: data, partition keys and sequence
/// numbers are moved, not copied (a batch's data is most of its memory).
pub fn into_records(event: KinesisEvent) -> Vec<StreamRecord> {
    event
        .records
        .into_iter()
        .map(|r| StreamRecord {
            stream: stream_name_of_arn(r.event_source_arn.as_deref().unwrap_or_default())
                .to_owned(),
            shard_id: shard_of_event_id(r.event_id.as_deref().unwrap_or_default()).to_owned(),
            arrival_ms: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
            sequence_number: r.kinesis.sequence_number,
            partition_key: r.kinesis.partition_key,
            data: r.kinesis.data.0,
        })
        .collect()
}

/// A Lambda Kinesis trigger event, read straight into the records a stage takes: only
/// `eventID` (its shard), `eventSourceARN` (its stream) and the `kinesis` object's
/// partition key, sequence number, base64 data and arrival time are read; every other
/// field is skipped without being kept. Strings are borrowed from the payload while it
/// is read, and each record's data is decoded once, into its own buffer.
///
/// Gives the records [`into_records`] gives for the same JSON, except `arrival_ms`
/// where `aws_lambda_events` misreads the fraction: it parses the seconds' decimal
/// digits as an integer of milliseconds (`.98` becomes 98 ms, `.5` becomes 5 ms); this
/// rounds seconds × 1000.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KinesisBatch {
    pub records: Vec<StreamRecord>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "Records")]
    records: WireRecords,
}

/// The `Records` array, converted record by record as it is read.
struct WireRecords(Vec<StreamRecord>);

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "eventSourceARN", borrow, default)]
    event_source_arn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kinesis: WireKinesis<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKinesis<'a> {
    #[serde(borrow)]
    partition_key: Cow<'a, str>,
    #[serde(borrow)]
    sequence_number: Cow<'a, str>,
    data: Base64Bytes,
    approximate_arrival_timestamp: ArrivalMs,
}

/// Base64 (standard alphabet, padded, as Lambda sends it) decoded into one buffer.
struct Base64Bytes(Vec<u8>);

/// Epoch seconds (a number, or a string holding one) as epoch milliseconds.
struct ArrivalMs(i64);

impl<'de> Deserialize<'de> for KinesisBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WireEvent::deserialize(d).map(|e| KinesisBatch {
            records: e.records.0,
        })
    }
}

impl<'de> Deserialize<'de> for WireRecords {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireRecords;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of Kinesis event records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireRecords, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(r) = seq.next_element::<WireRecord<'de>>()? {
                    records.push(StreamRecord {
                        stream: stream_name_of_arn(r.event_source_arn.as_deref().unwrap_or(""))
                            .to_owned(),
                        shard_id: shard_of_event_id(r.event_id.as_deref().unwrap_or("")).to_owned(),
                        sequence_number: r.kinesis.sequence_number.into_owned(),
                        partition_key: r.kinesis.partition_key.into_owned(),
                        data: r.kinesis.data.0,
                        arrival_ms: r.kinesis.approximate_arrival_timestamp.0,
                    });
                }
                Ok(WireRecords(records))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Base64Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_bytes<E: de::Error>(self, s: &[u8]) -> Result<Base64Bytes, E> {
                // Decoded straight into a buffer of the decoded size.
                let mut out = Vec::with_capacity(base64::decoded_len_estimate(s.len()));
                BASE64
                    .decode_vec(s, &mut out)
                    .map_err(|e| E::custom(format!("record data is not base64: {e}")))?;
                Ok(Base64Bytes(out))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Base64Bytes, E> {
                self.visit_bytes(s.as_bytes())
            }
        }
        // As bytes: serde_json then skips the UTF-8 check base64 does not need (a
        // character outside the alphabet fails the decode either way).
        d.deserialize_bytes(V)
    }
}

impl<'de> Deserialize<'de> for ArrivalMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ArrivalMs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch seconds")
            }
            fn visit_f64<E: de::Error>(self, secs: f64) -> Result<ArrivalMs, E> {
                if secs.is_finite() && secs.abs() < 9.0e12 {
                    Ok(ArrivalMs((secs * 1000.0).round() as i64))
                } else {
                    Err(E::custom(format!("arrival time {secs} is out of range")))
                }
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<ArrivalMs, E> {
                self.visit_f64(secs as f64)
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<ArrivalMs, E> {
                self.visit_f64(secs as f64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ArrivalMs, E> {
                let secs = s
                    .parse::<f64>()
                    .map_err(|_| E::custom(format!("arrival time {s:?} is not a number")))?;
                self.visit_f64(secs)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reports the first record to retry, if any (Lambda checkpoints everything before it).
pub fn response_of(outcome: &BatchOutcome) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(failure) = &outcome.failure {
        response.add_failure(failure.sequence_number.clone());
    }
    response
}

/// Runs one Lambda batch through a stage: the whole body of every stage handler.
pub async fn handle<S: Stage>(
    stage: &S,
    event: &KinesisEvent,
    deadline_ms: Option<i64>,
) -> (KinesisEventResponse, BatchOutcome) {
    let records = records_of(event);
    let outcome = stage.process(&records, deadline_ms).await;
    (response_of(&outcome), outcome)
}

/// Runs one Lambda batch, already read as records, through a stage: what every stage
/// Lambda does with its [`KinesisBatch`].
pub async fn handle_batch<S: Stage>(
    stage: &S,
    batch: &KinesisBatch,
    deadline_ms: Option<i64>,
) -> (KinesisEventResponse, BatchOutcome) {
    let outcome = stage.process(&batch.records, deadline_ms).await;
    (response_of(&outcome), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_trigger_payload() {
        let payload = r#"{"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"sensor-1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"eyJrIjoxfQ==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/sluice-raw"}]}"#;
        let event: KinesisEvent = serde_json::from_str(payload).expect("valid payload");
        let records = records_of(&event);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.stream, "sluice-raw");
        assert_eq!(r.shard_id, "shardId-000000000006");
        assert_eq!(r.partition_key, "sensor-1");
        assert_eq!(r.data, b"{\"k\":1}");
        assert_eq!(r.arrival_ms, 1_545_084_650_987);
        assert_eq!(
            into_records(event),
            records,
            "moving gives what copying gives"
        );
    }

    /// Every Kinesis fixture under `events/` reads to the records `into_records` gives,
    /// arrival times apart (see [`KinesisBatch`]: `aws_lambda_events` reads `.5` s as
    /// 5 ms).
    #[test]
    fn every_kinesis_fixture_reads_as_a_batch_like_the_event_type_reads_it() {
        let fixtures = [
            include_str!("../../../../events/ingest/mixed.json"),
            include_str!("../../../../events/ingest/kpl.json"),
            include_str!("../../../../events/enrich/valid.json"),
            include_str!("../../../../events/aggregate/enriched.json"),
            include_str!("../../../../events/detect/window-updates.json"),
            include_str!("../../../../events/detect/closed-windows.json"),
            include_str!("../../../../events/sql/ingest.json"),
            include_str!("../../../../events/sql/enrich.json"),
            include_str!("../../../../events/sql/aggregate.json"),
        ];
        for fixture in fixtures {
            let event: KinesisEvent = serde_json::from_str(fixture).expect("a KinesisEvent");
            let batch: KinesisBatch = serde_json::from_str(fixture).expect("a KinesisBatch");
            let mut expected = into_records(event);
            assert!(!expected.is_empty());
            for r in &mut expected {
                r.arrival_ms = 0;
            }
            let mut got = batch.records.clone();
            for r in &mut got {
                r.arrival_ms = 0;
            }
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn arrival_times_are_seconds_times_a_thousand_rounded() {
        let one = |ts: &str| {
            let payload = format!(
                r#"{{"Records":[{{"kinesis":{{"partitionKey":"k","sequenceNumber":"1","data":"eA==","approximateArrivalTimestamp":{ts}}},"eventID":"shardId-1:1","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s"}}]}}"#
            );
            serde_json::from_str::<KinesisBatch>(&payload).map(|b| b.records[0].arrival_ms)
        };
        assert_eq!(one("1545084650.987").ok(), Some(1_545_084_650_987));
        assert_eq!(one("1545084650.98").ok(), Some(1_545_084_650_980));
        assert_eq!(one("1767225661.5").ok(), Some(1_767_225_661_500));
        assert_eq!(one("1767225661").ok(), Some(1_767_225_661_000));
        assert_eq!(one("\"1767225661.25\"").ok(), Some(1_767_225_661_250));
        assert!(one("true").is_err());
        assert!(one("1e300").is_err());
    }

    #[test]
    fn bad_base64_or_a_missing_field_fails_the_read() {
        let with = |kinesis: &str| {
            serde_json::from_str::<KinesisBatch>(&format!(
                r#"{{"Records":[{{"kinesis":{{{kinesis}}}}}]}}"#
            ))
        };
        let ok = with(r#""partitionKey":"k","sequenceNumber":"1","data":"eyJrIjoxfQ==","approximateArrivalTimestamp":1"#)
            .expect("a minimal record");
        assert_eq!(ok.records[0].data, b"{\"k\":1}");
        assert_eq!(
            ok.records[0].shard_id, "",
            "no eventID: no shard, as records_of"
        );
        assert!(with(r#""partitionKey":"k","sequenceNumber":"1","data":"*not*","approximateArrivalTimestamp":1"#).is_err());
        assert!(
            with(r#""partitionKey":"k","data":"eA==","approximateArrivalTimestamp":1"#).is_err()
        );
    }

    proptest::proptest! {
        /// Whatever the keys, sequence numbers and bytes (escapes included), a batch
        /// reads the records the event type reads from the same JSON.
        #[test]
        fn batches_read_what_the_event_type_reads(
            records in proptest::collection::vec(
                ("\\PC{1,20}", "[0-9]{1,56}", proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0i64..4_000_000_000_000),
                0..20,
            ),
        ) {
            let json = serde_json::json!({"Records": records.iter().map(|(pk, seq, data, ms)| serde_json::json!({
                "kinesis": {
                    "partitionKey": pk,
                    "sequenceNumber": seq,
                    "data": BASE64.encode(data),
                    "approximateArrivalTimestamp": *ms as f64 / 1000.0,
                    "kinesisSchemaVersion": "1.0",
                },
                "eventID": format!("shardId-000000000001:{seq}"),
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s\\/x",
                "awsRegion": "us-east-1",
                "unknownField": {"nested": [1, 2]},
            })).collect::<Vec<_>>()});
            let text = serde_json::to_string(&json).expect("json");
            let batch: KinesisBatch = serde_json::from_str(&text).expect("a batch");
            let event: KinesisEvent = serde_json::from_str(&text).expect("an event");
            let mut expected = into_records(event);
            for (r, (_, _, _, ms)) in expected.iter_mut().zip(&records) {
                r.arrival_ms = *ms;
            }
            proptest::prop_assert_eq!(batch.records, expected);
        }
    }
}
