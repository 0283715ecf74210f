//! SDK configuration and environment access.
//!
//! `aws_config`'s standard chain is used as is, so `AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_KINESIS` /
//! `AWS_ENDPOINT_URL_DYNAMODB` all work (that is how tests reach the local servers).
//! Load the SDK config once per process (it is expensive); clients are cheap.

use aws_config::{BehaviorVersion, SdkConfig};
use sluice_core::config::EnvReader;

use crate::error::{Error, Result};

/// The SDK config from the environment.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_with_endpoint(None).await
}

/// The SDK config from the environment, with every service sent to `endpoint` when
/// given (the CLI's `--endpoint URL`, e.g. LocalStack at `http://localhost:4566`).
pub async fn sdk_config_with_endpoint(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

pub fn kinesis_client(config: &SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(config)
}

pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// Reads stage configuration from the process environment.
pub fn env_reader() -> EnvReader<impl Fn(&str) -> Option<String>> {
    EnvReader::new(|name: &str| std::env::var(name).ok())
}

/// A variable that must be set (and not blank); the error names it.
pub fn required_env(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::MissingEnv {
            variable: name.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_env_names_the_variable() {
        let err = required_env("SLUICE_SURELY_NOT_SET_ANYWHERE").expect_err("unset");
        assert!(
            err.to_string().contains("SLUICE_SURELY_NOT_SET_ANYWHERE"),
            "{err}"
        );
        assert!(!err.is_retryable());
        // PATH is set in every test environment.
        assert!(required_env("PATH").is_ok());
        let reader = env_reader();
        assert!(reader.required("SLUICE_SURELY_NOT_SET_ANYWHERE").is_err());
        assert_eq!(
            reader.parsed("SLUICE_SURELY_NOT_SET_ANYWHERE", 7u32).ok(),
            Some(7)
        );
    }
}
