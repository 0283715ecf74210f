//! Options shared by every command that talks to Kinesis and DynamoDB, and the clients
//! built from them. The standard AWS chain applies (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, profiles);
//! `--endpoint` overrides the endpoint of both services.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sluice_core::resources::{self, Names};
use sluice_local::template::Template;

use crate::demo::load_template;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Endpoint URL for both Kinesis and DynamoDB (LocalStack, local emulators).
    #[arg(long, value_name = "URL", env = "SLUICE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Prefix of every stream and table name (the template's NamePrefix).
    #[arg(long, default_value = resources::DEFAULT_PREFIX, env = "SLUICE_PREFIX")]
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
