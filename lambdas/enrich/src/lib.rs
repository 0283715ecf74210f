//! The enrich function as a library, so `sluice demo`/`sluice run` execute the very code
//! the Lambda binary runs.

pub mod handler;

/// The one constructor of the stage, used by the binary and by `sluice demo`/`sluice run`.
pub use handler::{handler, handler_with_clock, sql_handler, sql_handler_with_clock};
