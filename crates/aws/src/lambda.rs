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
    let deadline_ms = i64::try_from(event.context.deadline).ok();
    let (response, outcome) = sluice_core::lambda::handle(stage, &event.payload, deadline_ms).await;
    report(stage.name(), &outcome);
    Ok(response)
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
