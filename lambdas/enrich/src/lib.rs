//! The enrich function as a library, so `sluice demo`/`sluice run` execute the very code
//! the Lambda binary runs.

pub mod handler;
