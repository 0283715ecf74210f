//! Sluice's pure domain, grouped as the pipeline reads: what comes in (`input`), what is
//! kept (`state`), what is watched for (`detect`), pipelines written in Flink SQL (`sql`), the four stages that tie them
//! together (`stage`), and the read API (`query`). Every port trait lives in [`ports`].
//! No AWS SDK and no Lambda runtime in here.

pub mod config;
pub mod detect;
pub mod error;
pub mod input;
pub mod latency;
pub mod ports;
pub mod query;
pub mod resources;
pub mod rng;
pub mod sql;
pub mod stage;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;

pub use error::{Error, Result};
