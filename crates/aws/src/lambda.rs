//! The one body every stage Lambda runs: the Lambda event in, the stage, a batch
//! response out, with a log line and EMF metrics per batch.

use std::convert::Infallible;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use sluice_core::outcome::BatchOutcome;
use sluice_core::stage::Stage;

use crate::telemetry;

/// Never fails the invocation: bad records are dead letters and retryable trouble is
/// reported as `batchItemFailures`, so Lambda retries from the right record.
pub async fn handle<S: Stage>(
    stage: &S,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, Infallible> {
    let deadline_ms = absolute_deadline(event.context.deadline, chrono_now_ms());
    let (response, outcome) = sluice_core::lambda::handle(stage, &event.payload, deadline_ms).await;
    report(stage.name(), &outcome);
    Ok(response)
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
    match &outcome.failure {
        None => tracing::info!(stage, records = outcome.records, "batch processed"),
        Some(f) => tracing::warn!(
            stage,
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
    use super::*;

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
