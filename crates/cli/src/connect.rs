//! Options shared by every command that talks to Kinesis and DynamoDB, and the clients
//! built from them. The standard AWS chain applies (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, profiles);
//! `--endpoint` overrides the endpoint of both services.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sluice_core::resources::{self, Names};
use sluice_local::template::Template;

use crate::template::load_template;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Endpoint URL for both Kinesis and DynamoDB (LocalStack, local emulators).
    #[arg(long, value_name = "URL", env = "SLUICE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Prefix of every stream and table name (the template's NamePrefix).
    #[arg(long, default_value = resources::DEFAULT_PREFIX, env = "SLUICE_PREFIX", value_parser = parse_prefix)]
    pub prefix: String,
    /// template.yaml to take names and stage settings from (default: the bundled one).
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,
}

/// SDK clients, built once per command.
pub struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Connection {
    pub async fn clients(&self) -> Clients {
        let sdk = sluice_aws::sdk_config_with_endpoint(self.endpoint.as_deref()).await;
        Clients {
            kinesis: sluice_aws::kinesis_client(&sdk),
            dynamodb: sluice_aws::dynamodb_client(&sdk),
        }
    }

    pub fn names(&self) -> Names {
        Names::new(&self.prefix)
    }

    /// The template with `NamePrefix` set to `--prefix`.
    pub fn template(&self) -> Result<Template> {
        let mut t = load_template(self.template.as_ref())?;
        t.set_parameter("NamePrefix", self.prefix.clone());
        Ok(t)
    }
}

/// A name prefix: the characters Kinesis stream and DynamoDB table names allow
/// (`a-z A-Z 0-9 _ . -`), so that a bad one fails here, quoted escaped, and not as a
/// service error or in a table name printed raw.
pub fn parse_prefix(s: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if s.is_empty() || !s.chars().all(allowed) {
        return Err(format!(
            "{s:?} is not a name prefix (letters, digits, `_`, `.` and `-` only)"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_quoted_escaped() {
        assert_eq!(parse_prefix("dev-1.a_b"), Ok("dev-1.a_b".to_owned()));
        let err = parse_prefix("x\u{1b}]0;pwned\u{7}").expect_err("control characters");
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(parse_prefix("").is_err());
        assert!(parse_prefix("a b").is_err());
    }
}
