//! What the pipeline watches for: rules and the alerts they raise, and the
//! per-container caches of rules and reference data.

pub mod cache;
pub mod rules;
