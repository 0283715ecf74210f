//! The Lambda event shape at the edge: `KinesisEvent` in, `KinesisEventResponse` out.
//! Every stage handler is `records_of` → the stage → `response_of`.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::outcome::BatchOutcome;
use crate::record::StreamRecord;
use crate::stage::Stage;

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
}
