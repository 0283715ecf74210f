//! The detect Lambda: wiring only (what it does is in `handler.rs` and sluice-core).

#![recursion_limit = "256"]
use lambda_runtime::{Error, run, service_fn};
use sluice_aws::{
    DynamoAggregateStore, DynamoAlerts, DynamoRules, KinesisSink, config, runtime, telemetry,
};
use sluice_core::config::{DetectConfig, env};

// One thread: Lambda hands a runtime one invocation at a time and the handler only
// awaits I/O (no spawned tasks), so worker threads would add start-up time and memory
// and no throughput (`sluice coldstart` measures it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let vars = config::env_reader();
    let settings = DetectConfig::from_reader(&vars)?;
    let output = config::required_env(env::OUTPUT_STREAM)?;
    let dead_letters = config::required_env(env::DEAD_LETTER_STREAM)?;
    let rules_table = config::required_env(env::RULES_TABLE)?;
    let alerts_table = config::required_env(env::ALERTS_TABLE)?;
    // Read only: the history of groups whose windows closed (`rate`, `zscore` rules).
    let aggregates_table = config::required_env(env::AGGREGATES_TABLE)?;
    // A Flink SQL pipeline packaged with the function: rules on its views' columns.
    let pipeline = config::pipeline(&vars)?;
    let sdk = config::sdk_config().await;
    let dynamodb = config::dynamodb_client(&sdk);
    let kinesis = config::kinesis_client(&sdk);
    let stage = sluice_detect::handler(
        DynamoRules::new(dynamodb.clone(), rules_table),
        DynamoAlerts::new(dynamodb.clone(), alerts_table),
        DynamoAggregateStore::new(dynamodb, aggregates_table),
        KinesisSink::new(kinesis.clone(), output),
        KinesisSink::new(kinesis, dead_letters),
        settings,
    );
    let stage = match pipeline {
        Some(pipeline) => stage.with_sql(pipeline),
        None => stage,
    };
    run(service_fn(|event| runtime::handle(&stage, event))).await
}
