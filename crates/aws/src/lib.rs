//! AWS adapters for Sluice's ports: the Kinesis sink and shard reader, the DynamoDB
//! stores (aggregates, reference data, rules, alerts), SDK configuration from the
//! environment, provisioning of streams and tables, logs and EMF metrics.
//!
//! Adapters return [`sluice_core::Error`] (the ports say so), with SDK failures mapped
//! to the right retry hint by [`classify`]; this crate's own failures (configuration,
//! provisioning) are [`Error`].

pub mod backoff;
pub mod classify;
pub mod config;
pub mod dynamodb;
pub mod error;
pub mod kinesis;
pub mod provision;
pub mod runtime;
pub mod telemetry;

pub use backoff::RetryPolicy;
pub use config::{
    dynamodb_client, env_reader, kinesis_client, required_env, sdk_config, sdk_config_with_endpoint,
};
pub use dynamodb::{DynamoAggregateStore, DynamoAlerts, DynamoReference, DynamoRules, Meter};
pub use error::{Error, Result};
pub use kinesis::{KinesisShardSource, KinesisSink, PutRecordsApi, PutResult, stream_arn};
pub use provision::{Provisioned, Provisioner};
