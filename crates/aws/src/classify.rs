//! Maps AWS SDK errors to [`sluice_core::Error`] with the right retry hint, because the
//! hint decides between `batchItemFailures` (retry later) and failing for good:
//!
//! | what happened | becomes |
//! |---|---|
//! | throttling codes (`ProvisionedThroughputExceededException`, `ThrottlingException`, `LimitExceededException`, `RequestLimitExceeded`, …) or HTTP 429 | [`Error::Throttled`] |
//! | timeouts, dispatch (connection) failures, 5xx, transient service codes | [`Error::Remote`] `retryable: true` |
//! | `ResourceNotFoundException`, `AccessDeniedException`, validation, any other 4xx, a request that could not be built | [`Error::Remote`] `retryable: false` |
//!
//! Messages quote the stream or table (`kinesis PutRecords failed: stream "sluice-raw":
//! ResourceNotFoundException: …`). The SDK error is kept as the `source`.

use std::error::Error as StdError;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use sluice_core::Error;

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
    let detail = match &failure {
        Failure::Service { code, .. } => format!(
            "{}: {}",
            code.as_deref().unwrap_or("unknown error"),
            err.message().unwrap_or("(no message)")
        ),
        _ => DisplayErrorContext(&err).to_string(),
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
