//! What the pipeline keeps between batches: event-time windows, the mergeable
//! statistics of a window, the stored items and their sizes under DynamoDB's and
//! Kinesis' limits, capacity units, and the exactly-once accounting (event
//! fingerprints, sequence numbers, idempotency).

pub mod attr_size;
pub mod capacity;
pub mod delta;
pub mod fingerprint;
pub mod idempotency;
pub mod item;
pub mod limits;
pub mod row_text;
pub mod sequence;
pub mod statistics;
pub mod window;
