//! The one error type of the core crate. Every variant knows whether a retry can help,
//! because that decides between `batchItemFailures` (retry later) and the dead-letter
//! stream or a failed start (retrying will not fix it).

use std::error::Error as StdError;

pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service asked us to slow down (Kinesis `ProvisionedThroughputExceeded`,
    /// DynamoDB `ProvisionedThroughputExceeded`/`ThrottlingException`, request limits).
    #[error("{service} throttled {operation}: {message}")]
    Throttled {
        service: &'static str,
        operation: &'static str,
        message: String,
    },

    /// Optimistic concurrency lost too many times in a row on one item.
    #[error("version conflict on aggregate item {item} persisted after {attempts} attempts")]
    Conflict { item: String, attempts: u32 },

    /// A remote call failed; `retryable` says whether trying again can succeed
    /// (timeouts, 5xx, dispatch failures: yes; access denied, missing table: no).
    #[error("{service} {operation} failed: {message}")]
    Remote {
        service: &'static str,
        operation: &'static str,
        message: String,
        retryable: bool,
        #[source]
        source: Option<BoxError>,
    },

    /// Some records of a `PutRecords` still failed after every retry.
    #[error(
        "{failed} of {total} records to stream {stream:?} still failed after {attempts} attempts (last error code {last_code:?})"
    )]
    SinkExhausted {
        stream: String,
        failed: usize,
        total: usize,
        attempts: u32,
        last_code: String,
    },

    /// The invocation is about to run out of time; the rest of the batch is left for the
    /// retry that Lambda makes from the reported sequence number.
    #[error(
        "invocation deadline is {remaining_ms} ms away (safety margin {margin_ms} ms): stopping early"
    )]
    Deadline { remaining_ms: i64, margin_ms: i64 },

    /// A configuration value is missing or malformed. Fails at init, never per record.
    #[error("configuration {variable}={value:?} is invalid: {reason}")]
    Config {
        variable: String,
        value: String,
        reason: String,
    },

    /// An item in a store does not have the shape this version writes.
    #[error("stored item {item} is malformed: {reason}")]
    CorruptItem { item: String, reason: String },

    /// A value this crate built could not be encoded as JSON. Plain data always
    /// encodes; this exists so that an impossible failure is an error, never an empty
    /// record.
    #[error("could not encode {what} as JSON: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A request broke a hard service limit (record or item size, records per call,
    /// actions per transaction, keys per read). The in-memory adapters enforce the same
    /// limits as AWS and return this too. The same request can never succeed.
    #[error("{service} {operation} exceeds {limit}: {actual} > {max}")]
    LimitExceeded {
        service: &'static str,
        operation: &'static str,
        limit: &'static str,
        max: usize,
        actual: usize,
    },

    /// A detection rule is malformed: `rule` names it (its id, or its line in a file),
    /// `field` the JSON field that is wrong. Fixing the rule is the only cure.
    #[error("rule {rule}: field `{field}`: {reason}")]
    InvalidRule {
        rule: String,
        field: String,
        reason: String,
    },

    /// A SQL pipeline is malformed or uses what is not supported, at `line`, `column`
    /// of its text. Fixing the pipeline is the only cure.
    #[error("line {line}, column {column}: {reason}")]
    InvalidSql {
        line: u64,
        column: u64,
        reason: String,
    },
}

impl Error {
    /// Whether trying the same work again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Throttled { .. }
            | Error::Conflict { .. }
            | Error::SinkExhausted { .. }
            | Error::Deadline { .. } => true,
            Error::Remote { retryable, .. } => *retryable,
            Error::Config { .. }
            | Error::CorruptItem { .. }
            | Error::LimitExceeded { .. }
            | Error::Encode { .. }
            | Error::InvalidRule { .. }
            | Error::InvalidSql { .. } => false,
        }
    }

    /// A short machine-readable tag, used in logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Throttled { .. } => "throttled",
            Error::Conflict { .. } => "conflict",
            Error::Remote { .. } => "remote",
            Error::SinkExhausted { .. } => "sink_exhausted",
            Error::Deadline { .. } => "deadline",
            Error::Config { .. } => "config",
            Error::CorruptItem { .. } => "corrupt_item",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::Encode { .. } => "encode",
            Error::InvalidRule { .. } => "invalid_rule",
            Error::InvalidSql { .. } => "invalid_sql",
        }
    }

    pub fn config(variable: &str, value: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            variable: variable.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
