//! Maps AWS SDK errors to [`sluice_core::Error`] with the right retry hint, because the
//! hint decides between `batchItemFailures` (retry later) and failing for good:
//!
//! | what happened | becomes |
//! |---|---|
//! | throttling codes (`ProvisionedThroughputExceededException`, `ThrottlingException`, `LimitExceededException`, `RequestLimitExceeded`, …) or HTTP 429 | [`Error::Throttled`] |
//! | timeouts, dispatch (connection) failures, 5xx, transient service codes | [`Error::Remote`] `retryable: true` |
//! | a validation error about a hard service limit (see below) | [`Error::LimitExceeded`] |
//! | `ResourceNotFoundException`, `AccessDeniedException`, other validation errors, any other 4xx, a request that could not be built | [`Error::Remote`] `retryable: false` |
//!
//! ## Limits
//! The adapters check the limits they can before sending
//! ([`sluice_core::state::limits`]); a service that still rejects a request for a limit (its
//! sizing differs, or a check is missing) answers with a validation error, which
//! [`limit_of`] recognises by its message and turns into the same
//! [`Error::LimitExceeded`] the in-memory adapters return:
//!
//! | service answer (`ValidationException`, `InvalidArgumentException`) | limit |
//! |---|---|
//! | `Item size has exceeded the maximum allowed size` (also `Item size to update …`) | DynamoDB item size |
//! | `Transaction request cannot include multiple operations on one item` | one action per item |
//! | `… at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100` | actions per transaction |
//! | `Size of hashkey has exceeded the maximum size limit of 2048 bytes` | partition key size |
//! | `Aggregated size of all range keys has exceeded the size limit of 1024 bytes` | sort key size |
//! | another `TransactWriteItems` message about a size `exceeded` | transaction size |
//! | `Too many items requested for the BatchGetItem call`, `… member.keys' … less than or equal to 100` | keys per `BatchGetItem` |
//! | `Record data size N exceeds the stream's max record size of M bytes`, `… member.data' … less than or equal to 1048576` | Kinesis record size |
//! | `Partition key must be between 1 and 256 in length`, `… partitionKey' … less than or equal to 256` | partition key length |
//! | `… at 'records' … less than or equal to 500` | records per `PutRecords` |
//! | `Records size exceeds 5 MB limit` | `PutRecords` request size |
//!
//! When the answer does not say how large the request was, `actual` is `max + 1` (a
//! lower bound).
//!
//! ## Misconfiguration
//! A missing credential, a refused connection or a host name that does not resolve is
//! not the data's fault and no wait in this process fixes it. [`misconfiguration`]
//! recognises them anywhere in an error's source chain (the credentials provider's
//! [`CredentialsError`]; the [`Unreachable`] that the HTTP client of
//! [`crate::config`] wraps a failed connection in, naming the endpoint), and the
//! classified message is then that one line (`no AWS credentials found (…)`,
//! `cannot connect to http://127.0.0.1:1 (connection refused): …`). Startup code fails
//! fast on them ([`crate::Provisioner`]'s retry and wait loops, `sluice run`'s first
//! calls: [`crate::Error::Misconfigured`]). The core error stays retryable: a stage
//! that meets one mid-batch must stop and retry the batch (`batchItemFailures`), not
//! dead-letter events that are fine.
//!
//! Messages quote the stream or table (`kinesis PutRecords failed: stream "sluice-raw":
//! ResourceNotFoundException: …`). The SDK error is kept as the `source`.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use sluice_core::Error;
use sluice_core::error::BoxError;

pub const KINESIS: &str = "kinesis";
pub const DYNAMODB: &str = "dynamodb";

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KMSThrottlingException",
    "SlowDown",
];

/// Error codes for failures that a later attempt can get past.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ReplicatedWriteConflictException",
    "KMSInternalException",
    "ExpiredIteratorException",
];

/// What kind of failure an SDK call ended in, without the SDK's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be built; nothing was sent.
    Construction,
    /// The call timed out (it may have been received).
    Timeout,
    /// No response arrived (connection refused or reset, I/O); `user` when the request
    /// itself was invalid (e.g. a malformed endpoint).
    Dispatch { user: bool },
    /// A response arrived but could not be parsed.
    Response { status: u16 },
    /// The service answered with an error.
    Service { code: Option<String>, status: u16 },
}

/// The retry hint of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Throttled,
    Retryable,
    Fatal,
}

impl Failure {
    pub fn of<E, R>(err: &SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata,
        R: HasStatus,
    {
        match err {
            SdkError::ConstructionFailure(_) => Failure::Construction,
            SdkError::TimeoutError(_) => Failure::Timeout,
            SdkError::DispatchFailure(d) => Failure::Dispatch { user: d.is_user() },
            SdkError::ResponseError(r) => Failure::Response {
                status: r.raw().status_code(),
            },
            SdkError::ServiceError(s) => Failure::Service {
                code: s.err().code().map(str::to_owned),
                status: s.raw().status_code(),
            },
            // SdkError is non-exhaustive: an unknown kind is treated like a dispatch
            // failure, which may go away.
            _ => Failure::Dispatch { user: false },
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            Failure::Construction | Failure::Dispatch { user: true } => Verdict::Fatal,
            Failure::Timeout | Failure::Dispatch { user: false } => Verdict::Retryable,
            Failure::Response { status } => match status {
                429 => Verdict::Throttled,
                s if *s >= 500 => Verdict::Retryable,
                _ => Verdict::Fatal,
            },
            Failure::Service { code, status } => {
                let code = code.as_deref().unwrap_or_default();
                if is_throttling_code(code) || *status == 429 {
                    Verdict::Throttled
                } else if TRANSIENT_CODES.contains(&code) || *status >= 500 {
                    Verdict::Retryable
                } else {
                    Verdict::Fatal
                }
            }
        }
    }
}

/// Whether an error code (a Kinesis per-record `ErrorCode`, a service error code, a
/// DynamoDB cancellation reason) means throttling.
pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code) || code == "ThrottlingError"
}

/// Access to the HTTP status of a raw response (implemented for the SDK's response).
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Builds the core error from its parts.
pub fn to_error(
    service: &'static str,
    operation: &'static str,
    resource: &str,
    verdict: Verdict,
    detail: &str,
    source: Option<sluice_core::error::BoxError>,
) -> Error {
    let message = format!("{} {resource:?}: {detail}", resource_kind(service));
    match verdict {
        Verdict::Throttled => Error::Throttled {
            service,
            operation,
            message,
        },
        Verdict::Retryable | Verdict::Fatal => Error::Remote {
            service,
            operation,
            message,
            retryable: verdict == Verdict::Retryable,
            source,
        },
    }
}

fn resource_kind(service: &str) -> &'static str {
    match service {
        KINESIS => "stream",
        DYNAMODB => "table",
        _ => "resource",
    }
}

/// The [`Error::LimitExceeded`] a service's validation error stands for, if it is
/// about one of the limits in the module documentation. `code` is the error code
/// (`ValidationException`, `InvalidArgumentException`, or a transaction cancellation
/// reason `ValidationError`); any other code is not a limit.
pub fn limit_of(
    service: &'static str,
    operation: &'static str,
    code: &str,
    message: &str,
) -> Option<Error> {
    use sluice_core::state::limits::{dynamodb as d, kinesis as k};
    if !matches!(
        code,
        "ValidationException" | "InvalidArgumentException" | "ValidationError"
    ) {
        return None;
    }
    let m = message;
    let (limit, max, actual) = match service {
        DYNAMODB if m.contains("Item size") && m.contains("exceeded the maximum allowed size") => {
            (d::LIMIT_ITEM_BYTES, d::MAX_ITEM_BYTES, None)
        }
        DYNAMODB if m.contains("multiple operations on one item") => {
            (d::LIMIT_ACTIONS_PER_ITEM, 1, Some(2))
        }
        DYNAMODB if m.contains("Size of hashkey has exceeded") => (
            d::LIMIT_PARTITION_KEY_BYTES,
            d::MAX_PARTITION_KEY_BYTES,
            None,
        ),
        DYNAMODB if m.contains("size of all range keys has exceeded") => {
            (d::LIMIT_SORT_KEY_BYTES, d::MAX_SORT_KEY_BYTES, None)
        }
        DYNAMODB if m.contains("transactItems") && m.contains("less than or equal to 100") => {
            (d::LIMIT_ACTIONS, d::MAX_TRANSACTION_ACTIONS, None)
        }
        DYNAMODB
            if operation == "TransactWriteItems"
                && m.contains("size")
                && m.contains("exceeded") =>
        {
            (d::LIMIT_TRANSACTION_BYTES, d::MAX_TRANSACTION_BYTES, None)
        }
        DYNAMODB
            if m.contains("Too many items requested for the BatchGetItem call")
                || (m.contains("member.keys") && m.contains("less than or equal to 100")) =>
        {
            (d::LIMIT_BATCH_GET_KEYS, d::MAX_BATCH_GET_KEYS, None)
        }
        KINESIS if m.contains("Record data size") && m.contains("exceeds") => (
            k::LIMIT_RECORD_BYTES,
            k::MAX_RECORD_BYTES,
            first_number_after(m, "Record data size"),
        ),
        KINESIS if m.contains("member.data") && m.contains("less than or equal to") => {
            (k::LIMIT_RECORD_BYTES, k::MAX_RECORD_BYTES, None)
        }
        KINESIS
            if m.contains("Partition key must be between 1 and 256")
                || (m.contains("partitionKey") && m.contains("less than or equal to 256")) =>
        {
            (k::LIMIT_PARTITION_KEY, k::MAX_PARTITION_KEY_CHARS, None)
        }
        KINESIS if m.contains("'records'") && m.contains("less than or equal to 500") => {
            (k::LIMIT_RECORDS, k::MAX_RECORDS_PER_REQUEST, None)
        }
        KINESIS if m.contains("5 MB") || m.contains("5 MiB") => {
            (k::LIMIT_REQUEST_BYTES, k::MAX_REQUEST_BYTES, None)
        }
        _ => return None,
    };
    Some(Error::LimitExceeded {
        service,
        operation,
        limit,
        max,
        actual: actual.unwrap_or(max + 1),
    })
}

/// The first whole number in `text` after `marker`.
fn first_number_after(text: &str, marker: &str) -> Option<usize> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Classifies an SDK error of a call on `resource` (a stream or table name).
pub fn classify<E, R>(
    service: &'static str,
    operation: &'static str,
    resource: &str,
    err: SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HasStatus + std::fmt::Debug + Send + Sync + 'static,
{
    let failure = Failure::of(&err);
    if let Failure::Service {
        code: Some(code), ..
    } = &failure
        && let Some(limit) = limit_of(service, operation, code, err.message().unwrap_or_default())
    {
        tracing::warn!(
            service,
            operation,
            resource,
            code = %code,
            message = err.message().unwrap_or_default(),
            "request rejected for a service limit"
        );
        return limit;
    }
    let detail = match &failure {
        Failure::Service { code, .. } => format!(
            "{}: {}",
            code.as_deref().unwrap_or("unknown error"),
            err.message().unwrap_or("(no message)")
        ),
        _ => match misconfiguration(&err) {
            Some(m) => m.to_string(),
            None => chain_text(&err),
        },
    };
    to_error(
        service,
        operation,
        resource,
        failure.verdict(),
        &detail,
        Some(Box::new(err)),
    )
}

/// [`classify`] for a Kinesis call on a stream.
pub fn kinesis<E, R>(operation: &'static str, stream: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HasStatus + std::fmt::Debug + Send + Sync + 'static,
{
    classify(KINESIS, operation, stream, err)
}

/// [`classify`] for a DynamoDB call on a table.
pub fn dynamodb<E, R>(operation: &'static str, table: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: HasStatus + std::fmt::Debug + Send + Sync + 'static,
{
    classify(DYNAMODB, operation, table, err)
}

/// A request that could not be built (a missing required field): a bug, not retryable.
pub fn build_error(
    service: &'static str,
    operation: &'static str,
    resource: &str,
    err: aws_sdk_dynamodb::error::BuildError,
) -> Error {
    to_error(
        service,
        operation,
        resource,
        Verdict::Fatal,
        &format!("request could not be built: {err}"),
        Some(Box::new(err)),
    )
}

/// Why a connection could not be opened (a cause that waiting does not fix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens on the port.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// No route to the host or network.
    NoRoute,
}

impl ConnectFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connection refused",
            ConnectFailure::Dns => "DNS lookup failed",
            ConnectFailure::NoRoute => "no route to host",
        }
    }

    /// What to check.
    pub fn hint(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "is the endpoint running?",
            ConnectFailure::Dns => "is the host name right?",
            ConnectFailure::NoRoute => "is the network up?",
        }
    }

    /// The failure to connect somewhere in `err`'s source chain: an I/O error of kind
    /// `ConnectionRefused` (or host/network unreachable), or the HTTP connector's
    /// `dns error` (hyper-util's resolver error, which has no kind of its own).
    pub fn find(err: &(dyn StdError + 'static)) -> Option<ConnectFailure> {
        use std::io::ErrorKind;
        chain(err).find_map(|e| {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    ErrorKind::ConnectionRefused => return Some(ConnectFailure::Refused),
                    ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                        return Some(ConnectFailure::NoRoute);
                    }
                    _ => {}
                }
            }
            (e.source().is_some() && e.to_string() == "dns error").then_some(ConnectFailure::Dns)
        })
    }
}

/// A connection to `endpoint` that could not be opened. The HTTP client of
/// [`crate::config`] wraps the connector's error in it, so that the error names the
/// endpoint (the SDK's dispatch failure does not).
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {endpoint} ({})", .cause.as_str())]
pub struct Unreachable {
    /// `scheme://host:port` of the request.
    pub endpoint: String,
    pub cause: ConnectFailure,
    #[source]
    pub source: BoxError,
}

/// A failure that waiting cannot fix: the environment is wrong. Its message is the
/// one line to show a user: what is wrong and what to set or check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misconfiguration {
    /// No credentials provider of the chain found any.
    #[error(
        "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    )]
    NoCredentials,
    /// A credentials source is configured but broken (a profile that does not exist,
    /// a malformed config file).
    #[error("AWS credentials are misconfigured: {detail}")]
    Credentials { detail: String },
    /// The endpoint cannot be reached at all.
    #[error("cannot connect to {endpoint} ({}): {}", .cause.as_str(), .cause.hint())]
    Unreachable {
        endpoint: String,
        cause: ConnectFailure,
    },
}

/// The [`Misconfiguration`] anywhere in `err`'s source chain (an SDK error, a core
/// error whose source is one, an `anyhow` chain), the outermost first: a credentials
/// provider that could not reach its own endpoint is a missing credential.
pub fn misconfiguration(err: &(dyn StdError + 'static)) -> Option<Misconfiguration> {
    chain(err).find_map(|e| {
        if let Some(m) = e.downcast_ref::<Misconfiguration>() {
            return Some(m.clone());
        }
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::InvalidConfiguration(_) | CredentialsError::Unhandled(_) => {
                    Misconfiguration::Credentials {
                        detail: chain_text(e),
                    }
                }
                _ => Misconfiguration::NoCredentials,
            });
        }
        e.downcast_ref::<Unreachable>()
            .map(|u| Misconfiguration::Unreachable {
                endpoint: u.endpoint.clone(),
                cause: u.cause,
            })
    })
}

/// `err` and its sources, outermost first.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// `err` and its sources as one line joined by `": "`, each by its `Display` (never a
/// `Debug` dump), leaving out a source whose text the line already holds (wrappers
/// that repeat their cause).
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut line = String::new();
    for e in chain(err) {
        let text = e.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The service error code of an SDK error, if the service answered with one.
pub fn code_of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(_) => err.code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;

    /// A stand-in raw response: only the status matters here.
    #[derive(Debug)]
    struct Raw(u16);
    impl HasStatus for Raw {
        fn status_code(&self) -> u16 {
            self.0
        }
    }

    fn service(code: &str, status: u16) -> SdkError<PutItemError, Raw> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("something happened")
            .build();
        SdkError::service_error(PutItemError::generic(meta), Raw(status))
    }

    fn classify_put(err: SdkError<PutItemError, Raw>) -> Error {
        dynamodb("PutItem", "sluice-aggregates", err)
    }

    #[test]
    fn throttling_codes_become_throttled() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "LimitExceededException",
            "RequestLimitExceeded",
        ] {
            let e = classify_put(service(code, 400));
            assert!(matches!(e, Error::Throttled { .. }), "{code}: {e:?}");
            assert!(e.is_retryable());
            assert!(e.to_string().contains("\"sluice-aggregates\""), "{e}");
            assert!(e.to_string().contains(code), "{e}");
        }
        let e = classify_put(service("Whatever", 429));
        assert!(matches!(e, Error::Throttled { .. }), "{e:?}");
    }

    #[test]
    fn client_errors_are_not_retryable_and_server_errors_are() {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "ValidationException",
        ] {
            let e = classify_put(service(code, 400));
            assert!(
                matches!(
                    e,
                    Error::Remote {
                        retryable: false,
                        ..
                    }
                ),
                "{code}: {e:?}"
            );
            assert!(!e.is_retryable());
            let msg = e.to_string();
            assert!(
                msg.contains("dynamodb PutItem failed: table \"sluice-aggregates\""),
                "{msg}"
            );
        }
        let e = classify_put(service("InternalServerError", 500));
        assert!(
            e.is_retryable() && matches!(e, Error::Remote { .. }),
            "{e:?}"
        );
        let e = classify_put(service("SomethingNew", 503));
        assert!(e.is_retryable(), "any 5xx: {e:?}");
        let e = classify_put(service("TransactionConflictException", 400));
        assert!(e.is_retryable(), "{e:?}");
    }

    #[test]
    fn validation_errors_about_limits_become_limit_exceeded() {
        use sluice_core::state::limits::{dynamodb as d, kinesis as k};
        let limit = |e: &Error| match e {
            Error::LimitExceeded {
                limit, max, actual, ..
            } => Some((*limit, *max, *actual)),
            _ => None,
        };
        let put = classify_put(service("ValidationException", 400));
        assert!(limit(&put).is_none(), "other validation errors stay Remote");
        let meta = |code: &str, msg: &str| {
            let m = ErrorMetadata::builder().code(code).message(msg).build();
            SdkError::<PutItemError, Raw>::service_error(PutItemError::generic(m), Raw(400))
        };
        // (service, operation, code, message, (limit, max, actual))
        type Case = (&'static str, &'static str, &'static str, &'static str, Want);
        type Want = (&'static str, usize, usize);
        let cases: &[Case] = &[
            (
                DYNAMODB,
                "PutItem",
                "ValidationException",
                "Item size has exceeded the maximum allowed size",
                (d::LIMIT_ITEM_BYTES, 409_600, 409_601),
            ),
            (
                DYNAMODB,
                "TransactWriteItems",
                "ValidationException",
                "Transaction request cannot include multiple operations on one item",
                (d::LIMIT_ACTIONS_PER_ITEM, 1, 2),
            ),
            (
                DYNAMODB,
                "TransactWriteItems",
                "ValidationException",
                "1 validation error detected at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100.",
                (d::LIMIT_ACTIONS, 100, 101),
            ),
            (
                DYNAMODB,
                "TransactWriteItems",
                "ValidationException",
                "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes",
                (d::LIMIT_PARTITION_KEY_BYTES, 2048, 2049),
            ),
            (
                DYNAMODB,
                "BatchGetItem",
                "ValidationException",
                "Too many items requested for the BatchGetItem call",
                (d::LIMIT_BATCH_GET_KEYS, 100, 101),
            ),
            (
                DYNAMODB,
                "BatchGetItem",
                "ValidationException",
                "1 validation error detected: Value at 'requestItems.t.member.keys' failed to satisfy constraint: Member must have length less than or equal to 100",
                (d::LIMIT_BATCH_GET_KEYS, 100, 101),
            ),
            (
                KINESIS,
                "PutRecords",
                "InvalidArgumentException",
                "Record data size 1048577 exceeds the stream's max record size of 1048576 bytes",
                (k::LIMIT_RECORD_BYTES, 1_048_576, 1_048_577),
            ),
            (
                KINESIS,
                "PutRecords",
                "ValidationException",
                "1 validation error detected: Value at 'records.1.member.data' failed to satisfy constraint: Member must have length less than or equal to 1048576",
                (k::LIMIT_RECORD_BYTES, 1_048_576, 1_048_577),
            ),
            (
                KINESIS,
                "PutRecords",
                "InvalidArgumentException",
                "Partition key must be between 1 and 256 in length",
                (k::LIMIT_PARTITION_KEY, 256, 257),
            ),
            (
                KINESIS,
                "PutRecords",
                "ValidationException",
                "1 validation error detected: Value 'kkk' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256",
                (k::LIMIT_PARTITION_KEY, 256, 257),
            ),
            (
                KINESIS,
                "PutRecords",
                "ValidationException",
                "1 validation error detected: Value '[...]' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500",
                (k::LIMIT_RECORDS, 500, 501),
            ),
        ];
        for (svc, op, code, msg, want) in cases {
            let e = classify(svc, op, "r", meta(code, msg));
            assert_eq!(limit(&e), Some(*want), "{msg}: {e:?}");
            assert!(!e.is_retryable());
            assert_eq!(e.code(), "limit_exceeded");
        }
        // Not a limit: the same words from another code, or another validation error.
        assert!(
            limit(&dynamodb(
                "PutItem",
                "t",
                meta(
                    "InternalServerError",
                    "Item size has exceeded the maximum allowed size"
                )
            ))
            .is_none()
        );
        let other = kinesis(
            "PutRecords",
            "s",
            meta("InvalidArgumentException", "ExplicitHashKey is not valid"),
        );
        assert!(
            matches!(
                other,
                Error::Remote {
                    retryable: false,
                    ..
                }
            ),
            "{other:?}"
        );
    }

    #[test]
    fn transport_failures() {
        let timeout: SdkError<PutItemError, Raw> = SdkError::timeout_error("too slow");
        let e = classify_put(timeout);
        assert!(
            matches!(
                e,
                Error::Remote {
                    retryable: true,
                    ..
                }
            ),
            "{e:?}"
        );
        let refused: SdkError<PutItemError, Raw> = SdkError::dispatch_failure(
            aws_sdk_dynamodb::error::ConnectorError::io("connection refused".into()),
        );
        assert!(classify_put(refused).is_retryable());
        let invalid: SdkError<PutItemError, Raw> = SdkError::dispatch_failure(
            aws_sdk_dynamodb::error::ConnectorError::user("bad uri".into()),
        );
        assert!(!classify_put(invalid).is_retryable());
        let unbuilt: SdkError<PutItemError, Raw> = SdkError::construction_failure("no key");
        assert!(!classify_put(unbuilt).is_retryable());
        let garbled: SdkError<PutItemError, Raw> = SdkError::response_error("eof", Raw(502));
        assert!(classify_put(garbled).is_retryable());
        let garbled: SdkError<PutItemError, Raw> = SdkError::response_error("eof", Raw(400));
        assert!(!classify_put(garbled).is_retryable());
    }

    /// The dispatch failure the SDK reports when the credentials chain found nothing.
    fn no_credentials(
        err: aws_credential_types::provider::error::CredentialsError,
    ) -> SdkError<PutItemError, Raw> {
        SdkError::dispatch_failure(aws_sdk_dynamodb::error::ConnectorError::other(
            Box::new(err),
            None,
        ))
    }

    /// What the HTTP client of `config` reports for a refused connection.
    fn refused(endpoint: &str) -> SdkError<PutItemError, Raw> {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        SdkError::dispatch_failure(aws_sdk_dynamodb::error::ConnectorError::io(Box::new(
            Unreachable {
                endpoint: endpoint.into(),
                cause: ConnectFailure::find(&io).expect("refused"),
                source: Box::new(io),
            },
        )))
    }

    #[test]
    fn a_missing_credential_is_one_line_that_says_what_to_set() {
        use aws_credential_types::provider::error::CredentialsError;
        for err in [
            CredentialsError::not_loaded("no providers in chain provided credentials"),
            CredentialsError::provider_error("IMDS is disabled\nor forbidden"),
            CredentialsError::provider_timed_out(std::time::Duration::from_secs(5)),
        ] {
            let sdk = no_credentials(err);
            assert_eq!(
                misconfiguration(&sdk),
                Some(Misconfiguration::NoCredentials)
            );
            let e = classify_put(sdk);
            assert_eq!(
                e.to_string(),
                "dynamodb PutItem failed: table \"sluice-aggregates\": no AWS credentials found \
                 (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
            );
            // Found again through the core error (the CLI and the provisioner look there).
            assert_eq!(misconfiguration(&e), Some(Misconfiguration::NoCredentials));
            // A stage meeting it mid-batch retries the batch; it does not dead-letter.
            assert!(e.is_retryable());
        }
        let broken = no_credentials(CredentialsError::invalid_configuration(
            "profile \"nope\" not found",
        ));
        match misconfiguration(&broken) {
            Some(Misconfiguration::Credentials { detail }) => {
                assert!(detail.contains("profile \"nope\" not found"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unreachable_endpoint_is_named_with_its_cause() {
        let e = classify_put(refused("http://127.0.0.1:1"));
        assert_eq!(
            misconfiguration(&e),
            Some(Misconfiguration::Unreachable {
                endpoint: "http://127.0.0.1:1".into(),
                cause: ConnectFailure::Refused,
            })
        );
        assert_eq!(
            misconfiguration(&e).expect("found").to_string(),
            "cannot connect to http://127.0.0.1:1 (connection refused): is the endpoint running?"
        );
        assert!(e.to_string().ends_with(
            "table \"sluice-aggregates\": cannot connect to http://127.0.0.1:1 (connection refused): is the endpoint running?"
        ), "{e}");
        // hyper-util's resolver failure has no I/O kind: its message names it.
        #[derive(Debug, thiserror::Error)]
        #[error("dns error")]
        struct Dns(#[source] std::io::Error);
        let dns = Dns(std::io::Error::other(
            "failed to lookup address information",
        ));
        assert_eq!(ConnectFailure::find(&dns), Some(ConnectFailure::Dns));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(ConnectFailure::find(&reset), None, "a reset may pass");
    }

    #[test]
    fn other_transport_failures_are_described_without_debug_dumps() {
        let reset: SdkError<PutItemError, Raw> = SdkError::dispatch_failure(
            aws_sdk_dynamodb::error::ConnectorError::io("connection reset by peer".into()),
        );
        assert_eq!(misconfiguration(&reset), None);
        let e = classify_put(reset);
        assert!(e.is_retryable());
        let text = e.to_string();
        assert!(
            text.ends_with("dispatch failure: io error: connection reset by peer"),
            "{text}"
        );
        assert!(
            !text.contains("DispatchFailure") && !text.contains('{'),
            "{text}"
        );
    }

    #[test]
    fn keeps_the_sdk_error_as_source_and_names_the_stream() {
        let e = kinesis(
            "PutRecords",
            "sluice-raw",
            service("ResourceNotFoundException", 400),
        );
        assert!(e.to_string().contains("stream \"sluice-raw\""), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            code_of(&service("ResourceNotFoundException", 400)),
            Some("ResourceNotFoundException")
        );
        assert!(is_throttling_code("ProvisionedThroughputExceededException"));
        assert!(!is_throttling_code("InternalFailure"));
    }
}
