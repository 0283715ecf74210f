//! A pipeline evaluated over a finite list of events in one pass, as Flink's batch mode
//! evaluates it: what `sluice sql eval` prints, and the truth the stages are to be checked
//! against. Every event goes through the chain of intermediate views (projection,
//! filter, lookup join) one row at a time; stored views fold rows into their windows and
//! groups. Memory is that of the groups, not of the events.
//!
//! Sluice's own rules on top of Flink's: a record that cannot be read, or whose
//! expression fails on its values, is rejected with a reason (Flink fails the job or skips
//! it), and with a `PRIMARY KEY` a repeated event id counts once (Flink does not enforce
//! keys). Lateness is not judged here: a batch has no order to be late in.
//!
//! Steps: `plan.rs` compiles the pipeline into [`Program`] (scopes, compiled expressions,
//! aggregates); `run.rs` feeds it events; `row_json.rs` writes result rows as the JSON the
//! oracle prints.

pub mod codec;
mod event;
mod plan;
mod row_json;
mod run;

pub use event::{Evaluated, Lookup, References, ViewUpdate, Windows};
pub use plan::{Program, StoredShape};
pub use row_json::{json_equals, json_number, json_value, value_json};
pub use run::{Evaluation, ResultRow};

#[cfg(test)]
mod tests;
