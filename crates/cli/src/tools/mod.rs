//! The measuring tools: what the performance and cost figures come from, not what a
//! user needs to run the pipeline. `bench` measures throughput, writes, latency and
//! memory (per stage in `bench/stage.rs`), `cost` prices the pipeline from those
//! per-stage figures (`capacity_mode` compares Kinesis' two modes), `coldstart` times each Lambda's release binary against a
//! loopback Runtime API. They use the shared machinery at the crate root, never a
//! command.

pub mod bench;
pub mod capacity_mode;
pub mod coldstart;
pub mod cost;
pub mod pricing;
