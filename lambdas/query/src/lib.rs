//! The query function (a Lambda function URL, `AuthType: AWS_IAM`) as a library: the
//! HTTP request in, [`sluice_core::query::respond`] over two read ports, the JSON
//! response out. The dashboard of the `sluice` binary serves the same `respond`.

pub mod handler;

pub use handler::{handle, handle_with_views};
