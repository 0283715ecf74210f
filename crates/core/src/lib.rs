//! Sluice's pure domain: the event envelope and its validation, event-time windows,
//! mergeable aggregates, exactly-once accounting, rules, and the four stages written
//! against narrow ports. No AWS SDK and no Lambda runtime in here.

pub mod aggregate;
pub mod attr_size;
pub mod cache;
pub mod capacity;
pub mod config;
pub mod dead_letter;
pub mod envelope;
pub mod error;
pub mod fingerprint;
pub mod idempotency;
pub mod item;
pub mod lambda;
pub mod latency;
pub mod limits;
pub mod outcome;
pub mod ports;
pub mod query;
pub mod record;
pub mod resources;
pub mod rng;
pub mod rules;
pub mod sequence;
pub mod stage;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod unpack;
pub mod window;

pub use error::{Error, Result};
