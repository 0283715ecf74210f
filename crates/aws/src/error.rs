//! This crate's own failures: configuration and provisioning. Calls that implement a
//! port return [`sluice_core::Error`] instead, because the ports say so.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required environment variable is missing or empty.
    #[error("environment variable {variable} is required but not set")]
    MissingEnv { variable: String },

    /// The pipeline file (`PIPELINE_FILE`) cannot be read.
    #[error("pipeline file {path} ({variable}): {source}")]
    PipelineUnreadable {
        variable: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The pipeline file (`PIPELINE_FILE`) is not a pipeline the stages can run; the
    /// message names the file, then the line and column.
    #[error("pipeline file {path} ({variable}): {source}")]
    PipelineInvalid {
        variable: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: sluice_core::Error,
    },

    /// A stream or table did not become ready in time.
    #[error("{kind} {name:?} is not {wanted} after {waited:?} (last status {last:?})")]
    NotReady {
        kind: &'static str,
        name: String,
        wanted: &'static str,
        waited: Duration,
        last: String,
    },

    /// A remote call failed for a reason that waiting cannot fix (no credentials, an
    /// endpoint that refuses connections or does not resolve); the message is the one
    /// line that says what to set or check. Waits and retries end at once on it.
    #[error("{problem}")]
    Misconfigured {
        problem: crate::classify::Misconfiguration,
        #[source]
        source: sluice_core::Error,
    },

    /// A remote call failed (already classified, with its retry hint).
    #[error(transparent)]
    Core(sluice_core::Error),
}

impl Error {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::MissingEnv { .. }
            | Error::Misconfigured { .. }
            | Error::PipelineUnreadable { .. }
            | Error::PipelineInvalid { .. } => false,
            Error::NotReady { .. } => true,
            Error::Core(e) => e.is_retryable(),
        }
    }
}

/// A core error, as [`Error::Misconfigured`] when no wait can fix it: every `?` on a
/// remote call of this crate sorts it out.
impl From<sluice_core::Error> for Error {
    fn from(error: sluice_core::Error) -> Self {
        match crate::classify::misconfiguration(&error) {
            Some(problem) => Error::Misconfigured {
                problem,
                source: error,
            },
            None => Error::Core(error),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Misconfiguration;

    fn remote(source: Option<sluice_core::error::BoxError>) -> sluice_core::Error {
        sluice_core::Error::Remote {
            service: "kinesis",
            operation: "CreateStream",
            message: "stream \"s\": …".into(),
            retryable: true,
            source,
        }
    }

    #[test]
    fn what_no_wait_fixes_is_not_retryable_here() {
        let e = Error::from(remote(Some(Box::new(Misconfiguration::NoCredentials))));
        assert!(matches!(e, Error::Misconfigured { .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            Misconfiguration::NoCredentials.to_string(),
            "the line says what to set"
        );
        let e = Error::from(remote(None));
        assert!(matches!(e, Error::Core(_)) && e.is_retryable(), "{e:?}");
    }
}
