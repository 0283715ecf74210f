//! What arrives on a stream and how it is judged: records as stages see them, what
//! producers wrap around our lines (KPL aggregates, gzip), the event envelope and its
//! validation, and the dead letters written for whatever is refused.

pub mod dead_letter;
pub mod envelope;
pub mod record;
pub mod replay;
pub mod replay_plan;
pub mod unpack;
