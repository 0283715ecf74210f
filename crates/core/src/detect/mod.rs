//! What the pipeline watches for: rules, their conditions and the alerts they raise.

pub mod history;
pub mod rules;
