//! SDK configuration and environment access.
//!
//! `aws_config`'s standard chain is used as is, so `AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_KINESIS` /
//! `AWS_ENDPOINT_URL_DYNAMODB` all work (that is how tests reach the local servers).
//! Load the SDK config once per process (it is expensive); clients are cheap.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_kinesis::config::http::HttpRequest;
use aws_sdk_kinesis::config::{HttpClient, RuntimeComponents, SharedHttpClient};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::result::ConnectorError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_core::config::{EnvReader, env};
use sluice_core::stage::sql::SqlPipeline;

use crate::error::{Error, Result};

/// The SDK config from the environment.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_with_endpoint(None).await
}

/// The SDK config from the environment, with every service sent to `endpoint` when
/// given (the CLI's `--endpoint URL`, e.g. LocalStack at `http://localhost:4566`).
pub async fn sdk_config_with_endpoint(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// The SDK's default HTTPS client (hyper 1, rustls, the system's root certificates,
/// `HTTP(S)_PROXY` / `NO_PROXY` from the environment, the SDK's timeouts and sleep) with
/// ring as rustls' crypto provider instead of aws-lc: the SDK crates are built without
/// `default-https-client`, whose aws-lc took ~1.5 MB of every Lambda's binary
/// (docs/performance.md, "Cold start and binary size"). The same cipher suites (the SDK restricts them to
/// AES-GCM with ECDHE for every provider); what ring lacks is the post-quantum key
/// exchange aws-lc would prefer. Built as `aws_smithy_runtime`'s `default_https_client`
/// builds it for the latest behavior version; the loader hands it to every client and
/// credentials provider, so nothing falls back to "no HTTP client".
///
/// Its connections name their endpoint when they cannot be opened ([`NamingClient`]).
fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(NamingClient(rustls_ring_client()))
}

fn rustls_ring_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// An HTTP client whose connector wraps a failure to connect (refused, DNS, no route)
/// in a [`crate::classify::Unreachable`] naming the request's endpoint, so that the
/// error says where it could not connect; the SDK's dispatch failure does not. The
/// error keeps its kind (I/O), so the SDK's and the stages' retries are unchanged.
#[derive(Debug)]
struct NamingClient(SharedHttpClient);

impl HttpClient for NamingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(NamingConnector(self.0.http_connector(settings, components)))
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &aws_sdk_kinesis::config::RuntimeComponentsBuilder,
        cfg: &aws_sdk_kinesis::config::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &aws_sdk_kinesis::config::ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.0.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[derive(Debug)]
struct NamingConnector(SharedHttpConnector);

impl HttpConnector for NamingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let endpoint = endpoint_of(request.uri());
        let response = self.0.call(request);
        HttpConnectorFuture::new(
            async move { response.await.map_err(|e| name_endpoint(e, endpoint)) },
        )
    }
}

/// `scheme://authority` of a request URI (no path, no query).
fn endpoint_of(uri: &str) -> String {
    let after_scheme = uri.find("://").map_or(0, |i| i + 3);
    let end = uri[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(uri.len(), |i| after_scheme + i);
    uri[..end].to_owned()
}

/// A failure to connect becomes an I/O error whose source is an `Unreachable` naming
/// `endpoint` (the original error below it); any other error is left as it is.
fn name_endpoint(error: ConnectorError, endpoint: String) -> ConnectorError {
    let Some(cause) = crate::classify::ConnectFailure::find(&error) else {
        return error;
    };
    let connection = error.connection_metadata().cloned();
    let named = ConnectorError::io(Box::new(crate::classify::Unreachable {
        endpoint,
        cause,
        source: Box::new(error),
    }));
    match connection {
        Some(c) => named.with_connection(c),
        None => named,
    }
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

/// The Flink SQL pipeline the function runs (issue 17), read and compiled once at cold
/// start; `None` when `PIPELINE_FILE` is unset or blank (the event envelope, as before).
///
/// Lambda's environment holds 4 KB, so the variable names a file packaged with the
/// function: an absolute path as it is (template.yaml ships the file in a layer, under
/// `/opt`), a relative one from the function's code directory `LAMBDA_TASK_ROOT` (the
/// working directory when that is unset, as under `cargo lambda watch`). An unreadable
/// file or a pipeline the stages refuse fails the cold start; the error names the
/// variable, the file and (for SQL) the line and column.
pub fn pipeline<F: Fn(&str) -> Option<String>>(
    vars: &EnvReader<F>,
) -> Result<Option<Arc<SqlPipeline>>> {
    if !vars.is_set(env::PIPELINE_FILE) {
        return Ok(None);
    }
    let file = vars.required(env::PIPELINE_FILE)?;
    let root = vars.required(env::LAMBDA_TASK_ROOT).ok();
    let path = pipeline_path(file.trim(), root.as_deref().map(str::trim));
    let text = std::fs::read_to_string(&path).map_err(|source| Error::PipelineUnreadable {
        variable: env::PIPELINE_FILE,
        path: path.clone(),
        source,
    })?;
    let pipeline = SqlPipeline::load(&text).map_err(|source| Error::PipelineInvalid {
        variable: env::PIPELINE_FILE,
        path: path.clone(),
        source,
    })?;
    tracing::info!(
        pipeline = %path.display(),
        stored_views = pipeline.views.len(),
        "sql pipeline loaded"
    );
    Ok(Some(Arc::new(pipeline)))
}

/// `file` as is when absolute, else under `root` (when given).
fn pipeline_path(file: &str, root: Option<&str>) -> PathBuf {
    let file = Path::new(file);
    match root {
        Some(root) if file.is_relative() => Path::new(root).join(file),
        _ => file.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without `default-https-client` the SDK has no client of its own and would panic
    /// on the first request ("a http_client is required"): the loaded config carries ours.
    #[tokio::test]
    async fn the_sdk_config_carries_an_https_client() {
        let config = sdk_config_with_endpoint(Some("http://127.0.0.1:9")).await;
        assert!(config.http_client().is_some());
        // And the clients built from it inherit it.
        let kinesis = kinesis_client(&config);
        assert!(kinesis.config().http_client().is_some());
    }

    /// A request to an `https://` endpoint opens a TLS connection through our client (ring):
    /// the server's first bytes are a TLS handshake record (0x16, version 3.x), the
    /// ClientHello. The server then hangs up, so the call fails as a dispatch failure
    /// (no panic, no plain-text request).
    #[tokio::test]
    async fn an_https_endpoint_gets_a_tls_client_hello() {
        use std::io::Read;

        use aws_sdk_kinesis::config::{Credentials, Region};
        use aws_sdk_kinesis::error::SdkError;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut head = [0u8; 3];
            socket.read_exact(&mut head).expect("first bytes");
            head
        });
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .endpoint_url(format!("https://127.0.0.1:{port}"))
            .load()
            .await;
        let result = kinesis_client(&config).list_streams().send().await;
        // Had the client never connected, this connection ends the server's wait (and,
        // sending nothing, fails it) instead of hanging the test.
        drop(std::net::TcpStream::connect(("127.0.0.1", port)));
        let head = server
            .join()
            .expect("the client connected and sent 3 bytes");
        assert_eq!(head[0], 0x16, "a TLS handshake record, got {head:?}");
        assert_eq!(head[1], 3, "TLS record version 3.x, got {head:?}");
        match result {
            Err(SdkError::DispatchFailure(_)) => {}
            other => panic!("expected a dispatch failure, got {other:?}"),
        }
    }

    /// A port nothing listens on: the error names the endpoint and the refusal.
    #[tokio::test]
    async fn a_refused_connection_names_the_endpoint() {
        use crate::classify::{ConnectFailure, Misconfiguration, misconfiguration};
        use aws_sdk_kinesis::config::{Credentials, Region};
        use aws_sdk_kinesis::error::SdkError;

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .endpoint_url(format!("{endpoint}/"))
            .load()
            .await;
        let err = kinesis_client(&config)
            .list_streams()
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(
            misconfiguration(&err),
            Some(Misconfiguration::Unreachable {
                endpoint,
                cause: ConnectFailure::Refused
            })
        );
        // Still an I/O failure to the SDK and the stages' retry logic.
        match &err {
            SdkError::DispatchFailure(d) => assert!(d.is_io(), "{err:?}"),
            other => panic!("expected a dispatch failure, got {other:?}"),
        }
    }

    #[test]
    fn endpoints_are_scheme_and_authority() {
        assert_eq!(endpoint_of("http://127.0.0.1:1/"), "http://127.0.0.1:1");
        assert_eq!(
            endpoint_of("https://kinesis.us-east-1.amazonaws.com/?x=1"),
            "https://kinesis.us-east-1.amazonaws.com"
        );
        assert_eq!(endpoint_of("http://h:2"), "http://h:2");
    }

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

    /// The repository's examples directory, as a function's code directory.
    fn examples() -> String {
        format!("{}/../../examples", env!("CARGO_MANIFEST_DIR"))
    }

    fn vars(pairs: &[(&str, &str)]) -> EnvReader<impl Fn(&str) -> Option<String> + use<>> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EnvReader::new(move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn an_unset_or_blank_pipeline_file_is_the_envelope() {
        assert!(pipeline(&vars(&[])).expect("no pipeline").is_none());
        let blank = vars(&[(env::PIPELINE_FILE, "  "), (env::LAMBDA_TASK_ROOT, "/x")]);
        assert!(pipeline(&blank).expect("no pipeline").is_none());
    }

    #[test]
    fn a_relative_pipeline_file_is_read_from_the_task_root() {
        let root = examples();
        let loaded = pipeline(&vars(&[
            (env::PIPELINE_FILE, "payments.sql"),
            (env::LAMBDA_TASK_ROOT, &root),
        ]))
        .expect("payments loads")
        .expect("a pipeline");
        let names: Vec<&str> = loaded.views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["per_country", "per_tier"]);
        // The same file by its absolute path, with the task root elsewhere.
        let absolute = format!("{root}/payments.sql");
        let again = pipeline(&vars(&[
            (env::PIPELINE_FILE, &absolute),
            (env::LAMBDA_TASK_ROOT, "/nowhere"),
        ]))
        .expect("payments loads")
        .expect("a pipeline");
        let ids = |p: &SqlPipeline| p.views.iter().map(|v| v.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&loaded));
    }

    #[test]
    fn paths_resolve_against_the_task_root_unless_absolute() {
        assert_eq!(
            pipeline_path("p/x.sql", Some("/var/task")),
            PathBuf::from("/var/task/p/x.sql")
        );
        assert_eq!(
            pipeline_path("/opt/x.sql", Some("/var/task")),
            PathBuf::from("/opt/x.sql")
        );
        assert_eq!(pipeline_path("x.sql", None), PathBuf::from("x.sql"));
    }

    #[test]
    fn a_missing_pipeline_file_names_the_variable_and_the_file() {
        let err = pipeline(&vars(&[
            (env::PIPELINE_FILE, "absent.sql"),
            (env::LAMBDA_TASK_ROOT, "/var/task"),
        ]))
        .err()
        .expect("no such file");
        assert!(
            matches!(&err, Error::PipelineUnreadable { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("pipeline file /var/task/absent.sql (PIPELINE_FILE): "),
            "{message}"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_bad_pipeline_names_the_file_line_and_column() {
        let dir = std::env::temp_dir().join(format!("sluice-pipeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        // examples/payments.sql with a misspelt column in its per_country view.
        let text =
            include_str!("../../../examples/payments.sql").replace("MAX(amount)", "MAX(amont)");
        let typo_line = text
            .lines()
            .position(|l| l.contains("amont"))
            .expect("the typo is there")
            + 1;
        std::fs::write(dir.join("bad.sql"), text).expect("write");
        let root = dir.to_string_lossy().into_owned();
        let err = pipeline(&vars(&[
            (env::PIPELINE_FILE, "bad.sql"),
            (env::LAMBDA_TASK_ROOT, &root),
        ]))
        .err()
        .expect("refused");
        let line = match &err {
            Error::PipelineInvalid {
                source: sluice_core::Error::InvalidSql { line, .. },
                ..
            } => *line,
            other => panic!("expected invalid SQL, got {other:?}"),
        };
        assert_eq!(line as usize, typo_line, "the typo's line: {err}");
        let message = err.to_string();
        let prefix =
            format!("pipeline file {root}/bad.sql (PIPELINE_FILE): line {typo_line}, column ");
        assert!(message.starts_with(&prefix), "{message}");
        assert!(
            message.contains("amont"),
            "the unknown column is quoted: {message}"
        );
        assert!(!err.is_retryable());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
