//! The ingest Lambda: wiring only (what it does is in `handler.rs` and sluice-core).

#![recursion_limit = "256"]
use lambda_runtime::{Error, run, service_fn};
use sluice_aws::{KinesisSink, config, runtime, telemetry};
use sluice_core::config::{IngestConfig, env};

// One thread: Lambda hands a runtime one invocation at a time and the handler only
// awaits I/O (no spawned tasks), so worker threads would add start-up time and memory
// and no throughput (`sluice coldstart` measures it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let vars = config::env_reader();
    let settings = IngestConfig::from_reader(&vars)?;
    let output = config::required_env(env::OUTPUT_STREAM)?;
    let dead_letters = config::required_env(env::DEAD_LETTER_STREAM)?;
    // A Flink SQL pipeline packaged with the function, if `PIPELINE_FILE` names one.
    let pipeline = config::pipeline(&vars)?;
    let kinesis = config::kinesis_client(&config::sdk_config().await);
    let stage = sluice_ingest::handler(
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
