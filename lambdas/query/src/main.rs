//! The query Lambda (function URL, IAM auth): wiring only (what it does is in
//! `handler.rs` and `sluice_core::query`).

use lambda_http::{Error, run, service_fn};
use sluice_aws::dynamodb::{DynamoAggregateReader, DynamoAlertReader};
use sluice_aws::{config, telemetry};
use sluice_core::config::env;

// One thread: Lambda hands a runtime one invocation at a time and the handler only
// awaits I/O (no spawned tasks), so worker threads would add start-up time and memory
// and no throughput (`sluice coldstart` measures it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let aggregates_table = config::required_env(env::AGGREGATES_TABLE)?;
    let alerts_table = config::required_env(env::ALERTS_TABLE)?;
    // A Flink SQL pipeline packaged with the function: GET /views serves its views.
    let pipeline = config::pipeline(&config::env_reader())?;
    let sdk = config::sdk_config().await;
    let dynamodb = config::dynamodb_client(&sdk);
    let aggregates = DynamoAggregateReader::new(dynamodb.clone(), aggregates_table);
    let alerts = DynamoAlertReader::new(dynamodb, alerts_table);
    run(service_fn(|request| {
        sluice_query::handle_with_views(&aggregates, &alerts, pipeline.as_deref(), request)
    }))
    .await
}
