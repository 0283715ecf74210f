//! The one body every stage Lambda runs: the Lambda event in, the stage, a batch
//! response out, with a log line and EMF metrics per batch. Every log line of an
//! invocation is written inside its batch span (request id, stage, shard, batch size).

use std::convert::Infallible;
use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use sluice_core::stage::Stage;
use sluice_core::stage::lambda_event::KinesisBatch;
use sluice_core::stage::outcome::{BatchOutcome, iterator_age_ms};
use tracing::Instrument;

use crate::DynamoAggregateStore;
use crate::telemetry;

/// DynamoDB capacity consumed so far through a stage's tables: (read units, write
/// units), cumulative. The handler reads it before and after a batch; the difference is
/// the batch's, because the Lambda runtime (`lambda_runtime::run`) hands a process one
/// invocation at a time.
pub trait CapacityMeter {
    /// `None`: nothing is metered (the batch reports no request units).
    fn consumed(&self) -> Option<(f64, f64)>;
}

/// For stages whose tables are not metered (ingest has none; enrich's reference reads
/// and detect's rules and alerts are not metered yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unmetered;

impl CapacityMeter for Unmetered {
    fn consumed(&self) -> Option<(f64, f64)> {
        None
    }
}

/// The aggregates table's meter (clones of a store share it).
impl CapacityMeter for DynamoAggregateStore {
    fn consumed(&self) -> Option<(f64, f64)> {
        Some(self.units())
    }
}

/// Never fails the invocation: bad records are dead letters and retryable trouble is
/// reported as `batchItemFailures`, so Lambda retries from the right record.
pub async fn handle<S: Stage>(
    stage: &S,
    event: LambdaEvent<KinesisBatch>,
) -> Result<KinesisEventResponse, Infallible> {
    handle_metered(stage, &Unmetered, event).await
}

/// [`handle`], with the request units the batch consumed (read from `meter`) in its
/// metrics.
pub async fn handle_metered<S: Stage, M: CapacityMeter>(
    stage: &S,
    meter: &M,
    event: LambdaEvent<KinesisBatch>,
) -> Result<KinesisEventResponse, Infallible> {
    let span = span_of(stage.name(), &event);
    async move {
        let (response, outcome) = run_batch(stage, meter, &event).await;
        report(stage.name(), &outcome);
        Ok(response)
    }
    .instrument(span)
    .await
}

/// Runs the stage on the batch and adds what only the invocation sees: one batch, its
/// duration, its iterator age (measured when the batch arrived) and the request units
/// it consumed.
async fn run_batch<S: Stage, M: CapacityMeter>(
    stage: &S,
    meter: &M,
    event: &LambdaEvent<KinesisBatch>,
) -> (KinesisEventResponse, BatchOutcome) {
    let started_ms = chrono_now_ms();
    let started = Instant::now();
    let before = meter.consumed();
    let deadline_ms = absolute_deadline(event.context.deadline, started_ms);
    let (response, mut outcome) =
        sluice_core::stage::lambda_event::handle_batch(stage, &event.payload, deadline_ms).await;
    let stats = &mut outcome.stats;
    stats.batches = 1;
    stats.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    stats.iterator_age_ms = iterator_age_ms(arrivals_ms(&event.payload), started_ms);
    if let (Some(before), Some(after)) = (before, meter.consumed()) {
        stats.read_milli_units = Some(milli_units(after.0 - before.0));
        stats.write_milli_units = Some(milli_units(after.1 - before.1));
    }
    (response, outcome)
}

/// The batch span of an invocation: the shard is the first record's (a Kinesis batch
/// comes from one shard), read from the `shardId-…` prefix of its `eventID`.
fn span_of(stage: &str, event: &LambdaEvent<KinesisBatch>) -> tracing::Span {
    let records = &event.payload.records;
    let shard = records.first().map_or("", |r| r.shard_id.as_str());
    telemetry::batch_span(&event.context.request_id, stage, shard, records.len())
}

/// Each record's `approximateArrivalTimestamp`, in epoch milliseconds.
fn arrivals_ms(event: &KinesisBatch) -> impl Iterator<Item = i64> + '_ {
    event.records.iter().map(|r| r.arrival_ms)
}

fn milli_units(units: f64) -> u64 {
    if units.is_finite() && units > 0.0 {
        (units * 1000.0).round() as u64
    } else {
        0
    }
}

/// Lambda sends the deadline in epoch milliseconds. Emulators differ: cargo-lambda
/// 1.9's sends a duration (600000). Anything before 2001 cannot be an epoch deadline,
/// so it is read as milliseconds from now rather than as "long past" (which would make
/// every batch stop before its first record).
pub fn absolute_deadline(raw: u64, now_ms: i64) -> Option<i64> {
    const EPOCH_MS_2001: u64 = 978_307_200_000;
    let raw_ms = i64::try_from(raw).ok()?;
    if raw == 0 {
        None
    } else if raw < EPOCH_MS_2001 {
        Some(now_ms.saturating_add(raw_ms))
    } else {
        Some(raw_ms)
    }
}

fn chrono_now_ms() -> i64 {
    use sluice_core::ports::Clock;
    sluice_core::ports::SystemClock.now_ms()
}

fn report(stage: &str, outcome: &BatchOutcome) {
    telemetry::emit_metrics(stage, &outcome.stats);
    let stats = &outcome.stats;
    match &outcome.failure {
        None => tracing::info!(
            records = outcome.records,
            events_in = stats.events_in,
            passed_on = stats.passed_on,
            dead_lettered = stats.dead_lettered_total(),
            duration_ms = stats.duration_ms,
            iterator_age_ms = stats.iterator_age_ms,
            "batch processed"
        ),
        Some(f) => tracing::warn!(
            records = outcome.records,
            completed = f.index,
            sequence_number = %f.sequence_number,
            error = %f.error,
            code = f.error.code(),
            retryable = f.error.is_retryable(),
            "batch stopped early; Lambda retries from this record"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use sluice_core::input::record::StreamRecord;
    use sluice_core::stage::outcome::StageStats;

    use super::*;

    /// A stage that logs from inside its batch and counts what it got.
    struct Logging;

    impl Stage for Logging {
        fn name(&self) -> &'static str {
            "ingest"
        }

        async fn process(
            &self,
            records: &[StreamRecord],
            _deadline_ms: Option<i64>,
        ) -> BatchOutcome {
            tracing::warn!(record = 0, "a line logged by the stage");
            BatchOutcome {
                records: records.len(),
                stats: StageStats {
                    records: records.len() as u64,
                    ..StageStats::default()
                },
                ..BatchOutcome::default()
            }
        }
    }

    /// Counts a fixed number of units per batch, as a store's meter would.
    struct FiveUnitsPerCall(Mutex<f64>);

    impl CapacityMeter for FiveUnitsPerCall {
        fn consumed(&self) -> Option<(f64, f64)> {
            let mut total = self.0.lock().expect("lock");
            *total += 2.5;
            Some((*total, 2.0 * *total))
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const TWO_RECORDS: &str = r#"{"Records":[
      {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"a","sequenceNumber":"1","data":"e30=","approximateArrivalTimestamp":1545084650.987},
       "eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:1","eventName":"aws:kinesis:record","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/sluice-raw"},
      {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"b","sequenceNumber":"2","data":"e30=","approximateArrivalTimestamp":1545084651.5},
       "eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:2","eventName":"aws:kinesis:record","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/sluice-raw"}]}"#;

    fn invocation() -> LambdaEvent<KinesisBatch> {
        let mut context = lambda_runtime::Context::default();
        context.request_id = "c0ffee00-1111-2222-3333-444455556666".into();
        LambdaEvent::new(serde_json::from_str(TWO_RECORDS).expect("payload"), context)
    }

    /// The log lines of one batch (and one line after it) under `RUST_LOG=filter`.
    async fn captured_logs(filter: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            telemetry::json_subscriber(move || writer.clone(), telemetry::log_filter(filter));
        let _guard = tracing::subscriber::set_default(subscriber);
        handle(&Logging, invocation()).await.expect("infallible");
        tracing::warn!("after the batch");
        String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8")
    }

    #[tokio::test]
    async fn every_log_line_of_a_batch_carries_request_id_stage_shard_and_size() {
        let text = captured_logs("info").await;
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        for line in &lines[..2] {
            let span = &line["span"];
            assert_eq!(
                span["request_id"], "c0ffee00-1111-2222-3333-444455556666",
                "{line}"
            );
            assert_eq!(span["stage"], "ingest", "{line}");
            assert_eq!(span["shard"], "shardId-000000000006", "{line}");
            assert_eq!(span["batch_size"], 2, "{line}");
        }
        assert_eq!(lines[0]["message"], "a line logged by the stage");
        assert_eq!(lines[1]["message"], "batch processed");
        assert_eq!(lines[1]["records"], 2);
        assert!(
            lines[1]["iterator_age_ms"].as_u64().expect("measured") > 1_000_000,
            "arrived in 2018: {}",
            lines[1]
        );
        assert!(
            lines[2].get("span").is_none(),
            "outside a batch: {}",
            lines[2]
        );
    }

    #[tokio::test]
    async fn with_warn_logging_the_warnings_still_carry_the_batch_fields() {
        let text = captured_logs("warn").await;
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
            .collect();
        assert_eq!(
            lines.len(),
            2,
            "the stage's warning and the one after: {text}"
        );
        assert_eq!(
            lines[0]["span"]["request_id"],
            "c0ffee00-1111-2222-3333-444455556666"
        );
        assert_eq!(lines[0]["span"]["shard"], "shardId-000000000006");
        assert!(lines[1].get("span").is_none());
    }

    /// A stage that only counts (it logs nothing: log capture is another test's).
    struct Quiet;

    impl Stage for Quiet {
        fn name(&self) -> &'static str {
            "aggregate"
        }

        async fn process(
            &self,
            records: &[StreamRecord],
            _deadline_ms: Option<i64>,
        ) -> BatchOutcome {
            BatchOutcome {
                records: records.len(),
                ..BatchOutcome::default()
            }
        }
    }

    #[tokio::test]
    async fn a_batch_reports_its_timing_and_the_units_it_consumed() {
        let started = chrono_now_ms();
        let meter = FiveUnitsPerCall(Mutex::new(100.0));
        let (_, outcome) = run_batch(&Quiet, &meter, &invocation()).await;
        let stats = &outcome.stats;
        assert_eq!(stats.batches, 1);
        assert_eq!(
            (stats.read_units(), stats.write_units()),
            (Some(2.5), Some(5.0)),
            "the difference across the batch, not the meter's total"
        );
        let age = stats.iterator_age_ms.expect("measured");
        let oldest = 1_545_084_650_987;
        assert!(
            age >= (started - oldest) as u64 && age <= (chrono_now_ms() - oldest) as u64,
            "{age}"
        );
        let (_, unmetered) = run_batch(&Quiet, &Unmetered, &invocation()).await;
        assert_eq!(unmetered.stats.read_units(), None);
        assert_eq!(milli_units(-1.0), 0, "a meter never runs backwards");
    }

    #[test]
    fn deadlines_are_absolute_epoch_milliseconds_or_read_as_relative() {
        let now = 1_767_225_600_000;
        assert_eq!(
            absolute_deadline(1_767_225_660_000, now),
            Some(1_767_225_660_000)
        );
        assert_eq!(
            absolute_deadline(600_000, now),
            Some(now + 600_000),
            "cargo-lambda's duration"
        );
        assert_eq!(absolute_deadline(0, now), None);
    }
}
