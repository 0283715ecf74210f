//! This crate's own failures: configuration and provisioning. Calls that implement a
//! port return [`sluice_core::Error`] instead, because the ports say so.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required environment variable is missing or empty.
    #[error("environment variable {variable} is required but not set")]
    MissingEnv { variable: String },

    /// A stream or table did not become ready in time.
    #[error("{kind} {name:?} is not {wanted} after {waited:?} (last status {last:?})")]
    NotReady {
        kind: &'static str,
        name: String,
        wanted: &'static str,
        waited: Duration,
        last: String,
    },

    /// A remote call failed (already classified, with its retry hint).
    #[error(transparent)]
    Core(#[from] sluice_core::Error),
}

impl Error {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::MissingEnv { .. } => false,
            Error::NotReady { .. } => true,
            Error::Core(e) => e.is_retryable(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
