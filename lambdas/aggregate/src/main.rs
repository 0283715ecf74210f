//! The aggregate Lambda: wiring only (what it does is in `handler.rs` and sluice-core).

#![recursion_limit = "256"]
use lambda_runtime::{Error, run, service_fn};
use sluice_aws::{DynamoAggregateStore, KinesisSink, config, runtime, telemetry};
use sluice_core::config::{AggregateConfig, env};

// One thread: Lambda hands a runtime one invocation at a time and the handler only
// awaits I/O (no spawned tasks), so worker threads would add start-up time and memory
// and no throughput (`sluice coldstart` measures it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let vars = config::env_reader();
    let settings = AggregateConfig::from_reader(&vars)?;
    let output = config::required_env(env::OUTPUT_STREAM)?;
    let dead_letters = config::required_env(env::DEAD_LETTER_STREAM)?;
    let table = config::required_env(env::AGGREGATES_TABLE)?;
    // A Flink SQL pipeline packaged with the function, if `PIPELINE_FILE` names one.
    let pipeline = config::pipeline(&vars)?;
    let sdk = config::sdk_config().await;
    let kinesis = config::kinesis_client(&sdk);
    let store = DynamoAggregateStore::new(config::dynamodb_client(&sdk), table);
    // A clone shares the store's capacity meter: each batch's metrics report its units.
    let meter = store.clone();
    let stage = sluice_aggregate::handler(
        store,
        KinesisSink::new(kinesis.clone(), output),
        KinesisSink::new(kinesis, dead_letters),
        settings,
    );
    let stage = match pipeline {
        Some(pipeline) => stage.with_sql(pipeline),
        None => stage,
    };
    run(service_fn(|event| {
        runtime::handle_metered(&stage, &meter, event)
    }))
    .await
}
