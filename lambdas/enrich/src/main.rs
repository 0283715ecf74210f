//! The enrich Lambda: wiring only (what it does is in `handler.rs` and sluice-core).

#![recursion_limit = "256"]
use lambda_runtime::{Error, run, service_fn};
use sluice_aws::{DynamoReference, KinesisSink, config, runtime, telemetry};
use sluice_core::config::{EnrichConfig, env};

// One thread: Lambda hands a runtime one invocation at a time and the handler only
// awaits I/O (no spawned tasks), so worker threads would add start-up time and memory
// and no throughput (`sluice coldstart` measures it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let vars = config::env_reader();
    let settings = EnrichConfig::from_reader(&vars)?;
    let output = config::required_env(env::OUTPUT_STREAM)?;
    let dead_letters = config::required_env(env::DEAD_LETTER_STREAM)?;
    let reference_table = config::required_env(env::REFERENCE_TABLE)?;
    // A Flink SQL pipeline packaged with the function, if `PIPELINE_FILE` names one.
    let pipeline = config::pipeline(&vars)?;
    let sdk = config::sdk_config().await;
    let kinesis = config::kinesis_client(&sdk);
    let reference = DynamoReference::new(config::dynamodb_client(&sdk), reference_table);
    let output = KinesisSink::new(kinesis.clone(), output);
    let dead_letters = KinesisSink::new(kinesis, dead_letters);
    match pipeline {
        Some(pipeline) => {
            let stage =
                sluice_enrich::sql_handler(pipeline, reference, output, dead_letters, settings);
            run(service_fn(|event| runtime::handle(&stage, event))).await
        }
        None => {
            let stage = sluice_enrich::handler(reference, output, dead_letters, settings);
            run(service_fn(|event| runtime::handle(&stage, event))).await
        }
    }
}
