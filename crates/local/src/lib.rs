//! In-process adapters for every port, in-process Kinesis-like streams, and the local
//! event source mapping that feeds Lambda-shaped batches to the very same handlers.

pub mod clock;
pub mod esm;
pub mod faults;
pub mod fixtures;
pub mod ledger;
pub mod readers;
pub mod scenario;
pub mod store;
pub mod streams;
pub mod template;
